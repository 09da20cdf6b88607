"""β-CALICE: β-adapters stacked on the α-adapters, β = 0 is the variable-rate model, the RDP loss."""

from __future__ import annotations

from types import SimpleNamespace

import hydra
import numpy as np
import pytest
import torch
from torch import nn

from ctrlic.codecs import bitstream
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.control.adapters import ConvAdapter, LoRALinear, StackedAdapter, SubpelConvAdapter
from ctrlic.codecs.control.base import KnobError
from ctrlic.evaluation.results import load_results
from ctrlic.lightning_modules.losses import LPIPSRateLoss, MSERateLoss
from ctrlic.lightning_modules.variable_rate import (
    TRAIN_ALPHAS,
    VariableRateModule,
    draw_alpha,
    interpolate_lambda,
)
from tests.conftest import assert_info_without_data, fresh_clone_offline, run_cli
from tests.helpers_beta_calice import tiny_calice_and_beta
from tests.test_configs import compose_cfg

BETAS = [0.01, 0.02, 0.04, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 1.0]


def _rdp_module(codec, mse_weight: float = 150.0, **kwargs) -> VariableRateModule:
    """The module as experiment=beta_calice_stf builds it (module/loss=lpips), LPIPS with random weights."""
    loss = LPIPSRateLoss(mse_weight=mse_weight, lpips_weight=0.0, lpips={"pretrained": False})
    options = {"lmbda_min": 0.048, "lmbda_max": 1.28, "inverse": True, "betas": BETAS, "loss": loss,
               "scheduler": None, "seed": 3}
    return VariableRateModule(codec, **{**options, **kwargs})


def test_keys_follow_the_authors_lora_with_lora_layout():
    _, beta, _, _ = tiny_calice_and_beta()
    keys = beta.backbone.state_dict()
    stem = "layers.0.blocks.0.mlp.fc1"
    for key in ("linear_with_lora.linear.weight", "linear_with_lora.linear.bias", "linear_with_lora.lora.W_a",
                "linear_with_lora.lora.W_b", "lora.W_a", "lora.W_b"):
        assert f"{stem}.{key}" in keys
    assert f"{stem}.linear.weight" not in keys
    assert keys[f"{stem}.lora.W_a"].shape == keys[f"{stem}.linear_with_lora.lora.W_a"].shape


def test_beta_zero_reproduces_the_variable_rate_model_exactly():
    calice, beta, _, _ = tiny_calice_and_beta()
    with torch.no_grad():  # a trained β set: non-zero at β > 0
        for p in beta.control.adapter_sets()["beta"]:
            p.normal_(0, 0.05)
    x = torch.rand(1, 3, 64, 64)
    for alpha in (0.0, 0.4, 1.0):
        calice.set_knobs({"alpha": alpha})
        beta.set_knobs({"alpha": alpha, "beta": 0.0})
        with torch.no_grad():
            want, got = calice(x), beta(x)
        assert torch.equal(got["x_hat"], want["x_hat"])
        for name in want["likelihoods"]:
            assert torch.equal(got["likelihoods"][name], want["likelihoods"][name])
        # and the real bitstreams: identical payloads (the headers name different codecs' configs)
        _, want_sections = bitstream.unpack(calice.compress(x, {"alpha": alpha}))
        _, got_sections = bitstream.unpack(beta.compress(x, {"alpha": alpha, "beta": 0.0}))
        assert got_sections == want_sections
    beta.set_knobs({"alpha": 0.4, "beta": 1.0})
    with torch.no_grad():
        assert not torch.equal(beta(x)["x_hat"], calice(x)["x_hat"])  # the β set does act


def test_exported_beta_codec_loads_and_decodes_the_same_bitstream(tmp_path):
    from ctrlic.codecs.build import export_codec, load_codec

    _, beta, _, _ = tiny_calice_and_beta()
    with torch.no_grad():
        for p in beta.control.adapter_sets()["beta"]:
            p.normal_(0, 0.05)
    x = torch.rand(1, 3, 64, 64)
    data = beta.compress(x, {"alpha": 0.6, "beta": 1.0})
    loaded = load_codec(export_codec(beta, tmp_path / "beta.codec.pt"))
    assert type(loaded.control).__name__ == "BetaAdapters"
    assert torch.equal(loaded.decompress(data), beta.decompress(data))


@pytest.mark.parametrize("make", [
    lambda: LoRALinear(nn.Linear(12, 20), rank=4),
    lambda: ConvAdapter(nn.Conv2d(8, 6, 3, padding=1, stride=2), rank=4),
    lambda: SubpelConvAdapter(nn.Sequential(nn.Conv2d(8, 6 * 4, 3, padding=1), nn.PixelShuffle(2)), rank=2),
])
def test_stacked_adapter_merges_exactly(make):
    torch.manual_seed(0)
    inner = make()
    stacked = StackedAdapter(inner, rank=4, scale=0.7)
    inner.scale = 1.3
    with torch.no_grad():
        for p in stacked.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(2, 12) if isinstance(inner, LoRALinear) else torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(stacked.merge()(x), stacked(x), atol=1e-5, rtol=1e-4)


def test_only_the_beta_set_trains_and_both_sets_are_counted():
    _, beta, _, _ = tiny_calice_and_beta()
    scheme = beta.control
    sets = scheme.adapter_sets()
    assert {id(p) for p in scheme.trainable_parameters()} == {id(p) for p in sets["beta"]}
    groups = scheme.parameter_groups()
    assert groups["alpha set"] == groups["beta set"] > 0
    module = _rdp_module(beta)
    assert sum(p.numel() for p in module.net_params) == groups["beta set"]
    assert not module.aux_params  # entropy models frozen


def test_rate_path_moves_alpha_at_a_fixed_beta():
    _, beta, _, _ = tiny_calice_and_beta()
    path = beta.control.rate_path({"beta": 1.0})
    assert path.at(0.0) == {"alpha": 1.0, "beta": 1.0}  # lowest rate first
    assert path.at(1.0) == {"alpha": 0.0, "beta": 1.0}
    with pytest.raises(KnobError, match="exactly one free knob"):
        beta.control.rate_path()


def test_beta_is_drawn_from_the_list_independently_of_alpha():
    _, beta, _, _ = tiny_calice_and_beta()
    module = _rdp_module(beta)
    draws = []
    for step in range(300):
        module._trainer = SimpleNamespace(global_step=step)
        draws.append(module.training_knobs())
    assert [d["alpha"] for d in draws] == [draw_alpha(TRAIN_ALPHAS, 3, s) for s in range(300)]  # CALICE's α
    betas = [d["beta"] for d in draws]
    assert set(betas) == set(BETAS) and 0.0 not in betas
    assert abs(np.corrcoef([d["alpha"] for d in draws], betas)[0, 1]) < 0.2
    assert {(k["alpha"], k.get("beta")) for k in module.val_knobs} == {(a, b) for a in (0, .2, .4, .6, .8, 1)
                                                                         for b in (0.0, 1.0)}


def test_rdp_loss_weighs_lpips_by_two_beta():
    _, beta, _, _ = tiny_calice_and_beta()
    module = _rdp_module(beta)
    lmbda = module.lmbda_for({"alpha": 0.8, "beta": 0.3})
    assert lmbda == pytest.approx(interpolate_lambda(0.8, 0.048, 1.28, inverse=True))
    x = torch.rand(2, 3, 64, 64)
    out = {"x_hat": (x + 0.1 * torch.randn_like(x)).clamp(0, 1), "likelihoods": {"y": torch.full((2, 4, 4, 4), .5)}}
    terms = module.criterion(out, x, lmbda)
    torch.testing.assert_close(terms["loss"], lmbda * terms["bpp"] + 150 * terms["mse"] + 0.6 * terms["lpips"])


def test_betas_need_the_lpips_loss():
    _, beta, _, _ = tiny_calice_and_beta()
    with pytest.raises(ValueError, match="module/loss=lpips"):
        _rdp_module(beta, loss=MSERateLoss())


def test_lpips_at_beta_one_falls_below_beta_zero_after_overfitting():
    """The random anchor reconstructs at ~4 dB, where 150·MSE would drown the LPIPS term; with a small
    MSE weight the 2β·LPIPS term drives the β set, as it does beside a trained anchor's small MSE."""
    _, codec, _, _ = tiny_calice_and_beta()
    torch.manual_seed(0)
    module = _rdp_module(codec, alphas=[0.0], betas=[1.0], mse_weight=1.5)
    optimizer = torch.optim.Adam(module.net_params, lr=1e-2)
    x = torch.rand(2, 3, 64, 64)

    def lpips_at(beta: float) -> float:
        codec.eval().set_knobs({"alpha": 0.0, "beta": beta})
        with torch.no_grad():
            return module.criterion.lpips(codec(x)["x_hat"].clamp(0, 1), x).item()

    before = lpips_at(0.0)
    codec.train()
    for step in range(15):
        module._trainer = SimpleNamespace(global_step=step)
        knobs = codec.set_knobs(module.training_knobs())
        loss = module.criterion(codec(x), x, module.lmbda_for(knobs))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert lpips_at(0.0) == before  # β = 0 is untouched by training the β set
    assert lpips_at(1.0) < 0.85 * before


def test_the_experiment_trains_only_the_beta_set_on_the_rdp_loss():
    """``experiment=beta_calice_stf`` (tiny) as ``run.py`` composes it: one optimizer step on the
    β-weighted LPIPS loss moves β-adapters only (the smoke run below does it end to end, ``-m slow``)."""
    cfg = compose_cfg("experiment=beta_calice_stf", "debug=smoke", "data=demo")
    torch.manual_seed(0)
    codec = build_codec(cfg.backbone, cfg.control)
    module = hydra.utils.instantiate(cfg.module, codec=codec, _convert_="all")
    assert isinstance(module.criterion, LPIPSRateLoss) and module.inverse
    sets = codec.control.adapter_sets()
    with torch.no_grad():  # trained-looking adapters, so the β factors get gradients
        for p in [*sets["alpha"], *sets["beta"]]:
            p.normal_(0, 0.05)
    before = {n: p.detach().clone() for n, p in codec.backbone.named_parameters()}
    module._trainer = SimpleNamespace(global_step=0, max_steps=cfg.trainer.max_steps)
    optimizer = module.configure_optimizers()["optimizer"]
    codec.train()
    x = torch.rand(2, 3, 64, 64)
    knobs = codec.set_knobs(module.training_knobs())
    terms = module.criterion(codec(x), x, module.lmbda_for(knobs))
    assert module.criterion.lpips_weight == 2.0 * knobs["beta"] > 0 and "lpips" in terms
    optimizer.zero_grad()
    terms["loss"].backward()
    optimizer.step()
    beta_ids = {id(p) for p in sets["beta"]}
    moved = {n for n, p in codec.backbone.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {n for n, p in codec.backbone.named_parameters() if id(p) in beta_ids}


@pytest.mark.slow
def test_smoke_run_sweeps_the_alpha_beta_grid_with_real_bitstreams(tmp_path):
    run_cli("experiment=beta_calice_stf", "debug=smoke", "data=demo", f"hydra.run.dir={tmp_path}")
    results = load_results(tmp_path / "results.json")
    r, meta = results["results"], results["meta"]
    assert meta["knobs"] == ["alpha", "beta"] and meta["family"] == "beta"
    assert meta["grid"]["beta"] == [0.0, 1.0] and len(meta["grid"]["alpha"]) >= 2
    assert len(r["bpp"]) >= 4 and set(r["beta"]) == {0.0, 1.0}
    assert {"lpips", "dists", "psnr-rgb"} <= set(r)
    assert "too few for FID/KID" in meta["fid"]["reason"]
    # BD-LPIPS and BD-DISTS beside BD-PSNR: against the reference (a number or why not) and β = 1 against β = 0
    assert {"psnr-rgb", "ms-ssim-db", "lpips", "dists"} <= set(meta["bd"]["metrics"])
    assert meta["bd"]["metrics"]["lpips"]["reference"] == "CALICE__CALICE_RDP_beta_0.0_paper"  # bd_references
    (family,) = meta["bd_family"]["curves"].values()
    assert meta["bd_family"]["reference_curve"].endswith("beta=0")
    assert {"psnr-rgb", "ms-ssim-db", "lpips", "dists"} <= set(family)
    for entry in [*family.values(), *meta["bd"]["metrics"].values()]:
        assert (entry["bd_rate"] is not None and entry["bd_quality"] is not None) or entry["reason"]
    for point, bpp in enumerate(r["bpp"]):
        files = sorted((tmp_path / "bitstreams" / "kodak4" / f"point{point:02d}").glob("*.ctl"))
        assert len(files) == 2
        assert bpp == pytest.approx(np.mean([8 * f.stat().st_size / (128 * 128) for f in files]))
    assert (tmp_path / "rd.png").stat().st_size > 10_000


def test_info_prints_both_adapter_sets_at_paper_size_offline_without_data(tmp_path):
    """As on a fresh clone without network: no LPIPS network is built, the missing QRAF set is reported."""
    env = fresh_clone_offline(tmp_path)
    out = run_cli("experiment=beta_calice_stf", "task=info", f"hydra.run.dir={tmp_path / 'run'}", env=env).stdout
    assert "alpha set: 353,280 parameters" in out and "beta set: 353,280 parameters" in out
    info = assert_info_without_data(tmp_path / "run", out, env)
    assert info["parameters"]["control"] == {"trainable": 353_280, "frozen": 353_280}
    assert info["parameters"]["backbone"] == {"trainable": 0, "frozen": 99_855_639}
    assert [k["name"] for k in info["knobs"]] == ["alpha", "beta"]


@pytest.mark.slow
def test_paper_size_beta_run_with_batch_two_on_one_crop(tmp_path):
    run_cli("experiment=beta_calice_stf", "data=demo", "data.batch_size=2", "data.crop_size=256",
            "data.num_workers=0", "trainer.max_steps=2", "trainer.val_check_interval=2", "data.val_limit=1",
            "data.val_crop=256", "data.eval_limit=1", "data.eval_crop=256", "eval.max_points=2",
            "perceptual_pretrained=false", "module.val_alphas=[0.0,1.0]", "trainer.enable_progress_bar=false",
            f"hydra.run.dir={tmp_path}", timeout=3000)
    results = load_results(tmp_path / "results.json")
    assert len(results["results"]["bpp"]) == 4 and all(b > 0 for b in results["results"]["bpp"])
    assert results["meta"]["fid"]["patches"] == 1  # one 256×256 crop: one patch, no shifted one

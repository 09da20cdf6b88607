"""CALICE end to end: λ(α), adapter parameter counts per backbone, smoke runs with α sweeps."""

from __future__ import annotations

import math
from types import SimpleNamespace

import hydra
import numpy as np
import pytest
import torch

from ctrlic.codecs.build import build_codec
from ctrlic.evaluation.results import load_results
from ctrlic.lightning_modules.variable_rate import TRAIN_ALPHAS, draw_alpha, interpolate_lambda
from tests.conftest import info_in_process, run_cli
from tests.test_configs import compose_cfg

#: CompressAI's MSE λ for q5..q1, which log-linear interpolation hits at α = .2, .4, .6, .8, 1
COMPRESSAI_LAMBDAS = {0.2: 0.025, 0.4: 0.013, 0.6: 0.0067, 0.8: 0.0035, 1.0: 0.0018}


@pytest.mark.parametrize(("alpha", "expected"), list(COMPRESSAI_LAMBDAS.items()))
def test_log_linear_lambda_hits_compressai_qualities(alpha, expected):
    assert interpolate_lambda(alpha, 0.0018, 0.0483) == pytest.approx(expected, rel=0.04)


def test_lambda_ends_and_inverse_mode():
    assert interpolate_lambda(0.0, 0.0018, 0.0483) == pytest.approx(0.0483)
    assert interpolate_lambda(1.0, 0.0018, 0.0483) == pytest.approx(0.0018)
    # LPIPS/RDP: λ weighs the rate, so α = 1 (lowest rate) gets the largest λ
    assert interpolate_lambda(1.0, 0.048, 1.28, inverse=True) == pytest.approx(1.28)
    assert interpolate_lambda(0.0, 0.048, 1.28, inverse=True) == pytest.approx(0.048)
    assert interpolate_lambda(0.8, 0.048, 1.28, inverse=True) == pytest.approx(0.664, rel=1e-3)


def test_alpha_draw_depends_only_on_seed_and_step():
    first = [draw_alpha(TRAIN_ALPHAS, 42, s) for s in range(200)]
    assert first == [draw_alpha(TRAIN_ALPHAS, 42, s) for s in range(200)]
    assert first != [draw_alpha(TRAIN_ALPHAS, 43, s) for s in range(200)]
    assert set(first) == set(TRAIN_ALPHAS)  # every listed α is trained, α = 0 never


def test_training_knobs_follow_the_global_step():
    from ctrlic.codecs.backbones.cheng import Cheng2020Attn
    from ctrlic.codecs.codec import Codec
    from ctrlic.lightning_modules.variable_rate import VariableRateModule

    module = VariableRateModule(Codec(Cheng2020Attn(N=32), name="cheng2020_attn"), seed=7, scheduler=None)
    for step in (0, 5, 123):
        module._trainer = SimpleNamespace(global_step=step)
        assert module.training_knobs() == {"alpha": draw_alpha(TRAIN_ALPHAS, 7, step)}


@pytest.mark.parametrize(("experiment", "adapters", "total"), [
    ("calice_stf", 353_280, 99_855_639),
    ("calice_tcm", 164_352, 45_180_752),
    ("calice_cheng", 145_840, 29_631_788),
])
def test_info_prints_the_paper_adapter_counts(experiment, adapters, total, tmp_path):
    info, out = info_in_process(tmp_path, f"experiment={experiment}", "data=demo")
    assert f"{adapters:,}" in out
    info = info["parameters"]
    assert info["control"] == {"trainable": adapters, "frozen": 0}
    assert info["backbone"]["trainable"] == 0
    assert info["backbone"]["frozen"] == total
    assert math.isclose(adapters / total * 100, {"calice_stf": 0.354, "calice_tcm": 0.364,
                                                  "calice_cheng": 0.492}[experiment], abs_tol=0.001)


@pytest.mark.parametrize("experiment", ["calice_stf",
                                        pytest.param("calice_tcm", marks=pytest.mark.slow),
                                        pytest.param("calice_cheng", marks=pytest.mark.slow)])
def test_smoke_run_sweeps_alpha_with_real_bitstreams(experiment, tmp_path, request):
    """End to end for STF (the shared session run, tests/conftest.py); TCM and Cheng2020-attn train
    their adapters below, in this process."""
    if experiment == "calice_stf":
        tmp_path = request.getfixturevalue("calice_smoke_run")
        log = (tmp_path / "run.log").read_text()
    else:
        proc = run_cli(f"experiment={experiment}", "debug=smoke", "data=demo", f"hydra.run.dir={tmp_path}")
        log = proc.stdout + proc.stderr
    assert "RANDOM weights" in log  # no anchor given: loud warning, smoke run still works
    results = load_results(tmp_path / "results.json")
    alphas = results["results"]["alpha"]
    assert len(alphas) == 5 and alphas[0] == 1.0 and alphas[-1] == 0.0
    assert results["meta"]["knobs"] == ["alpha"]
    for point in range(5):
        files = sorted((tmp_path / "bitstreams" / "kodak4" / f"point{point:02d}").glob("*.ctl"))
        assert len(files) == 2
        mean_bpp = np.mean([8 * f.stat().st_size / (128 * 128) for f in files])
        assert results["results"]["bpp"][point] == pytest.approx(mean_bpp)


@pytest.mark.parametrize("experiment", ["calice_stf", "calice_tcm", "calice_cheng"])
def test_one_training_step_moves_only_the_adapters(experiment):
    """The experiment's codec (tiny) and training module, composed as ``run.py`` composes them: one
    optimizer step changes every adapter that sees a gradient and no anchor weight."""
    cfg = compose_cfg(f"experiment={experiment}", "debug=smoke", "data=demo")
    torch.manual_seed(0)
    codec = build_codec(cfg.backbone, cfg.control)
    module = hydra.utils.instantiate(cfg.module, codec=codec, _convert_="all")
    adapters = {id(p) for p in codec.control.attached_parameters()}
    with torch.no_grad():  # trained-looking adapters, so every adapter factor gets a gradient
        for p in codec.control.attached_parameters():
            p.normal_(0, 0.05)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        codec(x)  # CompressAI's masked convolutions zero their masked taps on the first forward
    before = {n: p.detach().clone() for n, p in codec.backbone.named_parameters()}
    module._trainer = SimpleNamespace(global_step=0, max_steps=cfg.trainer.max_steps)
    optimizer = module.configure_optimizers()["optimizer"]
    codec.train()
    knobs = codec.set_knobs(module.training_knobs())  # α > 0: α = 0 is the anchor, no adapter gradient
    loss = module.criterion(codec(x), x, module.lmbda_for(knobs))["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    moved = {n for n, p in codec.backbone.named_parameters() if not torch.equal(p, before[n])}
    adapter_names = {n for n, p in codec.backbone.named_parameters() if id(p) in adapters}
    assert moved and moved <= adapter_names
    assert len(moved) > 0.9 * len(adapter_names), (len(moved), len(adapter_names))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["calice_stf", "calice_tcm", "calice_cheng"])
def test_paper_size_run_with_batch_two_on_one_image(experiment, tmp_path):
    run_cli(f"experiment={experiment}", "data=demo", "data.batch_size=2", "data.crop_size=256",
            "data.num_workers=0", "trainer.max_steps=2", "trainer.val_check_interval=2", "data.val_limit=1",
            "data.val_crop=256", "data.eval_limit=1", "data.eval_crop=256", "eval.max_points=3",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}", timeout=3000)
    results = load_results(tmp_path / "results.json")
    assert len(results["results"]["bpp"]) == 3 and all(b > 0 for b in results["results"]["bpp"])

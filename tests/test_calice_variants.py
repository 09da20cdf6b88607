"""CALICE's distortion-aware recipe: merging step-1 adapters into the anchor, and the LPIPS loss."""

from __future__ import annotations

import pytest
import torch

from ctrlic.codecs.build import build_codec
from ctrlic.lightning_modules.losses import LPIPSRateLoss
from ctrlic.metrics.perceptual import LPIPS, MissingWeightsError
from tests.conftest import tiny_stf_with_adapters


def test_merged_step_one_adapters_become_the_new_anchor():
    torch.manual_seed(0)
    backbone, control = tiny_stf_with_adapters()
    step1 = build_codec(backbone, control).eval()
    with torch.no_grad():  # trained step-1 adapters: non-zero W_b
        for name, p in step1.backbone.named_parameters():
            if name.endswith("W_b"):
                p.normal_(0, 0.05)
    x = torch.rand(1, 3, 64, 64)
    step1.set_knobs({"alpha": 1.0})
    with torch.no_grad():
        expected = step1(x)["x_hat"]
    checkpoint = step1.backbone.state_dict()
    step2 = build_codec({**backbone, "checkpoint": checkpoint,
                         "adapted": {"scheme": control, "knobs": {"alpha": 1.0}}}, control).eval()
    assert any(k.endswith("lora.W_a") for k in step2.backbone.state_dict())  # a fresh α set on top
    step2.set_knobs({"alpha": 0.0})  # α = 0: the merged anchor alone
    with torch.no_grad():
        torch.testing.assert_close(step2(x)["x_hat"], expected, atol=1e-5, rtol=1e-4)


def test_lpips_loss_weighs_the_rate_and_scales_inputs():
    loss = LPIPSRateLoss(mse_weight=150.0, lpips_weight=0.1, lpips={"pretrained": False})
    x = torch.rand(2, 3, 64, 64)
    out = {"x_hat": (x + 0.1 * torch.randn_like(x)).clamp(0, 1),
           "likelihoods": {"y": torch.full((2, 4, 4, 4), 0.5)}}
    terms = loss(out, x, lmbda=1.28)
    expected = 1.28 * terms["bpp"] + 150.0 * terms["mse"] + 0.1 * terms["lpips"]
    torch.testing.assert_close(terms["loss"], expected)
    assert terms["lpips"] > 0
    assert loss.lpips(x, x) == 0


def test_missing_lpips_weights_say_which_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("no network")))
    with pytest.raises(MissingWeightsError, match=r"alexnet-owt-7be5be79\.pth in .*checkpoints"):
        LPIPS("alex", pretrained=True)


def test_rd_sweep_measures_lpips_when_asked(tmp_path):
    from ctrlic.codecs.backbones.cheng import Cheng2020Attn
    from ctrlic.codecs.codec import Codec
    from ctrlic.evaluation.evaluate import evaluate
    from ctrlic.evaluation.settings import SweepSettings

    torch.manual_seed(0)
    codec = Codec(Cheng2020Attn(N=32), name="cheng2020_attn")
    images = [{"x": torch.rand(1, 3, 64, 64), "name": ["a.png"]}]
    settings = SweepSettings(lpips={"net": "alex", "pretrained": False}, save_bitstreams=False, label="x")
    results = evaluate(codec, {"kodak4": images}, tmp_path, settings)["kodak4"]
    assert results["results"]["lpips"][0] > 0
    assert not list((tmp_path / "bitstreams").rglob("*.ctl"))

"""QVRF on every Gaussian backbone: the scaled Gaussian conditional, the training proxies, the
continuous regulator knob, exact round trips, the anchor's bits at a = 1, training one level per batch."""

from __future__ import annotations

import math

import pytest
import torch
from compressai.entropy_models import GaussianConditional

from ctrlic.codecs.bitstream import unpack
from ctrlic.codecs.build import build_codec, export_codec, load_codec
from ctrlic.codecs.control.levels import LevelConfigError
from ctrlic.codecs.entropy.gaussian import TABLES, ScaledGaussianConditional
from ctrlic.codecs.entropy.scale_table import scale_indexes
from ctrlic.errors import user_error
from ctrlic.lightning_modules.variable_rate import draw_alpha
from tests.helpers_schemes import (
    GAUSSIAN,
    compose_nodes,
    compress_at_target_bpp,
    kodak_crops,
    rising,
    round_trip,
    short_fit,
    sizes_after_short_fit,
    smoke_run_curve,
    tiny_codec,
)

LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18)
GAINS = (1.0, 1.3944, 1.9293, 2.6874, 3.7268, 5.1801, 7.1957, 10.0)


def scaled(a: float, proxy: str = "noise") -> ScaledGaussianConditional:
    conditional = ScaledGaussianConditional.replacing(GaussianConditional(None), proxy)
    conditional.update_scale_table(torch.exp(torch.linspace(math.log(0.11), math.log(256), 64)))
    conditional.regulator = torch.tensor(a)
    return conditional


def test_knob_a_is_the_regulator_with_rate_rising():
    codec = tiny_codec("tic_hyperprior", "qvrf")
    (knob,) = codec.knobs
    assert (knob.name, knob.low, knob.high, knob.default) == ("a", 0.5, 12.0, 1.0)
    assert knob.rate_increases and not knob.discrete
    assert codec.control.lambdas == LAMBDAS
    assert codec.backbone.Gain.tolist() == pytest.approx(GAINS)
    assert GAINS == pytest.approx([math.sqrt(v / LAMBDAS[0]) for v in LAMBDAS], abs=1e-4)  # sqrt(λ_i/λ_0)
    path = codec.control.rate_path()
    assert path.at(0.0) == {"a": 0.5} and path.at(1.0) == {"a": 12.0}


def test_scaled_conditional_codes_on_a_grid_of_step_one_over_a():
    conditional = scaled(2.5)
    y, means, scales = torch.randn(1, 4, 3, 3) * 3, torch.randn(1, 4, 3, 3), torch.rand(1, 4, 3, 3) + 0.2
    symbols = conditional.quantize(y, "symbols", means)
    assert torch.equal(symbols, torch.round((y - means) * 2.5).int())
    assert torch.allclose(conditional.dequantize(symbols, means), symbols / 2.5 + means)
    plain = GaussianConditional(None)
    plain.update_scale_table(conditional.scale_table)
    assert torch.equal(conditional.build_indexes(scales), plain.build_indexes(scales * 2.5))
    # the backbones' fast lookup indexes the scaled conditional as its build_indexes does
    assert torch.equal(scale_indexes(conditional, scales), conditional.build_indexes(scales).int())
    assert not torch.equal(scale_indexes(conditional, scales), scale_indexes(plain, scales))
    conditional.eval()
    plain.eval()
    _, likelihood = conditional(y, scales, means)
    _, expected = plain((y - means) * 2.5, scales * 2.5)
    assert torch.equal(likelihood, expected)
    strings = conditional.compress(y, conditional.build_indexes(scales), means)
    decoded = conditional.decompress(strings, conditional.build_indexes(scales), means=means)
    assert torch.allclose(decoded, symbols / 2.5 + means)


def test_noise_proxy_is_a_y_plus_noise_over_a_with_gradient_to_a():
    y = torch.randn(2, 3, 4, 4)
    a = torch.tensor(3.0, requires_grad=True)
    conditional = scaled(1.0).train()
    conditional.regulator = a
    torch.manual_seed(5)
    out = conditional.quantize(y, "noise", torch.zeros_like(y))
    torch.manual_seed(5)
    noise = torch.empty_like(y).uniform_(-0.5, 0.5)
    assert torch.allclose(out, (3.0 * y + noise) / 3.0)
    out.sum().backward()
    assert a.grad == pytest.approx(float(y.sum() / 3.0), rel=1e-5)  # 1/a is detached, as in QRAF


def test_ste_proxy_rounds_around_the_mean_with_a_straight_through_gradient():
    y = (torch.randn(2, 3, 4, 4) * 2).requires_grad_(True)
    means = torch.randn(2, 3, 4, 4)
    a = torch.tensor(2.0, requires_grad=True)
    conditional = scaled(1.0, proxy="ste").train()
    conditional.regulator = a
    out = conditional.quantize(y, "noise", means)
    assert torch.allclose(out, torch.round((y - means) * 2.0) / 2.0 + means)
    out.sum().backward()
    assert torch.allclose(y.grad, torch.ones_like(y))
    assert a.grad == pytest.approx(float(((y - means) / 2.0).sum()), rel=1e-5)


@pytest.mark.parametrize("backbone", GAUSSIAN)
def test_at_a_equal_one_the_payload_is_the_anchors(backbone):
    anchor, codec = tiny_codec(backbone, "none"), tiny_codec(backbone, "qvrf")
    x = kodak_crops(64)
    assert unpack(codec.compress(x, {"a": 1.0}))[1] == unpack(anchor.compress(x))[1]


@pytest.mark.parametrize("backbone", GAUSSIAN)
def test_rate_rises_with_a_after_a_short_training(backbone):
    sizes = sizes_after_short_fit(tiny_codec(backbone, "qvrf"), "a", (0.5, 1.0, 2.5, 6.0, 12.0))
    assert rising(sizes), sizes


@pytest.mark.parametrize("backbone", GAUSSIAN)
def test_decoder_reconstructs_exactly_the_latent_the_encoder_coded(backbone):
    codec = tiny_codec(backbone, "qvrf")
    recorder, _, x_hat = round_trip(codec, kodak_crops(64), {"a": 3.7})
    assert recorder.same()
    assert x_hat.shape == (1, 3, 64, 64)


def test_device_robust_entropy_path_carries_the_regulator():
    codec = tiny_codec("stf", "qvrf")
    codec.set_options(entropy_path="cpu64")
    recorder, data, _ = round_trip(codec, kodak_crops(64), {"a": 4.2})
    assert recorder.same()
    assert len(data) > len(codec.compress(kodak_crops(64), {"a": 1.0}))


def test_training_regulators_are_queried_per_level():
    codec = tiny_codec("tic_hyperprior", "qvrf")
    scheme, gain = codec.control, codec.backbone.Gain
    scheme.train_level(0)
    assert not scheme.conditional.regulator.requires_grad and float(scheme.conditional.regulator) == 1.0
    scheme.train_level(3)
    assert scheme.conditional.regulator.requires_grad
    assert float(scheme.conditional.regulator) == pytest.approx(GAINS[3] + 1e-9)
    with torch.no_grad():
        gain[4] = -2.0
    scheme.train_level(4)
    assert float(scheme.conditional.regulator) == pytest.approx(1e-4 + 1e-9)  # max(Gain[s], 1e-4) + 1e-9


def test_training_at_a_level_moves_only_that_levels_regulator():
    codec = tiny_codec("cheng2020_attn", "qvrf", "control.train_backbone=false")
    codec.prepare()  # zeroes the masked taps of the context model, as coding does
    before = {k: v.clone() for k, v in codec.backbone.state_dict().items()}
    short_fit(codec, steps=1, seed=4)
    level = draw_alpha(list(range(8)), 4, 0)
    assert level != 0  # level 0 is fixed (QRAF detaches it): this seed draws a trained one
    after = codec.backbone.state_dict()
    changed = [s for s in range(8) if after["Gain"][s] != before["Gain"][s]]
    assert changed == [level]
    assert all(torch.equal(v, after[k]) for k, v in before.items() if k != "Gain" and not k.endswith(TABLES))


def test_state_dict_is_the_backbones_plus_gain_and_an_exported_codec_codes_the_same_bits(tmp_path):
    anchor, codec = tiny_codec("cheng2020_attn", "none"), tiny_codec("cheng2020_attn", "qvrf")
    assert set(codec.backbone.state_dict()) == set(anchor.backbone.state_dict()) | {"Gain"}
    assert isinstance(codec.backbone.gaussian_conditional, ScaledGaussianConditional)
    x = kodak_crops(64)
    data = codec.compress(x, {"a": 5.5})
    loaded = load_codec(export_codec(codec, tmp_path / "qvrf.codec.pt"))
    assert loaded.compress(x, {"a": 5.5}) == data
    assert torch.equal(loaded.decompress(data), codec.decompress(data))


def test_sweep_follows_the_trained_regulators_and_lambda_sits_at_each():
    codec = tiny_codec("tic_hyperprior", "qvrf")
    with torch.no_grad():
        codec.backbone.Gain.copy_(torch.tensor([1.0, 1.5, 2.0, 2.9, 4.0, 5.0, 7.5, -11.0]))
    points = [p["a"] for p in codec.control.sweep_points()]
    assert points == sorted(points) and points[-1] == 11.0 and len(points) == 8
    for level, lmbda in enumerate(LAMBDAS):
        assert codec.control.lmbda(codec.control.level_knobs(level)) == pytest.approx(lmbda)
    assert tiny_codec("tic_hyperprior", "qvrf", "control.sweep=[1,2,3]").control.sweep_points() == [
        {"a": 1.0}, {"a": 2.0}, {"a": 3.0}]


@pytest.mark.parametrize(("overrides", "message"), [
    (["control.gains=[1.0,2.0]"], "one positive regulator per λ"),
    (["control.a_max=5.0"], "must be positive and hold every initial regulator"),
    (["control.proxy=round"], "choose one of noise, ste"),
])
def test_configs_that_cannot_work_fail_with_one_line(overrides, message):
    with pytest.raises(Exception) as info:  # noqa: PT011 - Hydra wraps what a constructor raises
        tiny_codec("cheng2020_attn", "qvrf", *overrides)
    err = user_error(info.value)
    assert isinstance(err, LevelConfigError) and message in str(err)


def test_eleven_level_variant():
    codec = tiny_codec("tic_hyperprior", "qvrf_11")
    assert codec.control.levels == 11 and codec.knobs[0].high == 30.0
    assert codec.backbone.Gain[-1].item() == pytest.approx(28.2843)


def test_ctrlic_compress_hits_a_target_bpp_within_one_percent(tmp_path):
    """On a tiny TIC at its initial regulators (untrained: the search only needs a rising rate)."""
    target, bpp, knobs = compress_at_target_bpp(tiny_codec("tic", "qvrf"), tmp_path)
    assert abs(bpp - target) <= 0.01 * target, (bpp, target)
    assert 0.5 < knobs["a"] < 12.0


def test_smoke_run_writes_a_rising_curve_from_real_bitstreams(tmp_path):
    """``experiment=qvrf debug=smoke`` (Cheng2020-attn): six stage-2 steps from random weights, then
    the RD sweep at the trained regulators."""
    results = smoke_run_curve(tmp_path, "a", "experiment=qvrf")
    assert results["a"][0] == pytest.approx(1.0, abs=0.01) and results["a"][-1] == pytest.approx(10.0, abs=0.05)


def test_stage_three_loads_the_stage_two_regulators():
    """``experiment=qvrf_ste``: the scheme attaches before the stage-2 weights load (``backbone.adapted``)."""
    stage2 = tiny_codec("tic_hyperprior", "qvrf")
    with torch.no_grad():
        stage2.backbone.Gain.mul_(1.5)
    backbone, control = compose_nodes("tic_hyperprior", "qvrf", "control.proxy=ste")
    stage3 = build_codec({**backbone, "checkpoint": stage2.backbone.state_dict(),
                          "adapted": {"scheme": control, "merge": False}}, control)
    assert torch.equal(stage3.backbone.Gain, stage2.backbone.Gain)
    assert stage3.backbone.gaussian_conditional.proxy == "ste"
    x = kodak_crops(64)
    assert unpack(stage3.compress(x, {"a": 2.0}))[1] == unpack(stage2.compress(x, {"a": 2.0}))[1]  # same payload

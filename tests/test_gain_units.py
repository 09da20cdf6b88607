"""Gain units (AG-VAE) on every Gaussian backbone by configuration: the knob q, exponential
interpolation on both sides of the coder, exact round trips, training one level per batch."""

from __future__ import annotations

import math
import re

import pytest
import torch

from ctrlic.codecs.build import build_codec, export_codec, load_codec
from ctrlic.codecs.control import gain_units
from ctrlic.codecs.control.base import SchemeFitError
from ctrlic.codecs.control.gain_units import GainUnits, GainUnitsError, interpolate_gains
from ctrlic.codecs.control.levels import LevelConfigError
from ctrlic.codecs.entropy.gaussian import TABLES
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

LAMBDAS = (0.0003, 0.001, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05)
VECTORS = ("y_gain", "y_gain_inv", "z_gain", "z_gain_inv")


def gain_codec(backbone: str, *overrides: str, seed: int = 0):
    return tiny_codec(backbone, f"gain_units_{backbone}", *overrides, seed=seed)


def spread_gains(codec, seed: int = 1) -> None:
    """Distinct positive gains per level and channel (an untrained model has them all at one)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in codec.control.attached_parameters():
            p.copy_(torch.exp(torch.randn(p.shape, generator=gen) * 0.5))
    codec.prepare()


def test_knob_q_runs_over_the_levels_with_rate_rising():
    codec = gain_codec("tic_hyperprior")
    (knob,) = codec.knobs
    assert (knob.name, knob.low, knob.high, knob.default) == ("q", 0.0, 7.0, 7.0)
    assert knob.rate_increases and not knob.discrete
    assert knob.sweep == tuple(i / 2 for i in range(15))
    path = codec.control.rate_path()
    assert path.at(0.0) == {"q": 0.0} and path.at(1.0) == {"q": 7.0} and path.at(0.5) == {"q": 3.5}
    assert codec.control.lambdas == LAMBDAS  # conf/control/gain_units.yaml, rising


def test_interpolation_is_exponential_between_neighbouring_levels():
    gains = torch.tensor([[1.0, 2.0], [4.0, 8.0], [2.0, 2.0]])
    assert torch.equal(interpolate_gains(gains, 1.0), gains[1])
    assert torch.allclose(interpolate_gains(gains, 0.5), torch.tensor([2.0, 4.0]))  # geometric means
    assert torch.allclose(interpolate_gains(gains, 1.25), gains[1] ** 0.75 * gains[2] ** 0.25)
    assert torch.equal(interpolate_gains(gains, 2.0), gains[2])


def test_lambda_of_a_knob_setting_is_log_linear_between_levels():
    scheme = gain_codec("tic_hyperprior").control
    assert scheme.lmbda({"q": 3.0}) == pytest.approx(LAMBDAS[3])
    assert scheme.lmbda({"q": 3.5}) == pytest.approx(math.sqrt(LAMBDAS[3] * LAMBDAS[4]))


@pytest.mark.parametrize("backbone", GAUSSIAN)
def test_rate_rises_with_q_after_a_short_training(backbone):
    """Five q values, real bitstreams, bpp strictly rising. Two training steps barely move the gains, so
    they start at sqrt(λ_s/λ_0) (``init: sqrt_lambda``): the levels differ in rate from the start."""
    sizes = sizes_after_short_fit(gain_codec(backbone, "control.init=sqrt_lambda"), "q", (0.0, 1.75, 3.5, 5.25, 7.0))
    assert rising(sizes), sizes


@pytest.mark.parametrize("backbone", GAUSSIAN)
def test_decoder_reconstructs_exactly_the_latent_the_encoder_coded(backbone):
    codec = gain_codec(backbone)
    spread_gains(codec)
    recorder, _, x_hat = round_trip(codec, kodak_crops(64), {"q": 2.37})
    assert recorder.same()
    assert x_hat.shape == (1, 3, 64, 64)


def _hyper_inputs(codec, x, q, decoder_interpolation=None, monkeypatch=None):
    """The ẑ·g_z⁻¹ that reaches h_s when encoding and when decoding (and the decoded image)."""
    seen = []
    handle = codec.backbone.h_s.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        data = codec.compress(x, {"q": q})
        if decoder_interpolation is not None:
            monkeypatch.setattr(gain_units, "interpolate_gains", decoder_interpolation)
        x_hat = codec.decompress(data)
    finally:
        handle.remove()
    return seen[0], seen[1], x_hat


def test_encoder_and_decoder_interpolate_alike_where_a_linear_decoder_would_not(monkeypatch):
    """The unofficial decoder (GainedVAE gain.py:138-144) interpolates the inverse gains linearly while its
    encoder interpolates exponentially: its ẑ, hence every y scale, differs from the encoder's."""
    codec = gain_codec("cheng2020_attn")
    spread_gains(codec)
    with torch.no_grad():
        codec.backbone.z_gain.mul_(50.0)  # an untrained h_a gives |z| < 0.5: make ẑ non-zero
    codec.prepare()
    x = kodak_crops(64)
    encoded, decoded, x_hat = _hyper_inputs(codec, x, 3.4)
    assert torch.equal(encoded, decoded) and encoded.abs().sum() > 0

    def linear(gains, q):
        s = min(math.floor(q), len(gains) - 2)
        return gains[s] * (1 - (q - s)) + gains[s + 1] * (q - s)

    encoded_bug, decoded_bug, x_hat_bug = _hyper_inputs(codec, x, 3.4, linear, monkeypatch)
    assert torch.equal(encoded_bug, encoded) and not torch.equal(decoded_bug, encoded)
    assert not torch.equal(x_hat_bug, x_hat)


def test_training_at_a_level_moves_only_that_levels_gains():
    codec = gain_codec("tic_hyperprior", "control.train_backbone=false")
    backbone_before = {k: v.clone() for k, v in codec.backbone.state_dict().items() if k not in VECTORS}
    before = {v: getattr(codec.backbone, v).detach().clone() for v in VECTORS}
    short_fit(codec, steps=1, seed=3)
    level = draw_alpha(list(range(8)), 3, 0)
    for vector in VECTORS:
        after = getattr(codec.backbone, vector).detach()
        changed = [s for s in range(8) if not torch.equal(after[s], before[vector][s])]
        assert changed == [level], (vector, changed)
    assert all(torch.equal(v, codec.backbone.state_dict()[k]) for k, v in backbone_before.items()
               if not k.endswith(TABLES))


def test_state_dict_carries_the_gain_vectors_and_an_exported_codec_codes_the_same_bits(tmp_path):
    codec = gain_codec("stf")
    spread_gains(codec)
    widths = codec.backbone.latent_channels
    state = codec.backbone.state_dict()
    assert {k: tuple(state[k].shape) for k in VECTORS} == {
        "y_gain": (8, widths["y"]), "y_gain_inv": (8, widths["y"]), "z_gain": (8, widths["z"]),
        "z_gain_inv": (8, widths["z"])}
    x = kodak_crops(64)
    data = codec.compress(x, {"q": 4.6})
    loaded = load_codec(export_codec(codec, tmp_path / "gain.codec.pt"))
    assert loaded.compress(x, {"q": 4.6}) == data
    assert torch.equal(loaded.decompress(data), codec.decompress(data))


def test_reattaching_takes_the_gains_over_without_applying_them_twice():
    codec = gain_codec("tcm")
    spread_gains(codec)
    x = kodak_crops(64)
    codec.eval().set_knobs({"q": 1.5})
    with torch.no_grad():
        before = codec(x)["x_hat"]
    scheme = GainUnits(**{k: v for k, v in compose_nodes("tcm", "gain_units_tcm")[1].items() if k != "_target_"})
    scheme.attach(codec.backbone)
    scheme.apply({"q": 1.5})
    with torch.no_grad():
        assert torch.equal(codec(x)["x_hat"], before)


def test_device_robust_entropy_path_carries_the_hyper_gains():
    """cpu64 runs h_s as a float64 copy; the inverse hyper gain goes with it, on both sides."""
    codec = gain_codec("cheng2020_attn")
    spread_gains(codec)
    codec.set_options(entropy_path="cpu64")
    recorder, _, _ = round_trip(codec, kodak_crops(64), {"q": 5.5})
    assert recorder.same()


@pytest.mark.parametrize(("overrides", "message"), [
    (["control.y_gain=[nothing]"], "matches no module"),
    (["control.y_gain=['g_[as]']"], "must match the one module"),
    (["control.y_gain=[]"], "must name where y leaves"),
    (["control.z_gain_inv=[]"], "both z_gain and z_gain_inv"),
    (["control.init=zeros"], "choose one of ones, sqrt_lambda"),
])
def test_configs_that_cannot_work_fail_with_one_line(overrides, message):
    with pytest.raises(Exception) as info:  # noqa: PT011 - Hydra wraps what a constructor raises
        gain_codec("cheng2020_attn", *overrides)
    err = user_error(info.value)
    assert isinstance(err, GainUnitsError) and re.search(message, str(err)) and "\n" not in str(err)


def test_a_channels_last_stage_not_declared_so_is_named():
    codec = gain_codec("stf", "control.channels_last=[]")
    with pytest.raises(GainUnitsError, match="layers.3 carries .* list it under channels_last"):
        codec(kodak_crops(64))


def test_lambdas_must_rise():
    with pytest.raises(Exception) as info:  # noqa: PT011 - Hydra wraps what a constructor raises
        gain_codec("cheng2020_attn", "control.lambdas=[0.05,0.01]")
    assert isinstance(user_error(info.value), LevelConfigError) and "rising order" in str(info.value)


def test_a_backbone_without_a_gaussian_latent_is_refused():
    backbone, _ = compose_nodes("mgcf", "none")
    _, control = compose_nodes("cheng2020_attn", "gain_units_cheng2020_attn")
    with pytest.raises(SchemeFitError, match="GainUnits does not fit backbone MGCF: it needs a latent y"):
        build_codec(backbone, control)


def test_ctrlic_compress_hits_a_target_bpp_within_one_percent(tmp_path):
    """On a tiny STF whose gains start sqrt(λ_s/λ_0) apart (untrained: the search only needs a rising rate)."""
    target, bpp, knobs = compress_at_target_bpp(gain_codec("stf", "control.init=sqrt_lambda"), tmp_path)
    assert abs(bpp - target) <= 0.01 * target, (bpp, target)
    assert 0.0 < knobs["q"] < 7.0


def test_smoke_run_writes_a_rising_curve_from_real_bitstreams(tmp_path):
    """``experiment=gain_units backbone=stf debug=smoke``: six joint training steps, then the RD sweep
    (gains starting sqrt(λ_s/λ_0) apart: six steps barely move them)."""
    results = smoke_run_curve(tmp_path, "q", "experiment=gain_units", "backbone=stf", "control.init=sqrt_lambda")
    assert results["q"][0] == 0.0 and results["q"][-1] == 7.0

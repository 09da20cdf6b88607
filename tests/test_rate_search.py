"""Target-rate search on real bitstreams: one search for every scheme, on a codec trained to a useful α range."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from ctrlic.codecs.build import build_codec, load_codec
from ctrlic.codecs.rate_search import RateSearchError, search_target
from ctrlic.datamodules.image_io import load_rgb8, to_tensor
from tests.conftest import ROOT, tiny_stf_with_adapters
from tests.helpers_cli import kodak_crop, models  # noqa: F401 - session fixture


@pytest.fixture(scope="module")
def codec(models):  # noqa: F811
    return load_codec(models["model"])


@pytest.fixture(scope="module")
def crop(tmp_path_factory) -> torch.Tensor:
    return to_tensor(load_rgb8(kodak_crop(tmp_path_factory.mktemp("crop") / "k.png"))[0])[None]


def _ends(codec, x) -> tuple[float, float]:
    pixels = x.shape[-2] * x.shape[-1]
    rates = [8 * len(codec.compress(x, {"alpha": a})) / pixels for a in (0.0, 1.0)]
    return min(rates), max(rates)


def test_bpp_target_inside_the_range_is_met_within_one_percent(codec, crop):
    low, high = _ends(codec, crop)
    assert high > 1.5 * low, "the trained α range must span a useful rate range"
    target = math.sqrt(low * high)
    seen = []
    found = search_target(codec, crop, target, on_probe=seen.append)
    assert found.in_range and found.relative_error <= 0.01, found.message
    assert found.bpp == 8 * len(found.data) / (crop.shape[-2] * crop.shape[-1])  # the whole file counts
    assert found.encodes == len(seen) <= 20
    assert codec.decompress(found.data).shape == crop.shape
    assert 0.0 < found.knobs["alpha"] < 1.0


def test_psnr_target_is_met_on_the_decoded_image(codec, crop):
    from ctrlic.metrics.quality import psnr

    ends = [psnr(crop, codec.decompress(codec.compress(crop, {"alpha": a}))) for a in (0.0, 1.0)]
    target = sum(ends) / 2
    found = search_target(codec, crop, target, metric="psnr", tolerance=0.002)
    assert abs(psnr(crop, codec.decompress(found.data)) - target) <= 0.002 * target + 1e-9


def test_target_beyond_the_range_uses_the_nearest_end_and_says_so(codec, crop):
    low, high = _ends(codec, crop)
    found = search_target(codec, crop, 3 * high)
    assert not found.in_range and "above the highest" in found.message
    assert found.bpp == pytest.approx(high) and found.encodes == 2
    found = search_target(codec, crop, low / 3)
    assert not found.in_range and "below the lowest" in found.message


def test_fixed_knobs_leave_no_free_knob_to_search(codec, crop):
    with pytest.raises(RateSearchError, match="exactly one free knob"):
        search_target(codec, crop, 0.5, fixed={"alpha": 0.5})


def test_fixed_rate_and_lossless_codecs_refuse_a_target(crop):
    backbone_cfg, _ = tiny_stf_with_adapters()
    with pytest.raises(RateSearchError, match="fixed-rate"):
        search_target(build_codec(backbone_cfg), crop, 0.5)
    mgcf = {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "backbone" / "mgcf.yaml")), "size": "tiny"}
    with pytest.raises(RateSearchError, match="lossless"):
        search_target(build_codec(mgcf), crop, 0.5)

"""Classical codecs through imagecodecs: exact lossless decodes, lossy RD points and results-format curves."""

from pathlib import Path

import numpy as np
import pytest

from ctrlic.datamodules.image_io import load_rgb8
from ctrlic.evaluation.classical import (
    LOSSLESS_CODECS,
    LOSSY_CODECS,
    ClassicalCodecError,
    lossless_bpsp,
    lossless_table,
    lossy_point,
    rd_curve,
)
from ctrlic.evaluation.results import validate_results

KODAK4 = Path(__file__).resolve().parents[1] / "data" / "demo" / "kodak4"


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    img, _ = load_rgb8(KODAK4 / "kodim01.png")
    return img[:64, :96].copy()


@pytest.mark.parametrize("codec", LOSSLESS_CODECS)
def test_lossless_bpsp_beats_raw_and_noise_does_not_compress(crop, codec):
    bpsp = lossless_bpsp(crop, codec)
    assert 0.5 < bpsp < 8.0
    noise = np.random.default_rng(0).integers(0, 256, crop.shape, dtype=np.uint8)
    assert lossless_bpsp(noise, codec) > 7.5


def test_lossless_table_is_the_mean_over_images(crop):
    flipped = crop[::-1].copy()
    table = lossless_table([crop, flipped], codecs=("png",))
    expected = (lossless_bpsp(crop, "png") + lossless_bpsp(flipped, "png")) / 2
    assert table == {"png": pytest.approx(expected)}


@pytest.mark.parametrize("codec", LOSSY_CODECS)
def test_lossy_rate_and_quality_rise_with_the_quality_knob(crop, codec):
    low_bpp, low = lossy_point(crop, codec, 10)
    high_bpp, high = lossy_point(crop, codec, 90)
    assert low.dtype == np.uint8 and low.shape == crop.shape
    assert low_bpp < high_bpp
    err_low = np.abs(low.astype(int) - crop).mean()
    err_high = np.abs(high.astype(int) - crop).mean()
    assert 0 < err_high < err_low


def test_rd_curve_is_a_valid_results_dict_ordered_by_quality(crop):
    curve = rd_curve([crop, crop[:, ::-1].copy()], "jpeg", qualities=(80, 20, 50), dataset="kodak")
    validate_results(curve)
    assert curve["name"].startswith("JPEG (libjpeg_turbo ")
    assert curve["meta"]["qualities"] == [20, 50, 80]
    assert curve["meta"]["num_images"] == 2
    bpp, psnr = curve["results"]["bpp"], curve["results"]["psnr-rgb"]
    assert bpp == sorted(bpp) and psnr == sorted(psnr)
    assert len(curve["results"]["ms-ssim-rgb"]) == 3
    single_bpp, _ = lossy_point(crop, "jpeg", 20)
    mirrored_bpp, _ = lossy_point(crop[:, ::-1].copy(), "jpeg", 20)
    assert bpp[0] == pytest.approx((single_bpp + mirrored_bpp) / 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda img: lossless_bpsp(img, "gif"), "unknown lossless codec"),
        (lambda img: lossy_point(img, "png", 50), "unknown lossy codec"),
        (lambda img: lossy_point(img, "jpeg", 0), "quality must be an integer in 1..100"),
        (lambda img: lossy_point(img, "jpeg", 50.5), "quality must be an integer"),
        (lambda img: lossy_point(img.astype(np.float32), "jpeg", 50), "HxWx3 uint8"),
        (lambda img: lossless_bpsp(img[..., 0], "png"), "HxWx3 uint8"),
        (lambda img: rd_curve([], "jpeg"), "images is empty"),
        (lambda img: rd_curve([img], "webp", qualities=()), "qualities is empty"),
    ],
)
def test_bad_input_raises_a_value_error_saying_what_to_do(crop, call, message):
    with pytest.raises(ClassicalCodecError, match=message):
        call(crop)
    assert issubclass(ClassicalCodecError, ValueError)

"""Tests for BD-rate / BD-PSNR, including published values reproduced to high precision."""

import numpy as np
import pytest

from ctrlic.evaluation.bdrate import MIN_POINTS, BDResult, bd_psnr, bd_rate, bd_rate_against
from ctrlic.evaluation.references import find_reference_curve
from ctrlic.evaluation.results import make_results

# Y-PSNR RD points from JCTVC-E137 with the BD-rates of the JCT-VC PCHIP Excel sheet, as published in
# Netflix/vmaf python/test/bd_rate_calculator_test.py (BDrateCalculatorJCTVCTest; values there are fractions).
JCTVC_E137 = [
    (
        [(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)],
        [(108061.2784, 43.6768), (61299.9936, 40.4232), (33928.7472, 37.2761), (18910.912, 34.3147)],
        -0.00465215420752807 * 100,
    ),
    (
        [(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)],
        [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)],
        -0.018779823450567612 * 100,
    ),
]

REF_BPP = [0.12, 0.2, 0.31, 0.47, 0.66, 0.9]
REF_PSNR = [28.4, 29.9, 31.4, 33.2, 34.9, 36.6]


@pytest.mark.parametrize(("reference", "test", "published"), JCTVC_E137)
def test_reproduces_published_jctvc_e137_pchip_bd_rate(reference, test, published) -> None:
    ref_rate, ref_psnr = zip(*reference, strict=True)
    test_rate, test_psnr = zip(*test, strict=True)
    result = bd_rate(ref_rate, ref_psnr, test_rate, test_psnr, method="pchip")
    assert result.reason is None
    assert result.value == pytest.approx(published, abs=1e-6)
    # Akima and cubic interpolate differently; they agree to within a few hundredths of a percent here.
    for method in ("akima", "cubic"):
        assert bd_rate(ref_rate, ref_psnr, test_rate, test_psnr, method=method).value == pytest.approx(
            published, abs=0.05
        )


@pytest.mark.parametrize("method", ["akima", "pchip", "cubic"])
def test_identical_curves_give_zero(method: str) -> None:
    assert bd_rate(REF_BPP, REF_PSNR, REF_BPP, REF_PSNR, method=method).value == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(REF_BPP, REF_PSNR, REF_BPP, REF_PSNR, method=method).value == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["akima", "pchip", "cubic"])
def test_ten_percent_fewer_bits_gives_minus_ten_percent(method: str) -> None:
    test_bpp = [0.9 * b for b in REF_BPP]
    assert bd_rate(REF_BPP, REF_PSNR, test_bpp, REF_PSNR, method=method).value == pytest.approx(
        -10.0, abs=1e-6
    )
    assert bd_psnr(REF_BPP, REF_PSNR, test_bpp, REF_PSNR, method=method).value > 0


def test_bd_psnr_constant_offset() -> None:
    result = bd_psnr(REF_BPP, REF_PSNR, REF_BPP, [p + 1.0 for p in REF_PSNR])
    assert result == BDResult(pytest.approx(1.0, abs=1e-9), None)


def test_non_overlapping_curves_give_reason() -> None:
    result = bd_rate(REF_BPP, REF_PSNR, [0.05, 0.08, 0.12, 0.2], [22.1, 23.5, 24.6, 25.3])
    assert result.value is None
    assert result.reason == "the curves do not overlap in quality (reference 28.4–36.6, test 22.1–25.3)"
    result = bd_psnr(REF_BPP, REF_PSNR, [2.0, 3.0, 4.0, 5.0], [40.0, 41.0, 42.0, 43.0])
    assert result.value is None and "do not overlap in rate" in result.reason


def test_two_point_curve_gives_reason() -> None:
    result = bd_rate(REF_BPP, REF_PSNR, [0.2, 0.4], [30.0, 33.0])
    assert result.value is None
    assert (
        result.reason == "too few points: the test curve has 2 usable points, at least 4 are needed for akima"
    )
    assert bd_rate(REF_BPP, REF_PSNR, [0.2, 0.4], [30.0, 33.0], method="pchip").value is not None
    assert MIN_POINTS == {"akima": 4, "cubic": 4, "pchip": 2}


def test_points_are_sorted_and_non_finite_dropped() -> None:
    order = [3, 0, 5, 1, 4, 2]
    shuffled = bd_rate(REF_BPP, REF_PSNR, [0.9 * REF_BPP[i] for i in order], [REF_PSNR[i] for i in order])
    assert shuffled.value == pytest.approx(-10.0, abs=1e-6)
    noisy = bd_rate(REF_BPP + [np.nan, 0.0], REF_PSNR + [30.0, 30.0], REF_BPP, [p + 0.5 for p in REF_PSNR])
    assert noisy.value is not None and noisy.value < 0
    too_few = bd_rate(REF_BPP, REF_PSNR, [0.2, 0.3, np.inf, 0.5], [30.0, 31.0, 32.0, np.nan])
    assert too_few.value is None and "2 usable points" in too_few.reason


def test_non_monotone_curve_gives_reason() -> None:
    result = bd_rate(REF_BPP, REF_PSNR, REF_BPP, [28.4, 29.9, 29.0, 33.2, 34.9, 36.6])
    assert result.value is None and "does not increase strictly" in result.reason


def test_argument_errors_raise() -> None:
    with pytest.raises(ValueError, match="unknown BD interpolation method"):
        bd_rate(REF_BPP, REF_PSNR, REF_BPP, REF_PSNR, method="linear")
    with pytest.raises(ValueError, match="equal length"):
        bd_rate(REF_BPP, REF_PSNR[:-1], REF_BPP, REF_PSNR)


def test_bd_rate_against_reference_curves() -> None:
    vtm = find_reference_curve("kodak", "vtm")
    bpg = find_reference_curve("kodak", "bpg_444_x265_ycbcr")
    result = bd_rate_against(bpg, vtm)
    assert result.reason is None and 10 < result.value < 40  # BPG (HEVC) needs clearly more bits than VTM
    assert bd_rate_against(vtm, vtm).value == pytest.approx(0.0, abs=1e-9)
    assert bd_rate_against(bpg, vtm, metric="ms-ssim-rgb").value > 0
    ours = make_results("ours", "", [{"bpp": 0.1 * (i + 1), "lpips": 0.1} for i in range(4)])
    missing = bd_rate_against(ours, vtm)
    assert missing.value is None and missing.reason == "the test results (ours) have no psnr-rgb"


def test_pareto_front_drops_points_that_bend_back():
    from ctrlic.evaluation.bdrate import pareto_front

    curve = {"name": "x", "results": {"bpp": [0.3, 0.1, 0.2, 0.4], "psnr-rgb": [30.0, 28.0, 31.0, 29.0]}}
    front = pareto_front(curve)["results"]
    assert front == {"bpp": [0.1, 0.2], "psnr-rgb": [28.0, 31.0]}

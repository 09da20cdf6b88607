"""BD-rate and BD-quality on PSNR, MS-SSIM (dB), LPIPS and DISTS, with "no number" when curves cannot be compared."""

from __future__ import annotations

import math

import pytest

from ctrlic.evaluation.bd_metrics import bd_all, bd_entry, bd_meta, summary_columns
from ctrlic.evaluation.results import make_results

BPP = [0.1, 0.2, 0.4, 0.8]
QUALITY = {"psnr-rgb": [28.0, 30.0, 32.0, 34.0], "ms-ssim-rgb": [0.90, 0.93, 0.96, 0.98],
           "lpips": [0.40, 0.30, 0.20, 0.10], "dists": [0.30, 0.22, 0.15, 0.09]}


def curve(name: str, rate_scale: float = 1.0, extra: dict | None = None, drop: tuple = ()) -> dict:
    points = [{"bpp": b * rate_scale, **{k: v[i] for k, v in QUALITY.items() if k not in drop}, **(extra or {})}
              for i, b in enumerate(BPP)]
    return make_results(name, "test", points)


def test_ten_percent_fewer_bits_is_minus_ten_percent_on_every_axis_and_lower_lpips_is_better():
    entries = bd_all(curve("test", 0.9), curve("reference"))
    assert set(entries) == {"psnr-rgb", "ms-ssim-db", "lpips", "dists"}
    for axis, entry in entries.items():
        assert entry["bd_rate"] == pytest.approx(-10.0, abs=0.01), axis
        assert entry["reason"] is None
    assert entries["psnr-rgb"]["bd_quality"] > 0 and entries["ms-ssim-db"]["bd_quality"] > 0
    assert entries["lpips"]["bd_quality"] < 0 and entries["dists"]["bd_quality"] < 0  # lower is better
    assert entries["lpips"]["higher_is_better"] is False and entries["ms-ssim-db"]["unit"] == "dB"
    worse = bd_entry(curve("test", 1.25), curve("reference"), "lpips")
    assert worse["bd_rate"] == pytest.approx(25.0, abs=0.01) and worse["bd_quality"] > 0


def test_no_number_when_the_curves_do_not_overlap_or_the_reference_lacks_the_metric():
    far = make_results("far", "test", [{"bpp": b, "lpips": q} for b, q in zip(BPP, [0.05, 0.04, 0.03, 0.02],
                                                                               strict=True)])
    entry = bd_entry(far, curve("reference"), "lpips")
    assert entry["bd_rate"] is None and "do not overlap in quality" in entry["reason"]
    entry = bd_entry(curve("test", 0.9), curve("reference", drop=("dists",)), "dists")
    assert entry["bd_rate"] is None and entry["bd_quality"] is None
    assert entry["reason"] == "the reference curve (reference) has no DISTS"


def test_family_sweeps_compare_every_curve_with_the_first_and_the_summary_takes_the_columns():
    points = [{"bpp": b, **{k: v[i] for k, v in QUALITY.items()}, "alpha": 1 - i / 3, "beta": 0.0}
              for i, b in enumerate(BPP)]
    points += [{**p, "bpp": p["bpp"] * 1.1, "lpips": p["lpips"] * 0.5, "beta": 1.0} for p in points]
    results = make_results("beta_calice", "test", points, {"knobs": ["alpha", "beta"]})
    meta = bd_meta(results, "kodak", "CALICE__CALICE-STF_mse", family="beta")
    assert meta["bd"]["curve"] == "beta_calice beta=0" and meta["bd"]["reference"] == "CALICE__CALICE-STF_mse"
    assert "has no LPIPS" in meta["bd"]["metrics"]["lpips"]["reason"]  # the paper curve reports PSNR only
    family = meta["bd_family"]["curves"]["beta_calice beta=1"]
    assert family["psnr-rgb"]["bd_rate"] == pytest.approx(10.0, abs=0.01)  # same PSNR at 10 % more bits
    assert family["lpips"]["bd_quality"] < 0  # but a better (lower) LPIPS at the same rate
    assert math.isfinite(family["dists"]["bd_rate"])
    results["meta"].update(meta)
    row = summary_columns(results)
    assert row["bd_rate_lpips"] is None and row["bd_lpips"] is None and row["bd_ms-ssim-db"] is None
    assert bd_meta(results, None, "vtm")["bd"]["reason"] == "no reference curves for this evaluation set"
    lpips = bd_meta(results, "kodak", "CALICE__CALICE-STF_mse", "beta",
                    axis_references={"lpips": "CALICE__CALICE_RDP_beta_0.0_paper", "dists": "nope"})["bd"]["metrics"]
    assert lpips["lpips"]["reference"] == "CALICE__CALICE_RDP_beta_0.0_paper"
    assert "has no LPIPS" not in (lpips["lpips"]["reason"] or "")  # compared (a number, or why the curves do not)
    assert lpips["dists"]["reference"] == "nope" and "no kodak reference curve named 'nope'" in lpips["dists"]["reason"]
    assert bd_meta(results, "kodak", None)["bd"]["reason"].startswith("no reference curve configured")

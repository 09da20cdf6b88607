"""BD-rate and BD-quality on every quality axis a sweep measured: PSNR, MS-SSIM in dB, LPIPS, DISTS.

LPIPS and DISTS fall as quality rises, so the BD computation runs on their negatives and BD-quality is
reported back in the metric's own units: ``bd_quality`` is test − reference at equal rate (PSNR and
MS-SSIM dB: positive is better; LPIPS and DISTS: negative is better). As in ``bdrate``, no number is
given when the curves cannot be compared (too few points, no overlap, non-monotone): a reason instead.
"""

from __future__ import annotations

import math

from ctrlic.evaluation.bdrate import bd_psnr, bd_rate
from ctrlic.evaluation.plot import split_family
from ctrlic.evaluation.references import find_reference_curve

#: quality axis -> (label, unit, source key in results, higher is better)
AXES: dict[str, tuple[str, str, str, bool]] = {
    "psnr-rgb": ("PSNR", "dB", "psnr-rgb", True),
    "ms-ssim-db": ("MS-SSIM", "dB", "ms-ssim-rgb", True),
    "lpips": ("LPIPS", "", "lpips", False),
    "lpips-vgg": ("LPIPS-VGG", "", "lpips-vgg", False),
    "dists": ("DISTS", "", "dists", False),
}
#: summary-table columns (``bd_rate_<axis>`` in percent, ``bd_<axis>`` in the axis' units)
SUMMARY_COLUMNS = tuple(c for a in ("ms-ssim-db", "lpips", "dists") for c in (f"bd_rate_{a}", f"bd_{a}"))


def axis_values(results: dict, axis: str) -> list[float] | None:
    """The curve's values on ``axis`` (MS-SSIM converted to dB), or None when it was not measured."""
    values = results["results"].get(AXES[axis][2])
    if values is None:
        return None
    if axis == "ms-ssim-db":
        return [-10.0 * math.log10(1.0 - v) if v < 1.0 else math.inf for v in values]
    return list(values)


def bd_entry(test: dict, reference: dict, axis: str, method: str = "akima") -> dict:
    """BD-rate (percent) and BD-quality (axis units) of ``test`` against ``reference`` on one axis."""
    label, unit, _, higher = AXES[axis]
    entry = {"label": label, "unit": unit, "higher_is_better": higher, "bd_rate": None, "bd_quality": None}
    curves = {}
    for name, d in (("test", test), ("reference", reference)):
        values = axis_values(d, axis)
        if values is None:
            return {**entry, "reason": f"the {name} curve ({d.get('name', '?')}) has no {label}"}
        curves[name] = (d["results"]["bpp"], values if higher else [-v for v in values])
    (rb, rq), (tb, tq) = curves["reference"], curves["test"]
    rate, quality = bd_rate(rb, rq, tb, tq, method), bd_psnr(rb, rq, tb, tq, method)
    value = quality.value if quality.value is None or higher else -quality.value
    reasons = [f"{k}: {r.reason}" for k, r in (("BD-rate", rate), ("BD-quality", quality)) if r.reason]
    return {**entry, "bd_rate": rate.value, "bd_quality": value, "reason": "; ".join(reasons) or None}


def bd_all(test: dict, reference: dict, method: str = "akima") -> dict[str, dict]:
    """``bd_entry`` on every axis the test curve measured."""
    return {axis: bd_entry(test, reference, axis, method) for axis in AXES if axis_values(test, axis) is not None}


def _reference(dataset: str | None, name: str | None) -> tuple[dict | None, str | None]:
    """A reference curve by name, or None and why not."""
    if not name:
        return None, "no reference curve configured (bd_reference)"
    if dataset is None:
        return None, "no reference curves for this evaluation set"
    try:
        return find_reference_curve(dataset, name), None
    except ValueError as err:
        return None, str(err)


def bd_meta(results: dict, dataset: str | None, reference_name: str | None, family: str | None = None,
            method: str = "akima", axis_references: dict[str, str] | None = None) -> dict:
    """``meta.bd`` (every axis against the configured reference curve, or why not) and, for a family
    sweep, ``meta.bd_family``: every other curve against the first (e.g. β > 0 against β = 0).

    ``axis_references`` names another reference for some axes (e.g. a published LPIPS curve for
    ``lpips`` when ``bd_reference`` reports PSNR only); those entries carry their ``reference``.
    """
    curves = split_family(results, family) if family else [results]
    bd: dict = {"reference": reference_name, "method": method, "curve": curves[0]["name"], "metrics": {}}
    default, reason = _reference(dataset, reference_name)
    if reason:
        bd["reason"] = reason
    for axis in AXES:
        if axis_values(curves[0], axis) is None:
            continue
        name = (axis_references or {}).get(axis)
        reference, why = _reference(dataset, name) if name else (default, reason)
        if name and reference is None:
            bd["metrics"][axis] = {"label": AXES[axis][0], "reference": name, "bd_rate": None, "bd_quality": None,
                                   "reason": why}
        elif reference is not None:
            bd["metrics"][axis] = {**bd_entry(curves[0], reference, axis, method), **({"reference": name} if name else {})}
    out = {"bd": bd}
    if family and len(curves) > 1:
        out["bd_family"] = {"reference_curve": curves[0]["name"], "method": method,
                            "curves": {c["name"]: bd_all(c, curves[0], method) for c in curves[1:]}}
    return out


def summary_columns(results: dict | None) -> dict[str, float | None]:
    """The perceptual BD columns of a job's summary row (against its configured reference)."""
    metrics = ((results or {}).get("meta", {}).get("bd") or {}).get("metrics", {})
    row = {}
    for column in SUMMARY_COLUMNS:
        axis = column.removeprefix("bd_rate_").removeprefix("bd_")
        row[column] = metrics.get(axis, {}).get("bd_rate" if column.startswith("bd_rate_") else "bd_quality")
    return row

"""Bjøntegaard delta rate and quality between two RD curves, via the ``bjontegaard`` package.

Instead of raising or returning NaN, every function returns a :class:`BDResult` whose ``reason`` says why
no value could be computed (too few points, no overlap, non-monotone curve, interpolation failure).

Minimum points per curve: 4 for "akima" and "cubic" (the cubic fit has 4 coefficients, and Akima needs
more than 2 points or the package silently falls back to a straight line); 2 for "pchip", which is
shape-preserving and stays meaningful on short curves (2 points give a straight line in log-rate).
"""

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import bjontegaard
import numpy as np

METHODS: tuple[str, ...] = ("akima", "pchip", "cubic")
MIN_POINTS: dict[str, int] = {"akima": 4, "cubic": 4, "pchip": 2}


@dataclass(frozen=True)
class BDResult:
    """BD value (percent for BD-rate, quality units for BD-quality) or None with the reason why."""

    value: float | None
    reason: str | None = None


def _clean(bpp: Sequence[float], quality: Sequence[float], label: str) -> tuple[np.ndarray, np.ndarray]:
    """Drop non-finite and non-positive-rate points and sort by rate (log10 of the rate is taken later)."""
    rate = np.asarray(bpp, dtype=float)
    qual = np.asarray(quality, dtype=float)
    if rate.shape != qual.shape or rate.ndim != 1:
        raise ValueError(
            f"the {label} curve needs two 1-D sequences of equal length, got shapes {rate.shape} and {qual.shape}"
        )
    keep = np.isfinite(rate) & np.isfinite(qual) & (rate > 0)
    order = np.argsort(rate[keep], kind="stable")
    return rate[keep][order], qual[keep][order]


def _span(values: np.ndarray) -> str:
    """'lo–hi' with four significant digits, for messages."""
    return f"{values.min():.4g}–{values.max():.4g}"


def _bd(
    kind: str,
    ref_bpp: Sequence[float],
    ref_quality: Sequence[float],
    test_bpp: Sequence[float],
    test_quality: Sequence[float],
    method: str,
) -> BDResult:
    """Shared checks and the call into ``bjontegaard`` for kind "rate" or "quality"."""
    if method not in METHODS:
        raise ValueError(f"unknown BD interpolation method {method!r}; choose one of {', '.join(METHODS)}")
    curves = {
        "reference": _clean(ref_bpp, ref_quality, "reference"),
        "test": _clean(test_bpp, test_quality, "test"),
    }
    need = MIN_POINTS[method]
    for label, (rate, qual) in curves.items():
        if len(rate) < need:
            return BDResult(
                None,
                f"too few points: the {label} curve has {len(rate)} usable points, "
                f"at least {need} are needed for {method}",
            )
        if np.any(np.diff(rate) <= 0):
            return BDResult(None, f"the {label} curve has repeated rates ({_span(rate)} bpp)")
        if kind == "rate" and np.any(np.diff(qual) <= 0):
            return BDResult(
                None,
                f"the {label} curve's quality does not increase strictly with rate; BD-rate needs a monotone curve",
            )
    (ref_rate, ref_qual), (test_rate, test_qual) = curves["reference"], curves["test"]
    axis, ref_axis, test_axis, unit = (
        ("quality", ref_qual, test_qual, "") if kind == "rate" else ("rate", ref_rate, test_rate, " bpp")
    )
    if min(ref_axis.max(), test_axis.max()) <= max(ref_axis.min(), test_axis.min()):
        return BDResult(
            None,
            f"the curves do not overlap in {axis} "
            f"(reference {_span(ref_axis)}{unit}, test {_span(test_axis)}{unit})",
        )
    function = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(
                function(
                    ref_rate,
                    ref_qual,
                    test_rate,
                    test_qual,
                    method=method,
                    require_matching_points=False,
                    min_overlap=0,
                )
            )
    except Exception as exc:  # the package raises ValueError, AssertionError or LinAlgError on odd curves
        return BDResult(None, f"bjontegaard.{function.__name__} failed: {type(exc).__name__}: {exc}")
    if not math.isfinite(value):
        return BDResult(None, f"the {method} interpolation gave a non-finite value ({value})")
    return BDResult(value)


def bd_rate(
    ref_bpp: Sequence[float],
    ref_quality: Sequence[float],
    test_bpp: Sequence[float],
    test_quality: Sequence[float],
    method: str = "akima",
) -> BDResult:
    """BD-rate of test vs reference in percent; negative means the test needs fewer bits for the same quality."""
    return _bd("rate", ref_bpp, ref_quality, test_bpp, test_quality, method)


def bd_psnr(
    ref_bpp: Sequence[float],
    ref_quality: Sequence[float],
    test_bpp: Sequence[float],
    test_quality: Sequence[float],
    method: str = "akima",
) -> BDResult:
    """BD-quality (BD-PSNR for PSNR) of test vs reference, in quality units; positive means test is better."""
    return _bd("quality", ref_bpp, ref_quality, test_bpp, test_quality, method)


def bd_rate_against(
    results: dict, reference: dict, metric: str = "psnr-rgb", method: str = "akima"
) -> BDResult:
    """BD-rate of a CompressAI-format results dict against a reference dict, on ``metric`` vs "bpp"."""
    for label, d in (("test results", results), ("reference", reference)):
        missing = [key for key in ("bpp", metric) if key not in d["results"]]
        if missing:
            return BDResult(None, f"the {label} ({d.get('name', '?')}) have no {' or '.join(missing)}")
    return bd_rate(
        reference["results"]["bpp"],
        reference["results"][metric],
        results["results"]["bpp"],
        results["results"][metric],
        method=method,
    )


def pareto_front(results: dict, metric: str = "psnr-rgb") -> dict:
    """The curve's points that no other point beats in both rate and quality (sorted by rate).

    Under-trained models give curves that bend back; BD-rate needs quality rising with rate, and
    comparing Pareto fronts (as CompressAI-Trainer's ``--optimal pareto``) is the usual remedy.
    """
    r = results["results"]
    order = sorted(range(len(r["bpp"])), key=lambda i: r["bpp"][i])
    keep, best = [], -math.inf
    for i in order:
        if r[metric][i] > best:
            keep.append(i)
            best = r[metric][i]
    return {**results, "results": {k: [v[i] for i in keep] for k, v in r.items()}}

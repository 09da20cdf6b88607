"""Target-rate (or target-quality) coding: search a control scheme's rate path on real bitstreams.

One implementation for every scheme: it moves along ``ControlScheme.rate_path`` (α for adapters,
α at fixed β, granularity ratios, prompt sets, ...), encodes the actual image at each probe and
measures the whole file, so the answer holds for *that* image, header included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ctrlic.codecs.codec import Codec
from ctrlic.codecs.control.base import KnobError
from ctrlic.errors import UserError
from ctrlic.metrics.quality import psnr

#: what a target can be: bits per pixel of the whole file, or PSNR of the decoded image (dB)
TARGET_METRICS = ("bpp", "psnr")


class RateSearchError(UserError):
    """A target the codec cannot search for (lossless codec, fixed-rate codec, bad target)."""


@dataclass
class Probe:
    """One real encode on the path: where (``t`` or index), with which knobs, and what it gave."""

    position: float
    knobs: dict[str, float]
    data: bytes
    bpp: float
    value: float  # the searched metric (bpp or PSNR)


@dataclass
class SearchResult:
    """The chosen bitstream and how it was found."""

    data: bytes
    knobs: dict[str, float]
    bpp: float
    value: float
    target: float
    metric: str
    encodes: int
    in_range: bool  # False: the target lies outside the path; the nearest end was used
    message: str

    @property
    def relative_error(self) -> float:
        return abs(self.value - self.target) / abs(self.target)


def _check(codec: Codec, metric: str, target: float, tolerance: float) -> None:
    if metric not in TARGET_METRICS:
        raise RateSearchError(f"unknown target metric {metric!r}; choose one of {', '.join(TARGET_METRICS)}")
    if codec.lossless:
        raise RateSearchError(f"{codec.name} is lossless: its rate is set by the image alone, so a "
                              f"--{metric} target has nothing to search; compress without a target")
    if not codec.knobs:
        raise RateSearchError(f"{codec.name} is a fixed-rate codec (no knobs): it cannot aim at a target "
                              f"{metric}; use a codec trained with a control scheme")
    if not (math.isfinite(target) and target > 0):
        raise RateSearchError(f"the target {metric} must be a finite number above 0, got {target:g}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise RateSearchError(f"the tolerance must be a finite number above 0, got {tolerance:g}")


def search_target(codec: Codec, x: Tensor, target: float, *, metric: str = "bpp",
                  fixed: Mapping[str, float] | None = None, tolerance: float = 0.005,
                  max_encodes: int = 20, on_probe: Callable[[Probe], None] | None = None) -> SearchResult:
    """Encode ``x`` (1, 3, H, W) in [0, 1] so that its bpp (or PSNR) meets ``target``.

    Bracketing search (bisection with secant steps) on the scheme's rate path; stops when the
    relative error is within ``tolerance`` or after ``max_encodes`` encodes, and returns the probe
    closest to the target. Outside the path's range the nearest end is returned with a message.
    """
    _check(codec, metric, target, tolerance)
    if x.dim() == 3:
        x = x[None]
    try:
        path = codec.control.rate_path(fixed)
    except KnobError as exc:
        raise RateSearchError(str(exc)) from exc
    h, w = x.shape[-2:]
    probes: list[Probe] = []

    def probe(position: float) -> Probe:
        knobs = path.points[int(position)] if path.discrete else path.at(position)
        data = codec.compress(x, knobs)
        bpp = 8 * len(data) / (h * w)
        value = bpp if metric == "bpp" else _decoded_psnr(codec, x, data)
        found = Probe(position, data.knobs, data, bpp, value)
        probes.append(found)
        if on_probe is not None:
            on_probe(found)
        return found

    def closest() -> Probe:
        return min(probes, key=lambda p: abs(p.value - target))

    def done(p: Probe) -> bool:
        return abs(p.value - target) <= tolerance * abs(target)

    lo_pos, hi_pos = (0.0, float(len(path.points) - 1)) if path.discrete else (0.0, 1.0)
    lo, hi = probe(lo_pos), probe(hi_pos)
    if lo.value > hi.value:  # the path should raise the rate; trust the measurements over the declaration
        lo, hi = hi, lo
    if target <= lo.value or target >= hi.value:
        end = lo if target <= lo.value else hi
        if done(end):
            return _result(end, target, metric, probes, True, "target met at the end of the knob range")
        side = "below the lowest" if target < lo.value else "above the highest"
        return _result(end, target, metric, probes, False,
                       f"target {metric} {target:g} is {side} this codec reaches on this image "
                       f"({lo.value:.4g}–{hi.value:.4g}); used the nearest end, {metric} {end.value:.4g}")
    log_scale = metric == "bpp"  # rate is close to exponential along λ-like paths; PSNR close to linear
    last_low, streak = None, 0  # regula falsi stalls when one end keeps moving: then bisect once
    while len(probes) < max_encodes:
        if path.discrete:
            if abs(hi.position - lo.position) <= 1:
                break
            mid = float(round((lo.position + hi.position) / 2))
        elif streak >= 2:
            mid, streak = (lo.position + hi.position) / 2, 0
        else:
            mid = _secant_or_bisect(lo, hi, target, log_scale)
        p = probe(mid)
        if done(p):
            break
        low = p.value < target
        streak = streak + 1 if low == last_low else 1
        last_low = low
        if low:
            lo = p
        else:
            hi = p
    best = closest()
    met = done(best)
    note = (f"{metric} {best.value:.4g} for target {target:g} after {len(probes)} encodes"
            + ("" if met else " (closest reachable: the rate moves in steps on this path)"))
    return _result(best, target, metric, probes, True, note)


def _secant_or_bisect(lo: Probe, hi: Probe, target: float, log_scale: bool = False) -> float:
    """Secant step inside the bracket (on log values for rates), pulled in when it would hug an end."""
    span = hi.position - lo.position
    f = math.log if log_scale else float
    if hi.value > lo.value:
        t = lo.position + span * (f(target) - f(lo.value)) / (f(hi.value) - f(lo.value))
    else:
        t = lo.position + span / 2
    margin = 0.1 * abs(span)
    low_end, high_end = min(lo.position, hi.position), max(lo.position, hi.position)
    return min(max(t, low_end + margin), high_end - margin)


def _decoded_psnr(codec: Codec, x: Tensor, data: bytes) -> float:
    with torch.no_grad():
        return psnr(x.to(torch.float32).cpu(), codec.decompress(data).cpu())


def _result(p: Probe, target: float, metric: str, probes: list[Probe], in_range: bool, message: str) -> SearchResult:
    return SearchResult(data=p.data, knobs=p.knobs, bpp=p.bpp, value=p.value, target=target, metric=metric,
                        encodes=len(probes), in_range=in_range, message=message)

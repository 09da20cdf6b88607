"""The comparison of control schemes on one backbone (``experiment=compare``): one curve per scheme, the
separately trained anchors joined into one curve, and one table of BD-rates against the anchors' curve.

A job of a comparison multirun says which curve it adds to in ``meta.compare`` of its results (set by
the experiment through ``eval.extra_meta``): ``curve`` (the anchors share one name and contribute one
point each), ``reference`` (the curve every other one is compared with) and ``builds_on`` (the job
whose model it starts from, counted in its training time); a job whose ``curve`` is null is no curve but
only a start for others (``scheme=pretrain``). The multirun summary calls
:func:`compare_jobs` and writes what it returns beside its per-job table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ctrlic.evaluation.bd_metrics import axis_values, bd_entry
from ctrlic.evaluation.bdrate import pareto_front
from ctrlic.evaluation.results import make_results

#: where a job's training time is, in its final_metrics.json (written by the train task)
TRAIN_SECONDS = "time/train_seconds"
#: the quality axes of the comparison table and plot: BD axis -> results key
AXES = {"psnr-rgb": "psnr-rgb", "ms-ssim-db": "ms-ssim-rgb"}
COLUMNS = ("curve", "jobs", "points", "bpp_min", "bpp_max", "bpp_span", "psnr_min", "psnr_max", "monotone",
           "bd_rate_psnr", "bd_rate_ms_ssim", "bd_rate_psnr_pareto", "bd_psnr_db", "stored_params",
           "extra_params", "params_per_extra_point", "train_s", "train_s_with_base", "encode_s", "decode_s",
           "builds_on", "bd_reason")
#: results keys of a joined curve's points (what every anchor's results.json holds)
POINT_KEYS = ("bpp", "bpp_est", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _mean(values: Sequence[float]) -> float | None:
    values = _finite(values)
    return sum(values) / len(values) if values else None


def monotone(results: dict, metric: str = "psnr-rgb") -> bool:
    """Quality rises strictly with the rate along the curve (points sorted by bpp)."""
    points = sorted(zip(results["results"]["bpp"], results["results"][metric], strict=True))
    return all(b[1] > a[1] and b[0] > a[0] for a, b in zip(points, points[1:], strict=False))


def join_points(name: str, jobs: Sequence[dict]) -> dict:
    """One curve from jobs that each measured one point (the separately trained anchors), sorted by rate."""
    points = []
    for job in jobs:
        r = job["results"]["results"]
        points.extend({k: r[k][i] for k in POINT_KEYS if k in r} for i in range(len(r["bpp"])))
    shared = set.intersection(*(set(p) for p in points))
    points = sorted(({k: p[k] for k in POINT_KEYS if k in shared} for p in points), key=lambda p: p["bpp"])
    meta = {**jobs[0]["results"].get("meta", {}), "jobs": [job["job"] for job in jobs]}
    return make_results(name, f"{len(jobs)} separately trained models, one point each", points, meta)


def _parameters(job: dict) -> tuple[int | None, int | None]:
    """(backbone proper, what the control scheme added) as the job's evaluation recorded them."""
    counts = job["results"].get("meta", {}).get("parameters") or {}
    return counts.get("base"), counts.get("extra")


def _storage(jobs: Sequence[dict], points: int, joined: bool) -> dict:
    """Stored parameters, the extra ones beyond one base model, and those per extra rate point.

    Separately trained models store a whole model per point; a variable-rate model stores one base model
    plus what its scheme adds, spread over the extra points of its evaluated sweep.
    """
    counts = [_parameters(job) for job in jobs]
    if any(base is None for base, _ in counts):
        return {}
    totals = [base + (extra or 0) for base, extra in counts]
    if joined:
        per_point = _mean(totals)
        return {"stored_params": sum(totals), "extra_params": sum(totals) - totals[0],
                "params_per_extra_point": round(per_point) if per_point is not None else None}
    extra = counts[0][1] or 0
    return {"stored_params": totals[0], "extra_params": extra,
            "params_per_extra_point": round(extra / (points - 1)) if points > 1 else None}


def _bd(test: dict, reference: dict | None, method: str) -> dict:
    """BD-rate on PSNR and MS-SSIM (dB) against the reference curve, BD-PSNR, and on the Pareto fronts."""
    if reference is None:
        return {"bd_reason": "no reference curve in this multirun (compare.reference)"}
    if test is reference:
        return {"bd_reason": "the reference curve"}
    psnr, ms_ssim = (bd_entry(test, reference, axis, method) if axis_values(test, axis) is not None else {}
                     for axis in AXES)
    pareto = bd_entry(pareto_front(test), pareto_front(reference), "psnr-rgb", method)
    reasons = [f"{label}: {e['reason']}" for label, e in (("PSNR", psnr), ("MS-SSIM", ms_ssim)) if e.get("reason")]
    return {"bd_rate_psnr": psnr.get("bd_rate"), "bd_rate_ms_ssim": ms_ssim.get("bd_rate"),
            "bd_psnr_db": psnr.get("bd_quality"), "bd_rate_psnr_pareto": pareto.get("bd_rate"),
            "bd_reason": "; ".join(reasons) or None}


def _seconds(jobs: Sequence[dict]) -> float | None:
    values = [job["final"].get(TRAIN_SECONDS) for job in jobs]
    return None if any(v is None for v in values) else sum(values)


def compare_jobs(jobs: Sequence[dict], method: str = "pchip") -> dict | None:
    """The comparison of a multirun whose jobs carry ``meta.compare``; None when none does.

    ``jobs``: ``{"job": folder name, "results": results dict, "final": final metrics}`` per job with an
    RD sweep. Returns ``{"rows": table rows (COLUMNS), "curves": one results dict per curve, "reference":
    the reference curve's name}``.
    """
    tagged = [job for job in jobs if isinstance(job["results"].get("meta", {}).get("compare"), Mapping)]
    if not tagged:
        return None
    groups: dict[str, list[dict]] = {}
    for job in tagged:
        curve = job["results"]["meta"]["compare"]["curve"]
        if curve is not None:  # None: a job others start from (scheme=pretrain), not a curve of its own
            groups.setdefault(curve, []).append(job)
    reference_name = tagged[0]["results"]["meta"]["compare"].get("reference")
    curves, joined = {}, {}
    for name, members in groups.items():
        joined[name] = len(members) > 1 or name == reference_name
        label = f"{name} ({len(members)} models)" if joined[name] else name
        curves[name] = join_points(label, members) if joined[name] else {**members[0]["results"], "name": label}
    by_job = {job["job"]: job for job in tagged}
    reference = curves.get(reference_name)
    rows = []
    for name, members in groups.items():
        curve, r = curves[name], curves[name]["results"]
        bpp = _finite(r["bpp"])
        base = members[0]["results"]["meta"]["compare"].get("builds_on")
        own = _seconds(members)
        base_seconds = _seconds([by_job[base]]) if base in by_job else None
        row = {"curve": curve["name"], "jobs": " ".join(job["job"] for job in members), "points": len(bpp),
               "bpp_min": min(bpp), "bpp_max": max(bpp), "bpp_span": max(bpp) / min(bpp) if min(bpp) > 0 else None,
               "psnr_min": min(r["psnr-rgb"]), "psnr_max": max(r["psnr-rgb"]), "monotone": monotone(curve),
               **_bd(curve, reference, method), **_storage(members, len(bpp), joined[name]),
               "train_s": own, "train_s_with_base": own + base_seconds if own is not None and base_seconds else own,
               "encode_s": _mean(r.get("encoding_time", [])), "decode_s": _mean(r.get("decoding_time", [])),
               "builds_on": base}
        rows.append({c: row.get(c) for c in COLUMNS})
    return {"rows": rows, "curves": list(curves.values()), "reference": reference_name}

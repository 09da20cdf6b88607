"""Rate-distortion results in CompressAI's JSON format, so our curves sit beside CompressAI's own.

Schema::

    {"name": str, "description": str,
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...], ...},
     "meta": {...}}

Every list in ``results`` holds one value per RD point (e.g. one per value of a control knob), so all
lists have the same length. ``meta`` is optional on load (CompressAI's measured files have none).
"""

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ctrlic.utils.atomic_file import atomic_write

# Keys used by older CompressAI files (and by TinyLIC) before the "-rgb" suffix was added.
LEGACY_KEYS: dict[str, str] = {"psnr": "psnr-rgb", "ms-ssim": "ms-ssim-rgb"}


def _is_number(value: Any) -> bool:
    """True for int/float values (NaN included), False for bool, None, str and containers."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def make_results(
    name: str,
    description: str,
    points: Sequence[Mapping[str, float]],
    meta: dict | None = None,
) -> dict:
    """Build a results dict from RD points (metric -> value dicts), keeping the points' order.

    Every point must have the same keys; values are converted with ``float()`` so numpy or torch scalars
    are accepted and the result is JSON-serialisable.
    """
    if not points:
        raise ValueError("points is empty: a results dict needs at least one RD point")
    keys = list(points[0])
    results: dict[str, list[float]] = {key: [] for key in keys}
    for index, point in enumerate(points):
        if set(point) != set(keys):
            missing = sorted(set(keys) - set(point))
            extra = sorted(set(point) - set(keys))
            raise ValueError(
                f"point {index} has different keys from point 0 (missing {missing}, extra {extra}); "
                "every point must report the same metrics"
            )
        for key in keys:
            try:
                results[key].append(float(point[key]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"point {index}: {key!r} is not a number ({point[key]!r})") from exc
    d = {"name": name, "description": description, "results": results, "meta": dict(meta or {})}
    validate_results(d)
    return d


def validate_results(d: Any) -> None:
    """Raise ValueError naming the first problem if ``d`` is not a valid CompressAI-format results dict."""
    if not isinstance(d, Mapping):
        raise ValueError(f"results must be a dict, got {type(d).__name__}")
    for key in ("name", "description"):
        if key not in d:
            raise ValueError(f"missing key {key!r}; expected keys 'name', 'description', 'results'")
        if not isinstance(d[key], str):
            raise ValueError(f"{key!r} must be a str, got {type(d[key]).__name__}")
    if "results" not in d:
        raise ValueError("missing key 'results'; expected keys 'name', 'description', 'results'")
    results = d["results"]
    if not isinstance(results, Mapping) or not results:
        raise ValueError("'results' must be a non-empty dict of metric -> list of values")
    lengths: dict[str, int] = {}
    for metric, values in results.items():
        if not isinstance(values, list):
            raise ValueError(f"results[{metric!r}] must be a list, got {type(values).__name__}")
        if not values:
            raise ValueError(f"results[{metric!r}] is empty; every metric needs one value per RD point")
        for index, value in enumerate(values):
            if not _is_number(value):
                raise ValueError(f"results[{metric!r}][{index}] is not a number: {value!r}")
        lengths[metric] = len(values)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"result lists have unequal lengths: {lengths}")
    if "meta" in d and not isinstance(d["meta"], Mapping):
        raise ValueError(f"'meta' must be a dict, got {type(d['meta']).__name__}")


def write_results(path: str | os.PathLike, d: dict) -> Path:
    """Validate ``d`` and write it as pretty JSON, atomically (readers never see half a file)."""
    validate_results(d)
    text = json.dumps(d, indent=2) + "\n"
    with atomic_write(path, prefix=".") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def load_results(path: str | os.PathLike) -> dict:
    """Read and validate a results JSON, renaming legacy "psnr"/"ms-ssim" keys to their "-rgb" names."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        d = json.load(f)
    if isinstance(d, dict) and isinstance(d.get("results"), dict):
        results = d["results"]
        for old, new in LEGACY_KEYS.items():
            if old in results and new not in results:
                results[new] = results.pop(old)
    try:
        validate_results(d)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return d


def _format_value(value: float) -> str:
    """Four significant digits, enough for bpp, dB and MS-SSIM in a summary table."""
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def results_to_markdown(d: dict) -> str:
    """Render a results dict as a small markdown table, one row per RD point."""
    validate_results(d)
    metrics = list(d["results"])
    rows = zip(*(d["results"][metric] for metric in metrics), strict=True)
    lines = [
        f"**{d['name']}**: {d['description']}" if d["description"] else f"**{d['name']}**",
        "",
        "| " + " | ".join(metrics) + " |",
        "|" + "---:|" * len(metrics),
    ]
    lines += ["| " + " | ".join(_format_value(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

"""The RD sweep: real bitstreams for every image and knob value, then results JSON, plot and BD-rate."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.progress import Progress

from ctrlic.codecs.codec import Codec, pad_to_multiple
from ctrlic.evaluation.bdrate import bd_rate_against
from ctrlic.evaluation.plot import plot_rd
from ctrlic.evaluation.references import find_reference_curve, load_reference_curves, reference_dir
from ctrlic.evaluation.results import make_results, write_results
from ctrlic.metrics.perceptual import LPIPS
from ctrlic.metrics.quality import bits_per_pixel, ms_ssim, psnr, to_8bit

#: data sets with published reference curves; an eval set named e.g. "kodak4" uses "kodak"
KNOWN_DATASETS = ("kodak", "clic2020-professional", "clic2020-mobile", "clic-professional-valid", "tecnick")


@dataclass
class SweepSettings:
    """What the sweep evaluates and compares against (the ``callbacks.rd_sweep`` / ``eval`` config)."""

    points: list[dict[str, float]] | None = None  # knob settings; None = the scheme's declared sweep
    max_points: int | None = None  # keep at most this many, evenly spread (smoke runs)
    metric: str = "psnr-rgb"
    bd_reference: str | None = None  # reference curve (file stem or name) for the BD-rate
    plot_references: list[str] | None = None  # curves drawn beside ours (None = all for the data set)
    reference_dataset: str | None = None  # None = guessed from the eval set's name
    save_bitstreams: bool = True
    label: str | None = None  # curve name in results.json and the plot (default: the codec's name)
    lpips: dict | None = None  # also measure LPIPS, e.g. {"net": "alex", "pretrained": True}
    extra_meta: dict = field(default_factory=dict)


def select_points(points: list[dict], max_points: int | None) -> list[dict]:
    """Evenly thin a sweep to ``max_points`` settings, always keeping both ends."""
    if not max_points or len(points) <= max_points:
        return points
    if max_points == 1:
        return points[:1]
    step = (len(points) - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]


def guess_dataset(set_name: str) -> str | None:
    name = set_name.lower()
    return next((d for d in sorted(KNOWN_DATASETS, key=len, reverse=True) if name.startswith(d)), None)


def _measure(codec: Codec, x: torch.Tensor, knobs: Mapping, path: Path, keep: bool,
             lpips: LPIPS | None) -> dict[str, float]:
    """Code one image to a file, decode the file back, and measure it."""
    h, w = x.shape[-2:]
    start = time.perf_counter()
    data = codec.compress(x, knobs)
    enc = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    start = time.perf_counter()
    x_hat = codec.decompress(path.read_bytes())
    dec = time.perf_counter() - start
    if not keep:
        path.unlink()
    with torch.no_grad():
        codec.set_knobs(knobs)
        out = codec(pad_to_multiple(x, codec.backbone.pad_multiple))
        bpp_est = bits_per_pixel(out["likelihoods"], h * w).item()
    row = {
        "bpp": 8 * len(data) / (h * w),
        "bpp_est": bpp_est,
        "psnr-rgb": psnr(x, x_hat),
        "ms-ssim-rgb": ms_ssim(x, x_hat).item(),
        "encoding_time": enc,
        "decoding_time": dec,
    }
    if lpips is not None:
        with torch.no_grad():
            row["lpips"] = lpips(to_8bit(x_hat), x).item()
    return row


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def sweep_set(
    codec: Codec,
    images: Iterable[Mapping],
    points: list[dict],
    out_dir: Path,
    set_name: str,
    keep_bitstreams: bool,
    progress: Progress,
    lpips: LPIPS | None = None,
) -> tuple[list[dict], list[dict]]:
    """Evaluate every knob setting on every image of one set; returns (mean points, per-image rows)."""
    images = list(images)
    task = progress.add_task(f"RD sweep {set_name}", total=len(points) * len(images))
    means, per_image = [], []
    for i, knobs in enumerate(points):
        rows = []
        for item in images:
            x = item["x"].to(next(codec.parameters()).device)
            name = item["name"][0] if isinstance(item["name"], list | tuple) else item["name"]
            path = out_dir / "bitstreams" / set_name / f"point{i:02d}" / f"{Path(name).stem}.ctl"
            row = _measure(codec, x, knobs, path, keep_bitstreams, lpips)
            rows.append(row)
            per_image.append({"image": name, "point": i, **knobs, **row})
            progress.advance(task)
        means.append({**_mean(rows), **knobs})
    return means, per_image


def run_sweep(
    codec: Codec,
    eval_sets: Mapping[str, Iterable[Mapping]],
    out_dir: str | Path,
    settings: SweepSettings,
) -> dict[str, dict]:
    """Sweep every eval set; write ``results.json`` + ``rd.png`` (first set) or ``results_<set>.json``.

    Returns {set name: results dict}, each with a ``meta.bd_rate`` entry (value or the reason why not).
    """
    out_dir = Path(out_dir)
    label = settings.label or codec.name
    lpips = LPIPS(**settings.lpips) if settings.lpips else None
    codec.prepare()
    points = select_points(settings.points or codec.control.sweep_points() or [{}], settings.max_points)
    outputs = {}
    with Progress(transient=True) as progress:
        for n, (set_name, images) in enumerate(eval_sets.items()):
            means, per_image = sweep_set(
                codec, images, points, out_dir, set_name, settings.save_bitstreams, progress, lpips
            )
            dataset = settings.reference_dataset or guess_dataset(set_name)
            meta = {
                "dataset": set_name,
                "reference_dataset": dataset,
                "codec": codec.name,
                "weights_fingerprint": codec.fingerprint.hex(),
                "knobs": [k.name for k in codec.knobs],
                "points": points,
                "num_images": len(per_image) // max(1, len(points)),
                **settings.extra_meta,
            }
            results = make_results(label, "ctrlic, real bitstreams (rANS)", means, meta)
            suffix = "" if n == 0 else f"_{set_name}"
            references = _references(dataset, settings)
            results["meta"]["bd_rate"] = _bd_rate(results, dataset, settings)
            write_results(out_dir / f"results{suffix}.json", results)
            _write_csv(out_dir / f"per_image{suffix}.csv", per_image)
            plot_rd(
                [results],
                out_dir / f"rd{suffix}.png",
                metric=settings.metric,
                references=references,
                title=f"{label} on {set_name}",
            )
            outputs[set_name] = results
    return outputs


def _references(dataset: str | None, settings: SweepSettings) -> list[dict]:
    """The reference curves to draw: the configured names that exist for this data set."""
    if dataset is None or reference_dir(dataset) is None:
        return []
    curves = load_reference_curves(dataset, metric=settings.metric)
    if settings.plot_references is None:
        return curves
    wanted = {n.lower() for n in settings.plot_references}
    return [c for c in curves if c["file"].lower() in wanted or c["name"].lower() in wanted]


def _bd_rate(results: dict, dataset: str | None, settings: SweepSettings) -> dict:
    """BD-rate against the configured reference, or the reason it cannot be computed."""
    entry = {"reference": settings.bd_reference, "metric": settings.metric, "value": None}
    if not settings.bd_reference:
        return {**entry, "reason": "no reference curve configured (bd_reference)"}
    if dataset is None:
        return {**entry, "reason": "no reference curves for this evaluation set"}
    try:
        reference = find_reference_curve(dataset, settings.bd_reference)
    except ValueError as err:
        return {**entry, "reason": str(err)}
    result = bd_rate_against(results, reference, metric=settings.metric)
    value = None if result.value is None or not math.isfinite(result.value) else result.value
    return {**entry, "value": value, "reason": result.reason}


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

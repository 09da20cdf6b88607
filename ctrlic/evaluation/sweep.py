"""The RD sweep: real bitstreams for every image and knob value, then results JSON, plot and BD-rate.

Two-knob schemes (β-CALICE) sweep a grid; ``family`` names the knob whose values make separate curves
(one per β), plotted together in one panel per metric. Perceptual metrics (LPIPS, DISTS) are measured
per image; FID/KID on 256×256 patches only for sets with enough patches.
"""

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
from ctrlic.codecs.control.base import KnobError
from ctrlic.evaluation.bd_metrics import bd_meta
from ctrlic.evaluation.bdrate import bd_rate_against
from ctrlic.evaluation.plot import plot_rd, plot_rd_panels, split_family
from ctrlic.evaluation.references import find_reference_curve, load_reference_curves, reference_dir
from ctrlic.evaluation.results import make_results, write_results
from ctrlic.metrics.distribution import PatchFID, PatchKID, count_patches, inception
from ctrlic.metrics.perceptual import DISTS, LPIPS
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
    bd_references: dict | None = None  # per quality axis another reference for meta.bd, e.g. {lpips: NAME}
    plot_references: list[str] | None = None  # curves drawn beside ours (None = all for the data set)
    reference_dataset: str | None = None  # None = guessed from the eval set's name
    save_bitstreams: bool = True
    label: str | None = None  # curve name in results.json and the plot (default: the codec's name)
    lpips: dict | None = None  # also measure LPIPS, e.g. {"net": "alex", "pretrained": True}
    lpips_vgg: dict | None = None  # LPIPS with the VGG backbone ("lpips-vgg"), e.g. {"pretrained": True}
    dists: dict | None = None  # also measure DISTS, e.g. {"pretrained": True}
    fid: dict | None = None  # FID/KID on patches: pretrained, weights, patch_size, min_patches, kid_* (FidSettings)
    family: str | None = None  # knob whose values make separate curves (one per β); points thinned per curve
    plot_metrics: list[str] | None = None  # panels of the family plot (None: metric + measured perceptual ones)
    metrics_device: str | None = None  # where LPIPS/DISTS/Inception run (None: CUDA if available; coding: CPU)
    report: dict | None = None  # report.html: images, thumb_size, ... (evaluation.report_assets.ReportSettings)
    extra_meta: dict = field(default_factory=dict)


@dataclass
class FidSettings:
    """FID/KID on patches (HiFiC's FID/256): skipped for sets with fewer than ``min_patches`` patches."""

    pretrained: bool = True
    weights: str | None = None  # torch-fidelity's Inception file (default: torch hub's cache)
    patch_size: int = 256
    min_patches: int = 2048  # at least the feature dimension, so the covariances have full rank
    kid_subsets: int = 100
    kid_subset_size: int = 1000  # capped at the number of patches


#: per-image perceptual metrics: settings field -> (result key, network)
PERCEPTUAL = {"lpips": ("lpips", LPIPS), "lpips_vgg": ("lpips-vgg", LPIPS), "dists": ("dists", DISTS)}


def metrics_device(settings: SweepSettings) -> torch.device:
    """Where the metric networks run: ``metrics_device``, else CUDA when available, else the CPU."""
    return torch.device(settings.metrics_device or ("cuda" if torch.cuda.is_available() else "cpu"))


def perceptual_networks(settings: SweepSettings) -> dict[str, torch.nn.Module]:
    """The configured per-image metrics, by result key, on the metrics device."""
    nets = {}
    for attr, (key, cls) in PERCEPTUAL.items():
        options = getattr(settings, attr)
        if options:
            nets[key] = cls(**({"net": "vgg"} if attr == "lpips_vgg" else {}), **options).to(metrics_device(settings))
    return nets


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


def family_points(points: list[dict], knob: str, max_points: int | None) -> list[dict]:
    """Group a grid by the value of ``knob`` (one curve each), thinning each curve to ``max_points``."""
    curves: dict[float, list[dict]] = {}
    for point in points:
        curves.setdefault(point[knob], []).append(point)
    return [p for curve in curves.values() for p in select_points(curve, max_points)]


def code_through_file(codec: Codec, x: torch.Tensor, knobs: Mapping, path: Path,
                      keep: bool) -> tuple[bytes, torch.Tensor, float, float]:
    """Compress to a file and decode that file back: (bitstream, decoded image, encode s, decode s)."""
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
    return data, x_hat, enc, dec


def _measure(codec: Codec, x: torch.Tensor, knobs: Mapping, path: Path, keep: bool,
             perceptual: Mapping[str, torch.nn.Module]) -> tuple[dict[str, float], torch.Tensor]:
    """Code one image to a file, decode the file back, and measure it; returns (row, decoded image)."""
    h, w = x.shape[-2:]
    data, x_hat, enc, dec = code_through_file(codec, x, knobs, path, keep)
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
    with torch.no_grad():
        for key, net in perceptual.items():
            device = next(net.parameters()).device
            row[key] = net(to_8bit(x_hat).to(device), x.to(device)).item()
    return row, x_hat


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
    perceptual: Mapping[str, torch.nn.Module] | None = None,
    fid: FidSettings | None = None,
    device: torch.device | None = None,
) -> tuple[list[dict], list[dict], dict]:
    """Evaluate every knob setting on every image of one set (FID/KID's Inception on ``device``).

    Returns (mean points, per-image rows, FID/KID note for ``meta``: patch count, or why skipped).
    """
    images = list(images)
    distribution, note = _distribution_metrics(images, fid, device)
    task = progress.add_task(f"RD sweep {set_name}", total=len(points) * len(images))
    means, per_image = [], []
    for i, knobs in enumerate(points):
        rows = []
        for item in images:
            x = item["x"].to(next(codec.parameters()).device)
            name = item["name"][0] if isinstance(item["name"], list | tuple) else item["name"]
            path = out_dir / "bitstreams" / set_name / f"point{i:02d}" / f"{Path(name).stem}.ctl"
            row, x_hat = _measure(codec, x, knobs, path, keep_bitstreams, perceptual or {})
            for metric in distribution:
                metric.update(to_8bit(x_hat), x if i == 0 else None)  # originals once, kept across points
            rows.append(row)
            per_image.append({"image": name, "point": i, **knobs, **row})
            progress.advance(task)
        means.append({**_mean(rows), **_compute_distribution(distribution), **knobs})
    return means, per_image, note


def _distribution_metrics(images: list[Mapping], fid: FidSettings | None,
                          device: torch.device | None) -> tuple[list, dict]:
    """FID and KID metrics for a set with enough patches, else none and the reason."""
    if fid is None:
        return [], {}
    patches = sum(count_patches(*item["x"].shape[-2:], fid.patch_size) * item["x"].shape[0] for item in images)
    note = {"patches": patches, "min_patches": fid.min_patches, "patch_size": fid.patch_size}
    if patches < fid.min_patches:
        return [], {**note, "reason": f"{patches} patches of {fid.patch_size}x{fid.patch_size} < min_patches="
                                      f"{fid.min_patches}: too few for FID/KID"}
    net = inception(fid.pretrained, fid.weights)
    common = {"feature": net, "patch_size": fid.patch_size, "reset_real_features": False}
    metrics = [PatchFID(**common), PatchKID(subsets=fid.kid_subsets, subset_size=min(fid.kid_subset_size, patches),
                                            **common)]
    return [m.to(device or "cpu") for m in metrics], note


def _compute_distribution(metrics: list) -> dict[str, float]:
    """FID and KID (mean, std) of one RD point; resets the decoded side for the next point."""
    values = {}
    for metric in metrics:
        with torch.no_grad():
            result = metric.compute()
        if isinstance(metric, PatchKID):
            values["kid"], values["kid_std"] = float(result[0]), float(result[1])
        else:
            values["fid"] = float(result)
        metric.reset()
    return values


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
    perceptual = perceptual_networks(settings)
    fid = FidSettings(**settings.fid) if settings.fid else None
    codec.prepare()
    points = settings.points or codec.control.sweep_points() or [{}]
    if settings.family:
        names = [k.name for k in codec.knobs]
        if settings.family not in names:
            raise KnobError(f"rd_sweep.family={settings.family!r} is not a knob of this codec; its knobs: "
                            f"{', '.join(names) or 'none'}")
        points = family_points([codec.control.resolve(p) for p in points], settings.family, settings.max_points)
    else:
        points = select_points(points, settings.max_points)
    outputs = {}
    with Progress(transient=True) as progress:
        for n, (set_name, images) in enumerate(eval_sets.items()):
            means, per_image, fid_note = sweep_set(
                codec, images, points, out_dir, set_name, settings.save_bitstreams, progress, perceptual, fid,
                metrics_device(settings),
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
                **({"family": settings.family, "grid": _grid(points)} if settings.family else {}),
                **({"fid": fid_note} if fid_note else {}),
                **settings.extra_meta,
            }
            results = make_results(label, "ctrlic, real bitstreams (rANS)", means, meta)
            suffix = "" if n == 0 else f"_{set_name}"
            results["meta"]["bd_rate"] = _bd_rate(results, dataset, settings)
            results["meta"].update(bd_meta(results, dataset, settings.bd_reference, settings.family,
                                           axis_references=settings.bd_references))
            write_results(out_dir / f"results{suffix}.json", results)
            write_csv(out_dir / f"per_image{suffix}.csv", per_image)
            _plot(results, out_dir / f"rd{suffix}.png", dataset, settings, f"{label} on {set_name}")
            outputs[set_name] = results
    return outputs


def _grid(points: list[dict]) -> dict[str, list[float]]:
    """The values each knob takes over the sweep, in order of first appearance."""
    return {k: list(dict.fromkeys(p[k] for p in points)) for k in points[0]}


def _plot(results: dict, path: Path, dataset: str | None, settings: SweepSettings, title: str) -> None:
    """One RD curve, or with ``family`` one curve per family value in a panel per metric."""
    if not settings.family:
        plot_rd([results], path, metric=settings.metric, references=_references(dataset, settings), title=title)
        return
    metrics = settings.plot_metrics or [settings.metric, *(k for k in ("lpips", "lpips-vgg", "dists", "fid")
                                                           if k in results["results"])]
    references = {c["file"]: c for m in dict.fromkeys(metrics) for c in _references(dataset, settings, m)}
    plot_rd_panels(split_family(results, settings.family), path, metrics, list(references.values()), title)


def _references(dataset: str | None, settings: SweepSettings, metric: str | None = None) -> list[dict]:
    """The reference curves to draw: the configured names that exist for this data set."""
    if dataset is None or reference_dir(dataset) is None:
        return []
    curves = load_reference_curves(dataset, metric=metric or settings.metric)
    if settings.plot_references is None:
        return curves
    wanted = {n.lower() for n in settings.plot_references}
    return [c for c in curves if c["file"].lower() in wanted or c["name"].lower() in wanted]


def _bd_rate(results: dict, dataset: str | None, settings: SweepSettings) -> dict:
    """BD-rate against the configured reference, or the reason it cannot be computed.

    With ``family``, of the family's first curve (β = 0: the variable-rate model).
    """
    entry = {"reference": settings.bd_reference, "metric": settings.metric, "value": None}
    if settings.family:
        results = split_family(results, settings.family)[0]
        entry["curve"] = results["name"]
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


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as CSV, columns in first-seen order (rows may differ in their keys)."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

"""The lossy RD sweep of one set: real bitstreams for every image and knob value, metrics, BD-rate, plot.

Two-knob schemes (β-CALICE) sweep a grid; ``family`` names the knob whose values make separate curves
(one per β), plotted together in one panel per metric. Perceptual metrics (LPIPS, DISTS) are measured
per image; FID/KID on 256×256 patches only for sets with enough patches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from ctrlic.codecs.codec import Codec
from ctrlic.evaluation.bd_metrics import bd_meta
from ctrlic.evaluation.bdrate import bd_rate_against
from ctrlic.evaluation.files import bitstream_file, code_through_file, unpack_item
from ctrlic.evaluation.plot import plot_rd, plot_rd_panels, split_family
from ctrlic.evaluation.references import find_reference_curve, load_reference_curves, reference_dir
from ctrlic.evaluation.results import make_results
from ctrlic.evaluation.settings import FidSettings, SweepSettings
from ctrlic.metrics.distribution import PatchFID, PatchKID, count_patches, inception
from ctrlic.metrics.perceptual import DISTS, LPIPS
from ctrlic.metrics.quality import bits_per_pixel, ms_ssim, psnr, to_8bit

#: data sets with published reference curves; an eval set named e.g. "kodak4" uses "kodak"
KNOWN_DATASETS = ("kodak", "clic2020-professional", "clic2020-mobile", "clic-professional-valid", "tecnick")

#: what this evaluation is called in log lines
SWEEP = "RD sweep"


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


def guess_dataset(set_name: str) -> str | None:
    name = set_name.lower()
    return next((d for d in sorted(KNOWN_DATASETS, key=len, reverse=True) if name.startswith(d)), None)


def _measure(codec: Codec, x: torch.Tensor, knobs: Mapping, path: Path, keep: bool,
             perceptual: Mapping[str, torch.nn.Module]) -> tuple[dict[str, float], torch.Tensor]:
    """Code one image to a file, decode the file back, and measure it; returns (row, decoded image)."""
    h, w = x.shape[-2:]
    data, x_hat, enc, dec = code_through_file(codec, x, knobs, path, keep)
    with torch.no_grad():
        codec.set_knobs(knobs)
        out = codec(codec.pad(x))
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


def _sweep_set(codec: Codec, images: Sequence[Mapping], points: list[dict], out_dir: Path, set_name: str,
               keep_bitstreams: bool, advance: Callable[[], None], perceptual: Mapping[str, torch.nn.Module],
               fid: FidSettings | None, device: torch.device) -> tuple[list[dict], list[dict], dict]:
    """Every knob setting on every image of one set (images are re-read per setting, not held in memory).

    Returns (mean points, per-image rows, FID/KID note for ``meta``: patch count, or why skipped).
    """
    distribution, note = _distribution_metrics(images, fid, device)
    means, per_image = [], []
    for i, knobs in enumerate(points):
        rows = []
        for item in images:
            x, name = unpack_item(item)
            row, x_hat = _measure(codec, x, knobs, bitstream_file(out_dir, set_name, i, name), keep_bitstreams,
                                  perceptual)
            for metric in distribution:
                metric.update(to_8bit(x_hat), x if i == 0 else None)  # originals once, kept across points
            rows.append(row)
            per_image.append({"image": name, "point": i, **knobs, **row})
            advance()
        means.append({**_mean(rows), **_compute_distribution(distribution), **knobs})
    return means, per_image, note


def _distribution_metrics(images: Sequence[Mapping], fid: FidSettings | None,
                          device: torch.device) -> tuple[list, dict]:
    """FID and KID metrics for a set with enough patches, else none and the reason."""
    if fid is None:
        return [], {}
    patches = sum(count_patches(*unpack_item(item)[0].shape[-2:], fid.patch_size) for item in images)
    note = {"patches": patches, "min_patches": fid.min_patches, "patch_size": fid.patch_size}
    if patches < fid.min_patches:
        return [], {**note, "reason": f"{patches} patches of {fid.patch_size}x{fid.patch_size} < min_patches="
                                      f"{fid.min_patches}: too few for FID/KID"}
    net = inception(fid.pretrained, fid.weights)
    common = {"feature": net, "patch_size": fid.patch_size, "reset_real_features": False}
    metrics = [PatchFID(**common), PatchKID(subsets=fid.kid_subsets, subset_size=min(fid.kid_subset_size, patches),
                                            **common)]
    return [m.to(device) for m in metrics], note


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


def stored_parameters(codec: Codec) -> dict[str, int]:
    """Parameters a stored model holds: the backbone proper (``base``) and what its control scheme added
    (``extra``: adapters, prompts, gains), for the comparison of control schemes."""
    attached = {id(p) for p in codec.control.attached_parameters()}
    counts = {"base": 0, "extra": 0}
    for p in codec.backbone.parameters():
        counts["extra" if id(p) in attached else "base"] += p.numel()
    return counts


def evaluate_set(codec: Codec, images: Sequence[Mapping], points: list[dict], out_dir: Path, set_name: str,
                 settings: SweepSettings, advance: Callable[[], None]) -> tuple[dict, list[dict]]:
    """One set at every knob setting: (results in CompressAI's format with ``meta``, per-image rows)."""
    fid = FidSettings(**settings.fid) if settings.fid else None
    means, per_image, fid_note = _sweep_set(codec, images, points, out_dir, set_name, settings.save_bitstreams,
                                            advance, perceptual_networks(settings), fid, metrics_device(settings))
    dataset = settings.reference_dataset or guess_dataset(set_name)
    meta = {
        "dataset": set_name,
        "reference_dataset": dataset,
        "codec": codec.name,
        "weights_fingerprint": codec.fingerprint.hex(),
        "padding": codec.options.padding.spec,  # codecs/padding.py: [centre-]{replicate|zero}:multiple
        "entropy_tables": codec.entropy_tables,  # "checkpoint <digest>" or "rebuilt"
        "knobs": [k.name for k in codec.knobs],
        "points": points,
        "num_images": len(per_image) // max(1, len(points)),
        "parameters": stored_parameters(codec),
        **({"family": settings.family, "grid": _grid(points)} if settings.family else {}),
        **({"fid": fid_note} if fid_note else {}),
        **settings.extra_meta,
    }
    results = make_results(settings.label or codec.name, "ctrlic, real bitstreams (rANS)", means, meta)
    results["meta"]["bd_rate"] = _bd_rate(results, dataset, settings)
    results["meta"].update(bd_meta(results, dataset, settings.bd_reference, settings.family,
                                   axis_references=settings.bd_references))
    return results, per_image


def plot(results: dict, path: Path, settings: SweepSettings) -> Path:
    """One RD curve, or with ``family`` one curve per family value in a panel per metric."""
    dataset = results["meta"].get("reference_dataset")
    title = f"{results['name']} on {results['meta']['dataset']}"
    if not settings.family:
        return plot_rd([results], path, metric=settings.metric, references=_references(dataset, settings),
                       title=title)
    metrics = settings.plot_metrics or [settings.metric, *(k for k in ("lpips", "lpips-vgg", "dists", "fid")
                                                           if k in results["results"])]
    references = {c["file"]: c for m in dict.fromkeys(metrics) for c in _references(dataset, settings, m)}
    return plot_rd_panels(split_family(results, settings.family), path, metrics, list(references.values()), title)


def describe(results: dict) -> str:
    """One log line: the number of points and the BD-rate (or why there is none)."""
    bd = results["meta"]["bd_rate"]
    bd_text = f"{bd['value']:+.2f} %" if bd["value"] is not None else f"n/a ({bd['reason']})"
    return f"{len(results['results']['bpp'])} points, BD-rate vs {bd['reference']}: {bd_text}"


def _grid(points: list[dict]) -> dict[str, list[float]]:
    """The values each knob takes over the sweep, in order of first appearance."""
    return {k: list(dict.fromkeys(p[k] for p in points)) for k in points[0]}


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

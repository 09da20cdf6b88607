"""The lossy RD sweep: real bitstreams for every image and knob value, metrics, BD-rate, plot.

``code_unit`` codes one image at every knob setting into records (``evaluation.records``); ``merge_set``
builds a set's results from the records alone. Two-knob schemes (β-CALICE) sweep a grid; ``family`` names
the knob whose values make separate curves (one per β), plotted together in one panel per metric.
Perceptual metrics (LPIPS, DISTS) are measured per image; FID/KID on 256×256 patches from the Inception
features saved per image, at merge time, only for sets with enough patches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import torch

from ctrlic.codecs.codec import Codec
from ctrlic.evaluation.bd_metrics import bd_meta
from ctrlic.evaluation.bdrate import bd_rate_against
from ctrlic.evaluation.files import bitstream_file, code_through_file, unpack_item
from ctrlic.evaluation.plot import plot_rd, plot_rd_panels, split_family
from ctrlic.evaluation.records import SetJob, image_digest
from ctrlic.evaluation.references import find_reference_curve, load_reference_curves, reference_dir
from ctrlic.evaluation.results import make_results
from ctrlic.evaluation.settings import FidSettings, SweepSettings
from ctrlic.metrics.distribution import fid_kid, inception, patch_features
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


def perceptual_networks(settings: SweepSettings, device: torch.device | None = None) -> dict[str, torch.nn.Module]:
    """The configured per-image metrics, by result key, on ``device`` (default: the metrics device)."""
    device = device or metrics_device(settings)
    nets = {}
    for attr, (key, cls) in PERCEPTUAL.items():
        options = getattr(settings, attr)
        if options:
            nets[key] = cls(**({"net": "vgg"} if attr == "lpips_vgg" else {}), **options).to(device)
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


KIND = "lossy"


def measured(settings: SweepSettings) -> dict:
    """The settings the records of an RD sweep depend on (besides codec, knobs and image)."""
    fid = FidSettings(**settings.fid) if settings.fid else None
    return {"lpips": settings.lpips, "lpips_vgg": settings.lpips_vgg, "dists": settings.dists,
            "fid": None if fid is None else {"pretrained": fid.pretrained, "weights": fid.weights,
                                             "patch_size": fid.patch_size}}


class Tools:
    """The metric networks of one coding process, on its metrics device."""

    def __init__(self, settings: SweepSettings, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else metrics_device(settings)
        self.perceptual = perceptual_networks(settings, self.device)
        self.fid = FidSettings(**settings.fid) if settings.fid else None
        self.inception = inception(self.fid.pretrained, self.fid.weights).to(self.device) if self.fid else None


def code_unit(codec: Codec, job: SetJob, index: int, item: Mapping, tools: Tools) -> int:
    """Every knob setting of one image whose record is missing or stale; returns how many were coded."""
    x, name = unpack_item(item)
    store, digest = job.store, image_digest(x)
    image = {"image": name, "index": index, "digest": digest, "shape": list(x.shape[-2:])}
    if store.read(store.image_path(job.set_name, index)) != image:
        store.write(store.image_path(job.set_name, index), image)
    if tools.inception is not None and store.read_tensor(store.features_path(job.set_name, index, None)) is None:
        store.write_tensor(store.features_path(job.set_name, index, None),
                           patch_features(tools.inception, x, tools.fid.patch_size))
    coded = 0
    for i, knobs in enumerate(job.points):
        path = store.point_path(job.set_name, index, i)
        record = store.read(path)
        features = store.features_path(job.set_name, index, i)
        if (record and record["key"] == job.keys[i] and record["digest"] == digest
                and (tools.inception is None or features.is_file())):
            continue
        row, x_hat = _measure(codec, x, knobs, bitstream_file(job.out_dir, job.set_name, i, name),
                              job.keep_bitstreams, tools.perceptual)
        if tools.inception is not None:
            store.write_tensor(features, patch_features(tools.inception, to_8bit(x_hat), tools.fid.patch_size))
        store.write(path, {"key": job.keys[i], "digest": digest, "image": name, "index": index, "point": i,
                           "knobs": dict(knobs), "row": row})
        coded += 1
    return coded


def _distribution(job: SetJob, n_images: int, fid: FidSettings | None) -> tuple[list[dict], dict]:
    """FID and KID per knob setting from the saved patch features, or none and the reason (meta note)."""
    if fid is None:
        return [{} for _ in job.points], {}
    store = job.store
    real = [store.read_tensor(store.features_path(job.set_name, i, None)) for i in range(n_images)]
    patches = sum(len(f) for f in real)
    note = {"patches": patches, "min_patches": fid.min_patches, "patch_size": fid.patch_size}
    if patches < fid.min_patches:
        return [{} for _ in job.points], {**note, "reason": f"{patches} patches of {fid.patch_size}x{fid.patch_size} "
                                                            f"< min_patches={fid.min_patches}: too few for FID/KID"}
    values = []
    for p in range(len(job.points)):
        fake = [store.read_tensor(store.features_path(job.set_name, i, p)) for i in range(n_images)]
        values.append(fid_kid(real, fake, fid.kid_subsets, min(fid.kid_subset_size, patches)))
    return values, note


def stored_parameters(codec: Codec) -> dict[str, int]:
    """Parameters a stored model holds: the backbone proper (``base``) and what its control scheme added
    (``extra``: adapters, prompts, gains), for the comparison of control schemes."""
    attached = {id(p) for p in codec.control.attached_parameters()}
    counts = {"base": 0, "extra": 0}
    for p in codec.backbone.parameters():
        counts["extra" if id(p) in attached else "base"] += p.numel()
    return counts


def merge_set(codec: Codec, job: SetJob, n_images: int,
              settings: SweepSettings) -> tuple[dict, list[dict]]:
    """One set's results (CompressAI's format with ``meta``) and per-image rows, from its records alone."""
    fid = FidSettings(**settings.fid) if settings.fid else None
    distribution, fid_note = _distribution(job, n_images, fid)
    means, per_image = [], []
    for i, knobs in enumerate(job.points):
        records = [job.store.read(job.store.point_path(job.set_name, index, i)) for index in range(n_images)]
        rows = [r["row"] for r in records]
        per_image += [{"image": r["image"], "point": i, **knobs, **r["row"]} for r in records]
        means.append({**_mean(rows), **distribution[i], **knobs})
    points = job.points
    dataset = settings.reference_dataset or guess_dataset(job.set_name)
    meta = {
        "dataset": job.set_name,
        "reference_dataset": dataset,
        "codec": codec.name,
        "weights_fingerprint": codec.fingerprint.hex(),
        "padding": codec.options.padding.spec,  # codecs/padding.py: [centre-]{replicate|zero}:multiple
        "entropy_tables": codec.entropy_tables,  # "checkpoint <digest>" or "rebuilt"
        "scale_levels": codec.options.scale_levels,  # Gaussian scale-table size (64: CompressAI's)
        "knobs": [k.name for k in codec.knobs],
        "points": points,
        "num_images": n_images,
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

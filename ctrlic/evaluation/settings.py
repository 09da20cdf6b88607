"""What an evaluation measures: the ``eval`` config node as a dataclass, and the knob settings it sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field

from ctrlic.codecs.codec import Codec
from ctrlic.codecs.control.base import KnobError


@dataclass
class SweepSettings:
    """The ``eval`` config node: which knob settings, which metrics, which reference curves."""

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
    padding: str | None = None  # e.g. "centre-zero:128" (the authors' scripts); None: the codec's (ours: replicate)
    entropy_tables: str | None = None  # "checkpoint" or "rebuild" (codecs/entropy/tables.py); None: the codec's
    scale_levels: int | None = None  # Gaussian scale-table size (codecs/entropy/scale_table.py); None: the codec's
    workers: int | None = 1  # coding processes on this machine (None: one per GPU when GPUs are present, else 1)
    shard: str | None = None  # "i/n": this job codes every n-th image from the i-th (a multirun over i = 0..n-1)
    records: str | None = None  # per-image records (None: <output>/records; sharded multiruns share the sweep's)
    threads: int | None = None  # torch threads per coding process (None: torch's, split between workers)
    merge: str = "auto"  # auto: results once every record exists; only: merge the records, code nothing; never
    extra_meta: dict = field(default_factory=dict)

    def coding_options(self) -> dict[str, str]:
        """The codec options this evaluation sets (``Codec.set_options``)."""
        return {k: v for k, v in (("padding", self.padding), ("tables", self.entropy_tables),
                                  ("scale_levels", self.scale_levels)) if v is not None}


@dataclass
class FidSettings:
    """FID/KID on patches (HiFiC's FID/256): skipped for sets with fewer than ``min_patches`` patches."""

    pretrained: bool = True
    weights: str | None = None  # torch-fidelity's Inception file (default: torch hub's cache)
    patch_size: int = 256
    min_patches: int = 2048  # at least the feature dimension, so the covariances have full rank
    kid_subsets: int = 100
    kid_subset_size: int = 1000  # capped at the number of patches


def select_points(points: list[dict], max_points: int | None) -> list[dict]:
    """Evenly thin a sweep to ``max_points`` settings, always keeping both ends."""
    if not max_points or len(points) <= max_points:
        return points
    if max_points == 1:
        return points[:1]
    step = (len(points) - 1) / (max_points - 1)
    return [points[round(i * step)] for i in range(max_points)]


def family_points(points: list[dict], knob: str, max_points: int | None) -> list[dict]:
    """Group a grid by the value of ``knob`` (one curve each), thinning each curve to ``max_points``."""
    curves: dict[float, list[dict]] = {}
    for point in points:
        curves.setdefault(point[knob], []).append(point)
    return [p for curve in curves.values() for p in select_points(curve, max_points)]


def sweep_points(codec: Codec, settings: SweepSettings) -> list[dict]:
    """The knob settings to evaluate: configured or declared, thinned (per β curve with ``family``)."""
    points = settings.points or codec.control.sweep_points() or [{}]
    if not settings.family:
        return select_points(points, settings.max_points)
    names = [k.name for k in codec.knobs]
    if settings.family not in names:
        raise KnobError(f"eval.family={settings.family!r} is not a knob of this codec; its knobs: "
                        f"{', '.join(names) or 'none'}")
    return family_points([codec.control.resolve(p) for p in points], settings.family, settings.max_points)

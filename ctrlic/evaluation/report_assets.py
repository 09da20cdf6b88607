"""What the run report shows per chosen image, saved after the sweep: decoded thumbnails per knob value
(full size on click), bit-allocation heatmaps from the coder's own probabilities, and their totals.

Everything lands in ``<run dir>/report_assets/`` with a ``manifest.json``, so ``task=report`` rebuilds
the page without the model. Sizes: WebP thumbnails (``thumb_size`` px, quality ``thumb_quality``) and
lossless WebP full-size images for ``images`` images per set keep a Kodak sweep of 10 knob values at
3 images near 15 MB (docs/report.md).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from ctrlic.codecs.bit_allocation import BitAllocation, BitMapUnavailable, bit_allocation
from ctrlic.codecs.codec import Codec
from ctrlic.datamodules.image_io import to_uint8
from ctrlic.errors import UserError
from ctrlic.evaluation.files import unpack_item
from ctrlic.evaluation.results import load_results

log = logging.getLogger("ctrlic")

ASSETS, MANIFEST = "report_assets", "manifest.json"
FULL_SIZE = ("lossless", "lossy", "none")
#: colour map of the bit-allocation heatmaps (perceptually uniform, dark = few bits)
COLORMAP = "inferno"
#: heatmap colour scale: this percentile of the image's bits per pixel over all knob values
SCALE_PERCENTILE = 99.5
#: Control-GIC grains drawn over the map: (R, G, B, alpha) of coarse and medium cells; fine stays clear
GRAIN_COLOURS = ((64, 200, 255, 120), (255, 80, 200, 90))


class ReportSettingsError(UserError):
    """A ``report`` setting that cannot work."""


@dataclass
class ReportSettings:
    """``eval.report``: which images get a knob slider and how their pictures are stored."""

    enabled: bool = True
    images: int = 3  # the first N images of each evaluation set (in the set's order)
    names: list[str] | None = None  # or these images, by file name or stem
    thumb_size: int = 512  # longest side of the slider images, px
    thumb_quality: int = 80  # WebP quality of the slider images
    full_size: str = "lossless"  # full-size images on click: lossless / lossy (WebP q95) / none
    bit_maps: bool = True  # re-code the chosen images under a bit-map recorder

    def __post_init__(self) -> None:
        if self.full_size not in FULL_SIZE:
            raise ReportSettingsError(f"report.full_size={self.full_size!r}; choose one of {', '.join(FULL_SIZE)}")
        if self.images < 0 or self.thumb_size < 16 or not 1 <= self.thumb_quality <= 100:
            raise ReportSettingsError("report.images must be >= 0, report.thumb_size >= 16 and "
                                      "report.thumb_quality in [1, 100]")


def report_settings(value: ReportSettings | Mapping | None) -> ReportSettings:
    if isinstance(value, ReportSettings):
        return value
    return ReportSettings(**dict(value or {}))


def _save_picture(img: np.ndarray, folder: Path, stem: str, settings: ReportSettings) -> dict[str, str | None]:
    """Thumbnail (and full-size copy) of an RGB image; paths relative to the run directory."""
    pil = Image.fromarray(img)
    thumb = pil.copy()
    thumb.thumbnail((settings.thumb_size, settings.thumb_size), Image.Resampling.LANCZOS)
    thumb.save(folder / f"{stem}.webp", quality=settings.thumb_quality, method=4)
    full = None
    if settings.full_size != "none":
        options = {"lossless": True, "quality": 80} if settings.full_size == "lossless" else {"quality": 95}
        pil.save(folder / f"{stem}_full.webp", method=4, **options)
        full = f"{stem}_full.webp"
    root = folder.relative_to(folder.parents[2])
    return {"thumb": str(root / f"{stem}.webp"), "full": str(root / full) if full else None}


def display_map(bits: np.ndarray, cell: int, max_side: int) -> np.ndarray:
    """Bits per pixel averaged over ``cell``×``cell`` blocks, at most ``max_side`` cells a side."""
    h, w = bits.shape
    cells = max(cell, math.ceil(max(h, w) / max_side))
    size = (max(1, math.ceil(w / cells)), max(1, math.ceil(h / cells)))
    return np.asarray(Image.fromarray(bits.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX))


def heatmap(values: np.ndarray, vmax: float) -> Image.Image:
    rgba = colormaps[COLORMAP](np.clip(values / max(vmax, 1e-12), 0, 1), bytes=True)
    return Image.fromarray(rgba[..., :3])


def colour_stops(n: int = 9) -> list[str]:
    """The colour map as CSS colours, for the page's colour bar."""
    return ["#" + bytes(colormaps[COLORMAP](i / (n - 1), bytes=True)[:3]).hex() for i in range(n)]


def grain_overlay(layers: list[np.ndarray], height: int, width: int, padded_height: int) -> Image.Image:
    """Control-GIC's coarse and medium cells tinted on the fine grid, cropped to the ``height`` × ``width`` image."""
    fine = layers[-1].shape
    out = np.zeros((*fine, 4), dtype=np.uint8)
    for layer, colour in zip(layers[:2], GRAIN_COLOURS, strict=False):
        factor = fine[0] // layer.shape[0]
        out[np.kron(layer, np.ones((factor, factor), dtype=bool))] = colour
    cell = padded_height // fine[0]
    return Image.fromarray(out[: math.ceil(height / cell), : math.ceil(width / cell)], mode="RGBA")


def patch_bpsp(bits: np.ndarray, patch: int) -> np.ndarray:
    """Bits per sub-pixel of every P×P patch (MGCF/CALLIC code patches independently)."""
    h, w = bits.shape
    nh, nw = math.ceil(h / patch), math.ceil(w / patch)
    padded = np.zeros((nh * patch, nw * patch))
    count = np.zeros_like(padded)
    padded[:h, :w], count[:h, :w] = bits, 1
    sums = padded.reshape(nh, patch, nw, patch).sum((1, 3))
    return sums / (3 * count.reshape(nh, patch, nw, patch).sum((1, 3)))


def _chosen(images: Iterable[Mapping], settings: ReportSettings) -> list[tuple[str, torch.Tensor]]:
    """The first ``images`` items of a set, or those named in ``names``."""
    wanted = {n for n in settings.names or []}
    out = []
    for item in images:
        x, name = unpack_item(item)
        if (not wanted and len(out) < settings.images) or name in wanted or Path(name).stem in wanted:
            out.append((name, x[:1].cpu()))
        if not wanted and len(out) >= settings.images:
            break
    return out


def _coded(codec: Codec, x: torch.Tensor, knobs: dict, use_maps: bool) -> tuple[bytes, BitAllocation | None, str]:
    """The bitstream of ``x`` at ``knobs``, with its bit map when the codec can record one."""
    if use_maps:
        try:
            allocation = bit_allocation(codec, x, knobs)
            return allocation.data, allocation, ""
        except BitMapUnavailable as err:
            return codec.compress(x, knobs), None, str(err)
    return codec.compress(x, knobs), None, "report.bit_maps is off"


def _image_assets(codec: Codec, name: str, x: torch.Tensor, points: list[dict], run_dir: Path,
                  set_name: str, settings: ReportSettings) -> dict:
    stem = Path(name).stem
    folder = run_dir / ASSETS / set_name / stem
    folder.mkdir(parents=True, exist_ok=True)
    h, w = x.shape[-2:]
    entry = {"name": name, "width": w, "height": h, "original": _save_picture(to_uint8(x), folder, "original",
                                                                             settings), "points": []}
    maps = []
    for i, knobs in enumerate(points):
        data, allocation, why = _coded(codec, x, knobs, settings.bit_maps)
        decoded = codec.decompress(data)
        saved = run_dir / "bitstreams" / set_name / f"point{i:02d}" / f"{stem}.ctl"
        point = {"index": i, "knobs": knobs, **_save_picture(to_uint8(decoded), folder, f"p{i:02d}", settings),
                 "file_bits": 8 * len(data), "same_as_sweep": saved.read_bytes() == data if saved.is_file() else None}
        if allocation is None:
            point["bit_map"] = None
            point["no_bit_map"] = why
        else:
            point.update(payload_bits=allocation.payload_bits, side_bits=allocation.side_bits,
                         map_bits=round(allocation.map_bits, 3), bits_outside=round(allocation.bits_outside, 3),
                         streams={k: round(v, 3) for k, v in allocation.streams.items()},
                         map_bpp=float(allocation.bits.sum() / (h * w)))
            maps.append((point, allocation))
        entry["points"].append(point)
    if maps:
        _save_maps(maps, folder, settings, entry)
    return entry


def _save_maps(maps: list[tuple[dict, BitAllocation]], folder: Path, settings: ReportSettings, entry: dict) -> None:
    """Heatmaps on one colour scale per image (so the rate visibly moves with the knob), overlays, patches."""
    shown = [display_map(allocation.bits, allocation.cell, settings.thumb_size) for _, allocation in maps]
    vmax = max(float(np.percentile(s, SCALE_PERCENTILE)) for s in shown) or 1.0
    entry["bit_scale"] = {"max_bpp": vmax, "colours": colour_stops()}
    root = folder.relative_to(folder.parents[2])
    patch_max = None
    for (point, allocation), values in zip(maps, shown, strict=True):
        i = point["index"]
        heatmap(values, vmax).save(folder / f"p{i:02d}_bits.png")
        point["bit_map"] = str(root / f"p{i:02d}_bits.png")
        if "granularity" in allocation.overlays:
            grain_overlay(allocation.overlays["granularity"], entry["height"], entry["width"],
                          allocation.padded_size[0]).save(folder / f"p{i:02d}_grain.png")
            point["overlay"] = str(root / f"p{i:02d}_grain.png")
            point["grains"] = {g: int(m.sum()) for g, m in zip(("coarse", "medium", "fine"),
                                                               allocation.overlays["granularity"], strict=True)}
        if "patch_size" in allocation.notes:
            grid = patch_bpsp(allocation.bits, int(allocation.notes["patch_size"]))
            point["patch_bpsp"] = np.round(grid, 4).tolist()
            patch_max = max(patch_max or 0.0, float(grid.max()))
    if patch_max is not None:
        entry["patch_scale"] = patch_max
        for point, allocation in maps:
            grid = np.asarray(point["patch_bpsp"])
            heatmap(grid, patch_max).save(folder / f"p{point['index']:02d}_patches.png")
            point["patch_map"] = str(root / f"p{point['index']:02d}_patches.png")
            point["patch_size"] = int(allocation.notes["patch_size"])


def _result_files(run_dir: Path) -> list[tuple[str, str, str]]:
    """(set name, results file, per-image file) of every evaluated set, the first set unsuffixed."""
    files = []
    for path in sorted(run_dir.glob("results*.json")):
        suffix = path.stem[len("results"):]
        results = load_results(path)
        files.append((results.get("meta", {}).get("dataset", suffix.lstrip("_") or "eval"), path.name,
                      f"per_image{suffix}.csv"))
    return sorted(files, key=lambda f: f[1] != "results.json")


def write_report_assets(codec: Codec, eval_sets: Mapping[str, Iterable[Mapping]], run_dir: str | Path,
                        report: ReportSettings | Mapping | None = None, plot_references: list[str] | None = None,
                        metric: str = "psnr-rgb") -> Path | None:
    """Save the pictures of the chosen images at every knob value of the finished sweep in ``run_dir``.

    Reads the sweep's knob settings from its results files; returns the manifest path (None when off).
    """
    settings = report_settings(report)
    run_dir = Path(run_dir)
    if not settings.enabled:
        return None
    shutil.rmtree(run_dir / ASSETS, ignore_errors=True)
    (run_dir / ASSETS).mkdir(parents=True)
    codec.prepare()
    manifest = {"version": 1, "codec": codec.name, "lossless": codec.lossless, "metric": metric,
                "plot_references": plot_references, "thumb_size": settings.thumb_size,
                "full_size": settings.full_size, "sets": []}
    files = {name: (res, csv) for name, res, csv in _result_files(run_dir)}
    for set_name, images in eval_sets.items():
        if set_name not in files:
            continue
        results_file, csv_file = files[set_name]
        points = load_results(run_dir / results_file)["meta"].get("points") or [{}]
        chosen = _chosen(images, settings)
        entries = [_image_assets(codec, name, x, points, run_dir, set_name, settings) for name, x in chosen]
        manifest["sets"].append({"name": set_name, "results": results_file, "per_image": csv_file,
                                 "points": points, "images": entries})
    path = run_dir / ASSETS / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path

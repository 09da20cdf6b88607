"""``ctrlic compress``: images to bitstream files, at given knob values or at a target bpp / PSNR."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ctrlic.cli import console
from ctrlic.cli.errors import CLIError, about
from ctrlic.cli.files import OutputBatch, read_bytes
from ctrlic.cli.knobs import knob_values
from ctrlic.cli.models import open_model, remember
from ctrlic.cli.parser import DEFAULT_TILE
from ctrlic.codecs.bitstream import BitstreamError, read_header
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.rate_search import search_target
from ctrlic.datamodules.image_io import load_rgb8, to_tensor


def configure(codec: Codec, args: argparse.Namespace) -> None:
    """Apply --pad, --tile, --entropy-path, --max-pixels and --scale-levels to the codec."""
    if args.tile is not None and args.tile < 0:
        raise CLIError(f"--tile {args.tile}: give a positive tile size, or 0 to code images whole")
    m = codec.set_options(padding=args.pad).padding.multiple
    tile = math.ceil(DEFAULT_TILE / m) * m if args.tile is None else args.tile
    path = args.entropy_path
    if path == "auto":
        path = "cpu64" if codec.backbone.robust_entropy else "native"
    codec.set_options(tile=tile, entropy_path=path, max_pixels=args.max_pixels, scale_levels=args.scale_levels)


def _target(args: argparse.Namespace) -> tuple[str, float] | None:
    metric = "bpp" if args.bpp is not None else "psnr" if args.psnr is not None else None
    return None if metric is None else (metric, getattr(args, metric))


def complete(path: Path, codec: Codec, knobs: dict[str, float] | None) -> bool:
    """True when ``path`` is a whole bitstream of this model (and of these knobs, when given)."""
    try:
        header = read_header(read_bytes(path))
    except (BitstreamError, CLIError):
        return False
    same_knobs = knobs is None or header.knobs == {k: float(np.float32(v)) for k, v in knobs.items()}
    return header.codec == codec.name and header.fingerprint == codec.fingerprint and same_knobs


def _to_skip(args: argparse.Namespace, codec: Codec, knobs: dict[str, float] | None) -> set[Path]:
    """With --skip-existing: the outputs already complete; any other existing output is refused."""
    if not args.skip_existing:
        return set()
    done = set()
    for dst in args.output_paths:
        if not dst.exists():
            continue
        if not complete(dst, codec, knobs):
            raise CLIError(f"output '{dst}' exists but is not a complete bitstream of this model"
                           + (" at these knob values" if knobs is not None else "")
                           + "; pass --force to overwrite it, or move it away")
        done.add(dst)
    return done


def run(args: argparse.Namespace) -> None:
    inputs, outputs = args.input_paths, args.output_paths
    codec = open_model(args.model, trust_pickle=args.trust_pickle)
    configure(codec, args)
    knobs = knob_values(args, codec.knobs)
    target = _target(args)
    if target is None:
        knobs = codec.control.resolve(knobs)  # knob values out of range fail before any work
    remember(codec, Path(args.model))
    skip = _to_skip(args, codec, knobs if target is None else None)
    with OutputBatch() as batch:
        for src, dst in zip(console.each(inputs, "compressing"), outputs, strict=True):
            if dst in skip:
                console.note(f"'{dst}' exists and is complete; skipped '{src}'")
                continue
            try:
                _compress_one(codec, src, dst, knobs, target, args, batch)
            except ValueError as exc:
                raise about(src, exc) from None


def _compress_one(codec: Codec, src: Path, dst: Path, knobs: dict[str, float], target: tuple[str, float] | None,
                  args: argparse.Namespace, batch: OutputBatch) -> None:
    arr, conversion = load_rgb8(src, args.max_pixels)
    if conversion:
        console.note(f"{src}: {conversion}")
    x = to_tensor(arr)[None]
    h, w = x.shape[-2:]
    if target is None:
        data = codec.compress(x, knobs)
        how = ""
    else:
        metric, value = target
        found = search_target(codec, x, value, metric=metric, fixed=knobs, tolerance=args.tolerance,
                              max_encodes=args.max_encodes)
        data = found.data
        how = f", {metric} {found.value:.4g} for target {value:g} in {found.encodes} encodes"
        if not found.in_range:
            console.note(f"{src}: {found.message}")
    batch.write(dst, lambda tmp, data=data: tmp.write_bytes(data))
    applied = " ".join(f"{k}={v:.4g}" for k, v in data.knobs.items())
    console.say(f"{src} -> {dst}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp"
                + (f" ({applied})" if applied else "") + how)

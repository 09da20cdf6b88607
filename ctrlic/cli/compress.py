"""``ctrlic compress``: images to bitstream files, at given knob values or at a target bpp / PSNR."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ctrlic.cli import console
from ctrlic.cli.errors import CLIError
from ctrlic.cli.files import atomic_write
from ctrlic.cli.knobs import knob_values
from ctrlic.cli.models import open_model, remember
from ctrlic.cli.parser import DEFAULT_TILE
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.rate_search import search_target
from ctrlic.datamodules.image_io import load_rgb8, to_tensor


def configure(codec: Codec, args: argparse.Namespace) -> None:
    """Apply --tile, --entropy-path and --scale-levels to the codec."""
    if args.tile is not None and args.tile < 0:
        raise CLIError(f"--tile {args.tile}: give a positive tile size, or 0 to code images whole")
    m = codec.backbone.pad_multiple
    tile = math.ceil(DEFAULT_TILE / m) * m if args.tile is None else args.tile
    path = args.entropy_path
    if path == "auto":
        path = "cpu64" if codec.backbone.robust_entropy else "native"
    codec.set_options(tile=tile, entropy_path=path, scale_levels=args.scale_levels)


def _check_target(args: argparse.Namespace) -> tuple[str, float] | None:
    metric = "bpp" if args.bpp is not None else "psnr" if args.psnr is not None else None
    if metric is None:
        return None
    if args.tolerance <= 0 or args.max_encodes < 2:
        raise CLIError("--tolerance must be positive and --max-encodes at least 2")
    return metric, getattr(args, metric)


def run(args: argparse.Namespace) -> None:
    inputs, outputs = args.input_paths, args.output_paths
    codec = open_model(args.model)
    configure(codec, args)
    knobs = knob_values(args, codec.knobs)
    target = _check_target(args)
    if target is None:
        codec.control.resolve(knobs)  # knob values out of range fail before the first image is read
    remember(codec, Path(args.model))
    for src, dst in zip(console.each(inputs, "compressing"), outputs, strict=True):
        arr, conversion = load_rgb8(src)
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
        atomic_write(dst, lambda tmp, data=data: tmp.write_bytes(data))
        applied = " ".join(f"{k}={v:.4g}" for k, v in data.knobs.items())
        console.say(f"{src} -> {dst}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp"
                    + (f" ({applied})" if applied else "") + how)


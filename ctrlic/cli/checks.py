"""Checks of the command line that need no model: numbers that must be finite and positive, and the
folders of ``ctrlic eval`` (in the command's own words, not the config keys ``run.py`` uses)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ctrlic.cli import console
from ctrlic.cli.errors import CLIError


def _positive(value: float | int | None, option: str, example: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise CLIError(f"{option} {value:g}: give a finite number above 0, e.g. {option} {example}")


def arguments(args: argparse.Namespace) -> None:
    """Refuse option values no command can use, before anything is loaded."""
    conflicts = getattr(args, "conflicts", [])
    if conflicts:
        raise CLIError(conflicts[0])
    if args.command == "compress":
        _positive(args.bpp, "--bpp", "0.3")
        _positive(args.psnr, "--psnr", "32")
        _positive(args.tolerance, "--tolerance", "0.005")
        if args.max_encodes < 2:
            raise CLIError(f"--max-encodes {args.max_encodes}: a target search needs at least 2 encodes")
        if args.tile is not None and args.tile < 0:
            raise CLIError(f"--tile {args.tile}: give a positive tile size, or 0 to code images whole")
    if args.command in ("compress", "eval"):
        from ctrlic.codecs.entropy.scale_table import LEVELS, MAX_LEVELS

        if not LEVELS <= args.scale_levels <= MAX_LEVELS:
            raise CLIError(f"--scale-levels {args.scale_levels}: choose between {LEVELS} (CompressAI's table) and "
                           f"{MAX_LEVELS}")
    if args.command in ("compress", "decompress") and args.max_pixels < 1:
        raise CLIError(f"--max-pixels {args.max_pixels}: give a positive number of pixels")
    if args.command == "eval":
        if args.crop is not None and args.crop < 1:
            raise CLIError(f"--crop {args.crop}: give the side of the centre crop in pixels (at least 1), "
                           "or leave it out to evaluate whole images")
        if args.max_points is not None and args.max_points < 1:
            raise CLIError(f"--max-points {args.max_points}: give at least 1")
        if args.workers < 1:
            raise CLIError(f"--workers {args.workers}: give at least 1 coding process")
        if args.threads is not None and args.threads < 1:
            raise CLIError(f"--threads {args.threads}: give at least 1, or leave it out for torch's default")
        if args.shard is not None:
            from ctrlic.evaluation.sharding import ShardError, parse_shard

            try:
                parse_shard(args.shard)
            except ShardError:
                raise CLIError(f"--shard {args.shard}: write it as I/N with 0 <= I < N, e.g. --shard 0/4 … 3/4") from None


def eval_inputs(args: argparse.Namespace) -> None:
    """``--data`` must be a folder with readable images (unreadable ones are named, and skipped as the
    evaluation skips them), ``--out`` a folder that can be written."""
    from ctrlic.cli.files import OutputError, check_writable
    from ctrlic.datamodules.image_io import IMAGE_SUFFIXES, ImageReadError, list_images, verify_image

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out '{args.out}' is a file; give a folder for the results (it is created if missing)")
    try:
        check_writable([out / "results.json"])
    except OutputError as exc:
        raise CLIError(f"--out: {exc}") from None
    data = Path(args.data)
    if not data.is_dir():
        raise CLIError(f"--data '{args.data}' " + ("is not a folder" if data.exists() else "does not exist")
                       + "; give a folder of images")
    files = list_images(data)
    if not files:
        raise CLIError(f"--data '{args.data}' holds no images (searched for {' '.join(IMAGE_SUFFIXES)} "
                       "in it and its subfolders)")
    bad = []
    for path in files:
        try:
            verify_image(path)
        except ImageReadError as exc:
            bad.append(f"'{path}' ({exc.why})")
    if len(bad) == len(files):
        raise CLIError(f"none of the {len(files)} images in --data '{args.data}' can be read, e.g. {bad[0]}")
    for item in bad:
        console.note(f"skipping unreadable image {item}")
    if bad:
        console.note(f"the results will cover {len(files) - len(bad)} of the {len(files)} images in '{args.data}'")

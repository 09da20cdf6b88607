"""``ctrlic eval``: the RD sweep of ``task=eval`` on a folder of images (real bitstreams)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ctrlic.cli import console
from ctrlic.cli.errors import CLIError
from ctrlic.cli.models import open_model
from ctrlic.datamodules.images import ImageDataModule
from ctrlic.evaluation.sweep import SweepSettings, run_sweep


def run(args: argparse.Namespace) -> None:
    data = Path(args.data)
    if not data.is_dir():
        raise CLIError(f"--data '{args.data}' is not a folder of images")
    if args.max_points is not None and args.max_points < 1:
        raise CLIError("--max-points must be at least 1")
    codec = open_model(args.model, trust_pickle=args.trust_pickle)
    name = data.resolve().name or "images"
    sets = ImageDataModule(eval_sets={name: data}, batch_size=1, eval_crop=args.crop).eval_dataloaders()
    settings = SweepSettings(max_points=args.max_points, save_bitstreams=args.keep_bitstreams,
                             extra_meta={"checkpoint": str(args.model)})
    results = run_sweep(codec, sets, args.out, settings)[name]
    curve = results["results"]
    for i, bpp in enumerate(curve["bpp"]):
        console.say(f"point {i}: {bpp:.4f} bpp, {curve['psnr-rgb'][i]:.2f} dB PSNR")
    console.say(f"results: {Path(args.out) / 'results.json'}")

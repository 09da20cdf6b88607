"""``ctrlic eval``: the evaluation of ``task=eval`` on a folder of images (real bitstreams, lossy or lossless)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ctrlic.cli import console
from ctrlic.cli.errors import CLIError
from ctrlic.cli.models import open_model
from ctrlic.datamodules.eval_images import EvalImages, image_folder, readable
from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.report import REPORT
from ctrlic.evaluation.settings import SweepSettings


def run(args: argparse.Namespace) -> None:
    data = Path(args.data)
    if not data.is_dir():
        raise CLIError(f"--data '{args.data}' is not a folder of images")
    if args.max_points is not None and args.max_points < 1:
        raise CLIError("--max-points must be at least 1")
    root, files = image_folder("--data", data)
    files, skipped = readable(files, root)
    if not files:
        raise CLIError(f"--data '{args.data}': none of its {len(skipped)} images can be read, e.g. {skipped[0]}")
    if skipped:
        console.note(f"skipping {len(skipped)} unreadable image(s): {', '.join(skipped)}")
    codec = open_model(args.model, trust_pickle=args.trust_pickle)
    name = data.resolve().name or "images"
    images = EvalImages(files, root, args.crop)
    settings = SweepSettings(max_points=args.max_points, save_bitstreams=args.keep_bitstreams, padding=args.pad,
                             scale_levels=args.scale_levels,
                             workers=args.workers, shard=args.shard, threads=args.threads,
                             extra_meta={"checkpoint": str(args.model)})
    outputs = evaluate(codec, {name: images}, args.out, settings)
    if name not in outputs:
        console.say(f"shard {args.shard} coded; results.json is written by the last shard to finish")
        return
    results = outputs[name]
    curve = results["results"]
    quality = "bpsp" if codec.lossless else "bpp"
    for i, rate in enumerate(curve[quality]):
        extra = "" if codec.lossless else f", {curve['psnr-rgb'][i]:.2f} dB PSNR"
        console.say(f"point {i}: {rate:.4f} {quality}{extra}")
    console.say(f"results: {Path(args.out) / 'results.json'}")
    if (Path(args.out) / REPORT).is_file():
        console.say(f"report: {Path(args.out) / REPORT}")


"""Time and peak memory of compressing and decompressing a 4000×3000 photograph, per lossy codec.

Each codec runs in its own subprocess (peak resident memory = that process's VmHWM), with the tiling
the ``ctrlic`` command uses by default. The photograph is kodim01 resized to 4000×3000 (bicubic).
Target: under 8 GiB on 2 CPU cores. A progress bar follows the codecs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from rich.progress import Progress

from benchmarks.codecs import BENCH_CODECS, KODAK4, SLOW_CODECS, build_bench_codec
from benchmarks.common import ROOT, timed_round_trip, write_json
from ctrlic.cli.parser import DEFAULT_TILE
from ctrlic.datamodules.image_io import to_tensor

SIZE = (3000, 4000)  # height, width
TARGET_GIB = 8.0


def photograph(height: int, width: int):
    """kodim01 resized to height×width as a (1, 3, H, W) tensor."""
    with Image.open(KODAK4 / "kodim01.png") as im:
        return to_tensor(np.asarray(im.convert("RGB").resize((width, height), Image.BICUBIC)))[None]


def _peak_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("/proc/self/status has no VmHWM; this benchmark needs Linux")


def child(name: str, height: int, width: int, tile: int, paper: bool) -> dict:
    """Build, compress and decompress in this process; returns times, bpp and peak memory."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    codec = build_bench_codec(name, paper=paper)
    codec.prepare()
    m = codec.backbone.pad_multiple
    codec.set_options(tile=math.ceil(tile / m) * m if tile else None)
    if codec.backbone.robust_entropy:
        codec.set_options(entropy_path="cpu64")
    x = photograph(height, width)
    knobs = codec.control.sweep_points()[0] if codec.knobs else {}
    data, x_hat, encode, decode = timed_round_trip(codec, x, knobs)
    assert x_hat.shape == x.shape
    return {"codec": name, "lossless": codec.lossless, "tile": codec.options.tile, "bpp": 8 * len(data) / (height * width),
            "encode_s": encode, "decode_s": decode, "peak_gib": _peak_gib()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=[n for n in BENCH_CODECS if n not in SLOW_CODECS],
                        help="benchmark codec names (benchmarks/codecs.py); lossless ones are skipped")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="tile size (0: whole image)")
    parser.add_argument("--height", type=int, default=SIZE[0])
    parser.add_argument("--width", type=int, default=SIZE[1])
    parser.add_argument("--paper", action="store_true", help="paper-size models instead of tiny ones")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="large_image")
    parser.add_argument("--child", metavar="CODEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.height, args.width, args.tile, args.paper)))
        return {}
    rows: list[dict] = []
    with Progress() as progress:
        task = progress.add_task(f"{args.width}×{args.height}", total=len(args.codecs))
        for name in args.codecs:
            progress.update(task, description=f"{args.width}×{args.height}: {name}")
            cmd = [sys.executable, "-m", "benchmarks.large_image", "--child", name, "--tile", str(args.tile),
                   "--height", str(args.height), "--width", str(args.width), *(["--paper"] if args.paper else [])]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
            if proc.returncode == 0:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            else:
                row = {"codec": name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
            if not row.get("lossless"):
                rows.append(row)
            payload = report(rows, args)  # written after every codec: a cut-short run keeps what it measured
            progress.advance(task)
    return payload


def report(rows: list[dict], args: argparse.Namespace) -> dict:
    ok = [r for r in rows if "error" not in r]
    worst = max((r["peak_gib"] for r in ok), default=None)
    cells = ", ".join(f"{r['codec']} {r['encode_s']:.0f}+{r['decode_s']:.0f} s / {r['peak_gib']:.2f} GiB" for r in ok)
    payload = {"size": [args.height, args.width], "tile": args.tile or None, "threads": args.threads,
               "paper": args.paper, "target_gib": TARGET_GIB, "max_peak_gib": worst,
               "meets_target": worst is not None and worst < TARGET_GIB, "rows": rows,
               "markdown": f"{args.width}×{args.height}, tile {args.tile or 'none'}, {args.threads} threads "
                           f"(encode+decode time / peak memory): {cells}"}
    write_json(args.name, payload)
    return payload

if __name__ == "__main__":
    main()

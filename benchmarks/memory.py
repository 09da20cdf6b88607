"""Memory: peak resident memory of compress and decompress per codec, on a Kodak image and a 2048×1536 one.

Every (codec, size, operation) runs in its own subprocess, so each peak (VmHWM, reset after the model
and the input are loaded where the kernel allows) belongs to that operation alone. Target: under 4 GiB
at 2048×1536. ``--gpu`` adds the peak GPU memory of one training step at the paper's batch and crop,
fp32 vs bf16, for the paper-size models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.codecs import BENCH_CODECS, KODAK4, PAPER_CODECS, SLOW_CODECS, build_bench_codec, load_images
from benchmarks.common import ROOT, write_json
from ctrlic.codecs import bitstream
from ctrlic.codecs.codec import TILE

SIZES = {"kodak": None, "2048x1536": (1536, 2048)}
TARGET_GIB = 4.0
#: the paper recipe used for the GPU step: batch 16 of 256×256 crops (CompressAI, STF, TCM)
GPU_BATCH, GPU_CROP = 16, 256


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}; this benchmark needs Linux")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False when the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def test_image(size: str) -> torch.Tensor:
    """The first Kodak image, or it resized (bicubic) to ``SIZES[size]``."""
    x = load_images(KODAK4, limit=1)[0][1]
    if SIZES[size] is None:
        return x
    return F.interpolate(x, size=SIZES[size], mode="bicubic", align_corners=False).clamp(0, 1)


def child(codec_name: str, size: str, op: str, stream: Path, tile: int) -> dict:
    """Run one operation and report its peak RSS; compress writes ``stream``, decompress reads it."""
    codec = build_bench_codec(codec_name)
    codec.prepare()
    codec.set_options(tile=tile or None)
    x = test_image(size)
    data = stream.read_bytes() if op == "decompress" else None
    reset = _reset_peak()
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    if op == "compress":
        stream.write_bytes(codec.compress(x))
    else:
        codec.decompress(data)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    tiling = bitstream.read_header(stream.read_bytes()).extras.get(TILE)
    return {"codec": codec_name, "size": size, "op": op, "shape": list(x.shape[-2:]),
            "rss_before_mib": before / 1024, "peak_rss_mib": peak / 1024, "op_extra_mib": (peak - before) / 1024,
            "peak_reset_after_setup": reset, "seconds": seconds,
            "tiling": {"tile": tiling[0]} if tiling else None}


def run_child(codec_name: str, size: str, op: str, stream: Path, tile: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", codec_name, size, op, str(stream), str(tile)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"codec": codec_name, "size": size, "op": op, "error": last[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict]) -> str:
    """One Markdown line: the largest peak RSS per codec at 2048×1536."""
    peaks: dict[str, float] = {}
    for r in rows:
        if r["size"] == "2048x1536" and "peak_rss_mib" in r:
            peaks[r["codec"]] = max(peaks.get(r["codec"], 0.0), r["peak_rss_mib"])
    parts = [f"{name} {mib / 1024:.2f} GiB" for name, mib in peaks.items()]
    failed = sorted({r["codec"] for r in rows if "error" in r})
    return (f"Peak RSS at 2048×1536 (compress or decompress) [target < {TARGET_GIB} GiB]: " + "; ".join(parts)
            + (f"; failed: {', '.join(failed)}" if failed else ""))


def gpu_step_memory(codec_name: str, precision: str) -> dict:
    """Peak GPU memory of one forward+backward+Adam step at the paper's batch and crop."""
    from ctrlic.lightning_modules.losses import MSERateLoss

    device = torch.device("cuda")
    codec = build_bench_codec(codec_name, paper=True).to(device).train()
    x = torch.rand(GPU_BATCH, 3, GPU_CROP, GPU_CROP, device=device)
    optimizer = torch.optim.Adam([p for p in codec.parameters() if p.requires_grad], lr=1e-4)
    criterion = MSERateLoss()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = codec(x)
    loss = criterion(out, x, 0.0483)["loss"] + codec.backbone.aux_loss()
    loss.backward()
    optimizer.step()
    torch.cuda.synchronize()
    return {"codec": codec_name, "precision": precision, "batch": GPU_BATCH, "crop": GPU_CROP,
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20}


def _gpu_row(codec_name: str, precision: str) -> dict:
    """``gpu_step_memory``, or the error that stopped it (one codec must not hide the others)."""
    try:
        return gpu_step_memory(codec_name, precision)
    except Exception as exc:  # noqa: BLE001 - e.g. out of memory: recorded, the next codec still runs
        torch.cuda.empty_cache()
        return {"codec": codec_name, "precision": precision, "error": f"{type(exc).__name__}: {exc}"[:300]}


def gpu_markdown(rows: list[dict]) -> str:
    """One Markdown line: peak GPU memory of a training step per codec, fp32 → bf16."""
    peaks: dict[str, dict[str, str]] = {}
    for r in rows:
        value = f"{r['peak_gpu_mib'] / 1024:.1f}" if "peak_gpu_mib" in r else "failed"
        peaks.setdefault(r["codec"], {})[r["precision"]] = value
    parts = [f"{name} {p.get('fp32')} → {p.get('bf16')}" for name, p in peaks.items()]
    return (f"Peak GPU memory of one training step (batch {GPU_BATCH}, {GPU_CROP}²), GiB fp32 → bf16: "
            + "; ".join(parts))


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=[n for n in BENCH_CODECS if n not in SLOW_CODECS],
                        help="names in benchmarks/codecs.py (MGCF/CALLIC take minutes per large image on a CPU)")
    parser.add_argument("--tile", type=int, default=0, help="code in tiles of this size (0: whole image)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--gpu", action="store_true", help="also the GPU training-step memory (paper sizes)")
    parser.add_argument("--gpu-only", action="store_true", help="with --gpu: skip the CPU compress/decompress rows")
    parser.add_argument("--child", nargs=5, metavar=("CODEC", "SIZE", "OP", "STREAM", "TILE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--name", default="memory")
    args = parser.parse_args(argv)
    if args.child:
        codec_name, size, op, stream, tile = args.child
        print(json.dumps(child(codec_name, size, op, Path(stream), int(tile))))
        return None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for codec_name in [] if args.gpu and args.gpu_only else args.codecs:
            for size in args.sizes:
                stream = Path(tmp) / f"{codec_name}_{size}.bin"
                for op in ("compress", "decompress"):
                    row = run_child(codec_name, size, op, stream, args.tile)
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "shape"}))
    peaks = [r["peak_rss_mib"] for r in rows if "peak_rss_mib" in r and r["size"] == "2048x1536"]
    worst = max(peaks) / 1024 if peaks else None
    payload = {"target_gib_at_2048x1536": TARGET_GIB, "device": "cpu", "threads": torch.get_num_threads(),
               "max_peak_gib_at_2048x1536": worst, "tile": args.tile or None, "cpu": rows,
               "markdown": markdown(rows)}
    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu: no CUDA device is available")
        payload["gpu"] = [_gpu_row(name, precision) for name in PAPER_CODECS if name in args.codecs
                          for precision in ("fp32", "bf16")]
        payload["markdown"] = (payload["markdown"] + "; " if rows else "") + gpu_markdown(payload["gpu"])
    path = write_json(args.name, payload)
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()

"""Encode/decode seconds per Kodak image per codec: encode and decode on the device, and the CPU decode of the
same file, as a GPU encoder and a laptop decoder would meet it.

Each codec gets a short fit on the bundled training images (so the coder sees realistic latents), is exported
and loaded again on the CPU. Coding takes the entropy path ``ctrlic compress`` takes by default (``cpu64``
where the codec has it) at the middle of the codec's knob sweep. One untimed round trip of the first image
warms the device up; each figure is the wall time of one call, the device synchronised before the clock
stops. ``max_pixel_diff`` (8-bit) between the device's and the CPU's decode is a sanity check, not a figure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.codecs import KODAK4, PAPER_CODECS, build_bench_codec, knob_points, load_images, quick_fit
from benchmarks.common import write_json
from ctrlic.codecs.build import export_codec, load_codec
from ctrlic.codecs.codec import Codec

#: MGCF codes on the CPU whatever the device (one thread, per-pixel scan): ``mgcf_speed`` times it
DEFAULT_CODECS = tuple(name for name in PAPER_CODECS if name != "mgcf")


def _seconds(fn, device: torch.device):
    """(seconds, result) of one call, the device synchronised before the clock stops."""
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def time_codec(codec: Codec, images: list[tuple[str, torch.Tensor]], device: torch.device, work_dir: Path) -> dict:
    """Per image: bytes, device encode/decode seconds, CPU decode seconds; the codec is exported first."""
    if codec.backbone.robust_entropy:
        codec.set_options(entropy_path="cpu64")
    cpu = load_codec(export_codec(codec, work_dir / "codec.pt"))
    points = knob_points(codec, 3)
    knobs = points[len(points) // 2]
    warm = codec.compress(images[0][1], knobs)
    codec.decompress(warm)
    rows = []
    for name, x in images:
        encode, data = _seconds(lambda x=x: codec.compress(x, knobs), device)
        decode, x_dev = _seconds(lambda d=data: codec.decompress(d), device)
        cpu_decode, x_cpu = _seconds(lambda d=data: cpu.decompress(d), torch.device("cpu"))
        diff = (torch.round(x_dev.cpu().clamp(0, 1) * 255) - torch.round(x_cpu.clamp(0, 1) * 255)).abs().max()
        rows.append({"image": name, "shape": list(x.shape[-2:]), "bytes": len(data), "encode_s": encode,
                     "decode_s": decode, "cpu_decode_s": cpu_decode, "max_pixel_diff": int(diff)})
    median = {k: statistics.median(r[k] for r in rows) for k in ("encode_s", "decode_s", "cpu_decode_s")}
    return {"knobs": knobs, "entropy_path": codec.options.entropy_path, "median": median, "rows": rows}


def markdown(per_codec: dict, device: str) -> str:
    parts = [f"{name} {r['median']['encode_s']:.2f}/{r['median']['decode_s']:.2f}/{r['median']['cpu_decode_s']:.2f}"
             if "error" not in r else f"{name} failed" for name, r in per_codec.items()]
    return (f"Seconds per Kodak image, median, encode/decode on {device} / decode on the CPU: " + "; ".join(parts))


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=list(DEFAULT_CODECS), help="names in benchmarks/codecs.py")
    parser.add_argument("--paper", action="store_true", help="paper-size models (PAPER_CODECS)")
    parser.add_argument("--device", default="cuda", help="where encoding and the first decode run")
    parser.add_argument("--images", default=str(KODAK4))
    parser.add_argument("--crop", type=int, default=0, help="top-left crop (0: whole images)")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--fit-steps", type=int, default=50, help="short fit so the priors match the latents")
    parser.add_argument("--name", default="codec_time")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    images = load_images(args.images, args.crop, args.limit)
    per_codec = {}
    for name in args.codecs:
        try:
            codec = build_bench_codec(name, paper=args.paper).to(device)
            quick_fit(codec, args.fit_steps)
            with tempfile.TemporaryDirectory() as tmp:
                per_codec[name] = time_codec(codec, images, device, Path(tmp))
        except Exception as exc:  # noqa: BLE001 - one broken codec must not hide the others' figures
            per_codec[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(name, per_codec[name].get("median", per_codec[name].get("error")), flush=True)
    payload = {"device": args.device, "paper_size": args.paper, "fit_steps": args.fit_steps,
               "threads": torch.get_num_threads(), "codecs": per_codec,
               "markdown": markdown(per_codec, args.device)}
    path = write_json(args.name, payload)
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()

"""Cost of the device-robust entropy-parameter path (CPU float64) against the plain CompressAI path.

For each ChARM codec (STF, TCM) and image: whole-file bytes (the container's 14-byte ``ep`` record
included) and encode/decode time with ``entropy_path`` native and cpu64, and the largest difference
between the two reconstructions. Writes a JSON.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.codecs import KODAK4, build_bench_codec, load_images, quick_fit
from benchmarks.common import write_json
from ctrlic.codecs.codec import Codec

#: the codecs with a device-robust path (ChannelAutoregressive backbones)
ROBUST_CODECS = ("stf", "tcm", "cheng2020_attn", "tic")


def timed(fn, repeats: int):
    """Median seconds of ``repeats`` calls and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(codec: Codec, x: torch.Tensor, path: str, repeats: int) -> dict:
    codec.set_options(entropy_path=path)
    enc, data = timed(lambda: codec.compress(x), repeats)
    dec, x_hat = timed(lambda: codec.decompress(data), repeats)
    return {"bytes": len(data), "encode_s": enc, "decode_s": dec, "x_hat": x_hat}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=list(ROBUST_CODECS), choices=ROBUST_CODECS)
    parser.add_argument("--images", default=str(KODAK4))
    parser.add_argument("--crop", type=int, default=0, help="top-left crop (0: whole images)")
    parser.add_argument("--fit-steps", type=int, default=100, help="quick fit so the priors see real statistics")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="robust_entropy")
    args = parser.parse_args(argv)
    images = load_images(args.images, args.crop)
    rows = []
    for name in args.codecs:
        codec = build_bench_codec(name)
        quick_fit(codec, args.fit_steps)
        for image, x in images:
            native = measure(codec, x, "native", args.repeats)
            robust = measure(codec, x, "cpu64", args.repeats)
            diff = (native.pop("x_hat") - robust.pop("x_hat")).abs().max().item()
            rows.append({"codec": name, "image": image, "shape": list(x.shape[-2:]), "native": native,
                         "cpu64": robust, "extra_bytes": robust["bytes"] - native["bytes"],
                         "extra_bytes_pct": 100 * (robust["bytes"] / native["bytes"] - 1),
                         "encode_time_ratio": robust["encode_s"] / native["encode_s"],
                         "decode_time_ratio": robust["decode_s"] / native["decode_s"],
                         "max_abs_reconstruction_diff": diff})
    summary = {}
    for name in args.codecs:
        mine = [r for r in rows if r["codec"] == name]
        summary[name] = {k: statistics.median(r[k] for r in mine)
                         for k in ("extra_bytes", "extra_bytes_pct", "encode_time_ratio", "decode_time_ratio")}
    line = "; ".join(f"{n}: {s['extra_bytes']:+.0f} B ({s['extra_bytes_pct']:+.2f} %), encode ×"
                     f"{s['encode_time_ratio']:.2f}, decode ×{s['decode_time_ratio']:.2f}" for n, s in summary.items())
    payload = {"summary": summary, "rows": rows,
               "markdown": f"device-robust entropy path (CPU float64) vs plain, median over images — {line}"}
    write_json(args.name, payload)
    return payload


if __name__ == "__main__":
    main()

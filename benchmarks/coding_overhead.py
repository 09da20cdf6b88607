"""Coding overhead against the ideal: payload bits over the model's own −log₂ likelihood sum, per codec.

The ideal is the rate ``forward`` reports in eval mode on the same padded image with the same knobs
(after the control scheme's per-image side information, if any); the payload is the backbone's byte
sections of the real bitstream. Container header bytes and side-information bytes are reported apart.
Target: payload ≤ 1.005 × ideal.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from benchmarks.codecs import (
    BENCH_CODECS,
    KODAK4,
    SLOW_CODECS,
    build_bench_codec,
    knob_points,
    load_images,
    quick_fit,
)
from benchmarks.common import write_json
from ctrlic.codecs import bitstream
from ctrlic.codecs.codec import SIDE, Codec, pad_to_multiple
from ctrlic.metrics.quality import psnr

TARGET = 1.005


@torch.no_grad()
def ideal_bits(codec: Codec, x: torch.Tensor, knobs: dict) -> dict[str, float]:
    """−log₂ of the likelihoods ``forward`` gives the padded image, per likelihood key.

    Uses ``log_likelihoods`` (natural log) where the backbone gives them, e.g. lossless models whose
    per-sub-pixel probabilities can underflow.
    """
    values = codec.set_knobs(knobs)
    padded = pad_to_multiple(x, codec.backbone.pad_multiple)
    codec.control.encode_side(padded, values)
    try:
        out = codec(padded)
    finally:
        codec.control.release()
    logs = out.get("log_likelihoods")
    if isinstance(logs, torch.Tensor):
        logs = {next(iter(out["likelihoods"])): logs}
    if logs is None:
        logs = {key: torch.log(lk.double()) for key, lk in out["likelihoods"].items()}
    return {key: float(-ll.double().sum() / math.log(2)) for key, ll in logs.items()}


def measure(codec: Codec, name: str, x: torch.Tensor, knobs: dict) -> dict:
    """One image at one knob setting: bytes of each part of the real file, the ideal and their ratio."""
    data = codec.compress(x, knobs)
    header, sections = bitstream.unpack(data)
    n_side = int(header.extras.get(SIDE, 0))
    payload = sections[n_side:]
    ideal = ideal_bits(codec, x, knobs)
    payload_bits = 8 * sum(len(s) for s in payload)
    total_ideal = sum(ideal.values())
    quality = psnr(x, codec.decompress(data))
    by_key = {}
    if len(payload) == len(ideal):  # diagnostic: assumes the sections follow the likelihood keys' order
        by_key = {key: 8 * len(s) / bits for (key, bits), s in zip(ideal.items(), payload, strict=True) if bits > 0}
    return {
        "image": name, "knobs": dict(knobs), "shape": list(x.shape[-2:]),
        "file_bytes": len(data), "header_bytes": bitstream.header_size(data),
        "side_bytes": sum(len(s) for s in sections[:n_side]), "section_bytes": [len(s) for s in payload],
        "payload_bits": payload_bits, "ideal_bits": ideal, "ideal_bits_total": total_ideal,
        "ratio": payload_bits / total_ideal if total_ideal > 0 else math.nan, "ratio_by_key": by_key,
        "bpp_file": 8 * len(data) / (x.shape[-2] * x.shape[-1]),
        "psnr_decoded": quality if math.isfinite(quality) else None, "decoded_exact": not math.isfinite(quality),
    }


def measure_codec(codec_name: str, images: list, knob_count: int, fit_steps: int, paper: bool = False,
                  device: str = "cpu") -> dict:
    """Every image at every knob point of one codec, and the summary figures."""
    codec = build_bench_codec(codec_name, paper=paper).to(device)
    quick_fit(codec, fit_steps)
    codec.prepare()
    rows = [measure(codec, name, x.to(device), knobs) for knobs in knob_points(codec, knob_count)
            for name, x in images]
    ratios = [r["ratio"] for r in rows]
    return {"median_ratio": statistics.median(ratios), "max_ratio": max(ratios),
            "median_header_bytes": statistics.median(r["header_bytes"] for r in rows),
            "meets_target": max(ratios) <= TARGET, "rows": rows}


def markdown(per_codec: dict) -> str:
    """One Markdown line: median (max) payload/ideal and header bytes per codec."""
    parts = [f"{name} {row['median_ratio']:.4f} ({row['max_ratio']:.4f}), header {row['median_header_bytes']:.0f} B"
             if "error" not in row else f"{name} failed" for name, row in per_codec.items()]
    return f"Coding overhead payload/ideal, median (max) [target ≤ {TARGET}]: " + "; ".join(parts)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=[n for n in BENCH_CODECS if n not in SLOW_CODECS],
                        help="names in benchmarks/codecs.py (the lossless ones: run them on small crops)")
    parser.add_argument("--images", default=str(KODAK4))
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--crop", type=int, default=256, help="top-left crop (0 = whole images)")
    parser.add_argument("--knob-points", type=int, default=3, help="knob settings per controllable codec")
    parser.add_argument("--fit-steps", type=int, default=200, help="short fit so the priors match the latents")
    parser.add_argument("--paper", action="store_true", help="paper-size models (PAPER_CODECS)")
    parser.add_argument("--device", default="cpu", help="where the networks run (entropy coding is on the CPU)")
    parser.add_argument("--name", default="coding_overhead")
    args = parser.parse_args(argv)
    images = load_images(args.images, args.crop, args.limit)
    per_codec = {}
    for codec_name in args.codecs:
        try:
            per_codec[codec_name] = measure_codec(codec_name, images, args.knob_points, args.fit_steps,
                                                  args.paper, args.device)
        except Exception as exc:  # one broken codec must not hide the others' figures
            per_codec[codec_name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{codec_name:32s} FAILED: {per_codec[codec_name]['error']}")
            continue
        row = per_codec[codec_name]
        print(f"{codec_name:32s} payload/ideal median {row['median_ratio']:.4f} max {row['max_ratio']:.4f}  "
              f"header {row['median_header_bytes']:.0f} B")
    path = write_json(args.name, {"target_ratio": TARGET, "crop": args.crop, "fit_steps": args.fit_steps,
                                  "paper_size": args.paper, "device": args.device,
                                  "codecs": per_codec, "markdown": markdown(per_codec)})
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()

"""Coding time of ctrlic's codecs against the authors' way of coding, per backbone, same weights and Kodak crops.

The reference of Cheng2020-attn is CompressAI's own ``Cheng2020Attention``; for STF, TCM, their CALICE
α-adapters, Control-GIC and MGCF it is ``benchmarks/reference_coders/`` (the authors' coding loops and network
code paths, written from reading their repositories, on the parameters of ctrlic's modules). Each repeat codes
one image with both, back to back, the order alternating; the figure is the median over images × repeats of
ours / reference. Ours is the full ``Codec.compress`` / ``decompress`` (container, padding and knobs included);
the reference codes the padded image. Both decode what they encoded; payloads are compared.

Time is the process's CPU time (``time.process_time``) with torch on one thread (``--threads 1``, the golden
files' setting): on a machine shared with other work it moves far less than wall time, which is recorded
beside it (``wall_ratio_median``). Random weights (timing does not depend on them). The machine load
(1-minute load average) is recorded before and after each codec. Writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from compressai.models import Cheng2020Attention

from benchmarks.codecs import KODAK4, build_bench_codec, codec_overrides, load_images
from benchmarks.common import write_json
from benchmarks.reference_coders import charm_loop, control_gic, mgcf, stf, tcm
from ctrlic.codecs import bitstream
from ctrlic.codecs.codec import Codec, pad_to_multiple

#: target of issue #19: ours / reference at most this, encode and decode
TARGET = 0.7


@dataclass
class Reference:
    """A reference coder: ``encode(x_padded) -> sections`` and ``decode(sections, (H, W)) -> x_hat``."""

    encode: Callable[[torch.Tensor], list[bytes]]
    decode: Callable[[list[bytes], tuple[int, int]], torch.Tensor]
    what: str


def charm_reference(codec: Codec, module) -> Reference:
    model = codec.backbone
    net = module.transforms(model)
    return Reference(lambda x: charm_loop.encode(model, net, x),
                     lambda s, hw: charm_loop.decode(model, net, s, (hw[0] // 64, hw[1] // 64)),
                     f"authors' per-slice loop and {module.__name__.rsplit('.', 1)[-1].upper()} transforms "
                     "(benchmarks/reference_coders)")


def compressai_reference(codec: Codec) -> Reference:
    model = Cheng2020Attention(N=codec.backbone.N).eval()
    model.load_state_dict(codec.backbone.state_dict())
    model.update(force=True)

    def encode(x: torch.Tensor) -> list[bytes]:
        return [s[0] for s in model.compress(x)["strings"]]

    def decode(sections: list[bytes], hw: tuple[int, int]) -> torch.Tensor:
        return model.decompress([[s] for s in sections], (hw[0] // 64, hw[1] // 64))["x_hat"]

    return Reference(encode, decode, "compressai.models.Cheng2020Attention")


def reference_for(name: str, codec: Codec) -> Reference:
    if name == "cheng2020_attn":
        return compressai_reference(codec)
    if name.startswith("stf"):
        return charm_reference(codec, stf)
    if name.startswith("tcm"):
        return charm_reference(codec, tcm)
    model = codec.backbone
    if name == "control_gic":
        return Reference(lambda x: control_gic.encode(model, x), lambda s, hw: control_gic.decode(model, s, *hw),
                         "authors' encode/decode path (benchmarks/reference_coders/control_gic.py)")
    if name == "mgcf":
        return Reference(lambda x: mgcf.encode(model, x), lambda s, hw: mgcf.decode(model, s, *hw),
                         "plain cache-then-crop loop (benchmarks/reference_coders/mgcf.py)")
    raise ValueError(f"no reference coder for {name!r}")


#: codecs measured, with the knobs they code at (α = 0.5: both sides run the adapter branch)
CASES: dict[str, dict[str, float]] = {
    "cheng2020_attn": {}, "stf": {}, "tcm": {}, "stf+alpha_adapters": {"alpha": 0.5},
    "tcm+alpha_adapters": {"alpha": 0.5}, "control_gic": {}, "mgcf": {},
}


def fresh_analysis(codec: Codec) -> None:
    """Forget Control-GIC's cached analysis of the last image, so every encode runs the encoder (a first encode)."""
    if hasattr(codec.backbone, "_analysis"):
        codec.backbone._analysis = None


def one_round(codec: Codec, ref: Reference, x: torch.Tensor, knobs: dict, ours_first: bool) -> dict:
    """Encode and decode once with each coder, in the given order; seconds and payloads."""
    padded = pad_to_multiple(x, codec.backbone.pad_multiple)
    out: dict = {}

    def timed(key: str, fn):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        out[key], out[f"{key}_wall"] = time.process_time() - cpu, time.perf_counter() - wall
        return result

    def ours() -> None:
        fresh_analysis(codec)
        data = timed("ours_encode", lambda: codec.compress(x, knobs))
        out["ours_x_hat"] = timed("ours_decode", lambda: codec.decompress(data))
        out["ours_payload"] = bitstream.unpack(data)[1]

    def theirs() -> None:
        sections = timed("ref_encode", lambda: ref.encode(padded))
        x_hat = timed("ref_decode", lambda: ref.decode(sections, tuple(padded.shape[-2:])))
        out["ref_payload"] = sections
        out["ref_x_hat"] = x_hat[..., : x.shape[-2], : x.shape[-1]]

    for step in ((ours, theirs) if ours_first else (theirs, ours)):
        step()
    return out


def measure(name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    paper = args.size == "paper"
    codec = build_bench_codec(name, paper=paper)
    codec.prepare()
    knobs = CASES[name]
    codec.set_knobs(knobs)
    ref = reference_for(name, codec)
    crop = args.mgcf_crop if name == "mgcf" else args.crop
    images = load_images(args.images, crop=crop, limit=args.limit)
    load_before = os.getloadavg()[0]
    rows, ratios, wall = [], {"encode": [], "decode": []}, {"encode": [], "decode": []}
    with torch.no_grad():
        for image, x in images:
            one_round(codec, ref, x, knobs, True)  # warm-up: first calls build tables and caches
            runs = [one_round(codec, ref, x, knobs, i % 2 == 0) for i in range(args.repeats)]
            last = runs[-1]
            row = {"image": image, "shape": list(x.shape[-2:]),
                   "payload_bytes": {"ours": sum(map(len, last["ours_payload"])),
                                     "reference": sum(map(len, last["ref_payload"]))},
                   "payload_identical": last["ours_payload"] == last["ref_payload"],
                   "decoded_max_abs_difference": float((last["ours_x_hat"] - last["ref_x_hat"]).abs().max())}
            for what in ("encode", "decode"):
                pairs = [r[f"ours_{what}"] / r[f"ref_{what}"] for r in runs]
                wall_pairs = [r[f"ours_{what}_wall"] / r[f"ref_{what}_wall"] for r in runs]
                ratios[what] += pairs
                wall[what] += wall_pairs
                row[what] = {"ours_cpu_s": statistics.median(r[f"ours_{what}"] for r in runs),
                             "reference_cpu_s": statistics.median(r[f"ref_{what}"] for r in runs),
                             "ours_wall_s": statistics.median(r[f"ours_{what}_wall"] for r in runs),
                             "reference_wall_s": statistics.median(r[f"ref_{what}_wall"] for r in runs),
                             "cpu_ratios": pairs, "wall_ratios": wall_pairs}
            rows.append(row)
    return {"reference": ref.what, "overrides": list(codec_overrides(name, paper)), "knobs": knobs, "crop": crop,
            "load_average_1min": [load_before, os.getloadavg()[0]],
            "ratio_median": {k: statistics.median(v) for k, v in ratios.items()},
            "ratio_min_max": {k: [min(v), max(v)] for k, v in ratios.items()},
            "wall_ratio_median": {k: statistics.median(v) for k, v in wall.items()},
            "images": rows}


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--images", default=str(KODAK4))
    parser.add_argument("--limit", type=int, default=2, help="images of the folder used")
    parser.add_argument("--crop", type=int, default=256, help="top-left crop (0: whole images)")
    parser.add_argument("--mgcf-crop", type=int, default=64, help="crop for MGCF (its coding takes seconds per 64²)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per image (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both coders")
    parser.add_argument("--size", choices=("paper", "tiny"), default="paper", help="model sizes (tiny: a smoke run)")
    parser.add_argument("--name", default="coding_speed_vs_reference")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {name: measure(name, args) for name in args.codecs}
    parts = [f"{name} {r['ratio_median']['encode']:.2f} | {r['ratio_median']['decode']:.2f}"
             for name, r in results.items()]
    line = (f"coding time ours / authors' way (encode | decode, median; {args.size} size, {args.crop}² crops, "
            f"{args.threads} thread): " + ", ".join(parts) + f" [target ≤ {TARGET}]")
    path = write_json(args.name, {"threads": args.threads, "repeats": args.repeats, "size": args.size, "target": TARGET,
                                  "codecs": results, "markdown": line})
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()

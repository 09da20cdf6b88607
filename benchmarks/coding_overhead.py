"""Coding overhead against the true ideal, per section of the real bitstream, split into its causes.

For every section a codec writes (y and z of the Gaussian backbones, x of MGCF, masks and indices of
Control-GIC) the figures are, in bits, from one real ``compress`` under the bit-map recorder:

* ``real``: 8 × the section's bytes;
* ``coded``: −log₂ p under the tables the coder codes with (16-bit rANS CDFs with escapes, MGCF's integer
  frequencies, Huffman lengths): ``real / coded`` is the entropy coder's own loss (flush, byte alignment);
* ``table``: under the Gaussian of the scale-table entry the coder picked, CDFs unquantized:
  ``coded / table`` is the 16-bit CDF quantization and escape coding (``*_in_range``: without the escaped
  symbols, counted apart: a Gaussian charges an outlier of a briefly fitted prior more than its escape costs);
* ``exact``: under the exact means and scales the coder computed (the bottleneck's density for z, the float
  pmfs for MGCF), each likelihood at least the model's floor (1e-9) as in ``forward``: ``table / exact`` is
  the scale-table quantization, ``real / exact`` the whole overhead;
* ``forward``: what ``forward`` estimates in eval mode for the same likelihood key: ``exact / forward`` is the
  mismatch between the training-time rate and what coding really codes (Cheng2020's context sees round(y)
  in ``forward`` and round(y − μ) + μ in coding). No ratio divides by it except this one.

Gaussian codecs are measured again with each finer scale table of ``--scale-levels`` (a coding option recorded
in the container); the gain is the saving of real payload bits. Models: tiny sizes after ``--fit-steps`` Adam
steps on the bundled training images (a brief fit; the priors then match the latents' statistics roughly), or
trained ones (``--checkpoints``, e.g. the CPU-regime comparison's runs).
Header and side-information bytes are reported apart. Writes ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from benchmarks.codecs import BENCH_CODECS, KODAK4, SLOW_CODECS, codecs_to_measure, knob_points, load_images
from benchmarks.common import write_json
from ctrlic.codecs import bitstream
from ctrlic.codecs.backbones.mgcf import MGCF
from ctrlic.codecs.backbones.vqgan import VQGAN
from ctrlic.codecs.codec import SIDE, Codec, pad_to_multiple
from ctrlic.codecs.entropy import bit_map, scale_table
from ctrlic.metrics.quality import psnr

TARGET = 1.005
#: what the recorder adds up about the escaped symbols of a Gaussian section (their count and bits)
ESCAPE_KINDS = ("escapes", "coded_escaped", "table_escaped", "exact_escaped")
#: Control-GIC's sections, as the recorder names their streams
VQGAN_STREAMS = ("mask_coarse", "mask_medium", "indices_4", "indices_2", "indices_1")


def section_streams(codec: Codec) -> tuple[str, ...]:
    """The recorder's stream name of each image section, in bitstream order."""
    if isinstance(codec.backbone, MGCF):
        return ("x",)
    if isinstance(codec.backbone, VQGAN):
        return VQGAN_STREAMS
    return ("y", "z")


@torch.no_grad()
def forward_bits(codec: Codec, x: torch.Tensor, knobs: dict) -> dict[str, float]:
    """−log₂ of the likelihoods ``forward`` gives the padded image, per likelihood key (after side information).

    Uses ``log_likelihoods`` (natural log) where the backbone gives them (lossless models, whose per-sub-pixel
    probabilities can underflow).
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


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def split_sections(codec: Codec, x: torch.Tensor, knobs: dict) -> dict:
    """One real compress under the recorder: the file's parts and every section's bits by kind."""
    m = codec.backbone.pad_multiple
    with bit_map.recording(x.shape[-2] + (-x.shape[-2]) % m, x.shape[-1] + (-x.shape[-1]) % m) as recorder:
        data = codec.compress(x, knobs)
    header, sections = bitstream.unpack(data)
    n_side = int(header.extras.get(SIDE, 0))
    coded = recorder.stream_bits()
    rows = {}
    for stream, section in zip(section_streams(codec), sections[n_side:], strict=True):
        ideal = recorder.ideals.get(stream, {})
        rows[stream] = {"real": 8 * len(section), "coded": coded.get(stream), "table": ideal.get("table"),
                        "exact": ideal.get("exact"), **{kind: ideal.get(kind, 0.0) for kind in ESCAPE_KINDS}}
    return {"data": data, "header_bytes": bitstream.header_size(data),
            "side_bytes": sum(len(s) for s in sections[:n_side]), "sections": rows}


def _less(a: float | None, b: float) -> float | None:
    return None if a is None else a - b


def losses(row: dict) -> dict[str, float | None]:
    """The overhead of one section (or of totals) split into its causes, as ratios; the ``*_in_range`` ones
    leave out the escaped symbols, whose Gaussian ideal can exceed what their escape codes cost."""
    coded_in, table_in = _less(row["coded"], row["coded_escaped"]), _less(row["table"], row["table_escaped"])
    return {"coder": _ratio(row["real"], row["coded"]), "cdf_quantization": _ratio(row["coded"], row["table"]),
            "cdf_quantization_in_range": _ratio(coded_in, table_in),
            "scale_table": _ratio(row["table"], row["exact"]),
            "scale_table_in_range": _ratio(table_in, _less(row["exact"], row["exact_escaped"])),
            "total_over_exact": _ratio(row["real"], row["exact"]),
            "model_mismatch": _ratio(row["exact"], row.get("forward"))}


def totals(sections: dict) -> dict:
    """Sums over the sections that have each figure (exact-ideal figures only over sections that have one;
    ``forward`` only where each of those has its own likelihood key)."""
    with_exact = [s for s in sections.values() if s["exact"] is not None]
    out = {kind: sum(s[kind] for s in with_exact) if with_exact else None
           for kind in ("real", "coded", "table", "exact", *ESCAPE_KINDS)}
    forward = [s.get("forward") for s in with_exact]
    out["forward"] = sum(forward) if with_exact and None not in forward else None
    out["real_all_sections"] = sum(s["real"] for s in sections.values())
    return out


def measure(codec: Codec, name: str, x: torch.Tensor, knobs: dict, finer: tuple[int, ...] = ()) -> dict:
    """One image at one knob setting: every section's bits by kind, the losses, and the finer tables' savings."""
    parts = split_sections(codec, x, knobs)
    forward = forward_bits(codec, x, knobs)
    sections = parts["sections"]
    for stream, row in sections.items():
        row["forward"] = forward.get(stream)  # Control-GIC's one "indices" key matches no single section
        row["losses"] = losses(row)
    total = totals(sections)
    quality = psnr(x, codec.decompress(parts["data"]))
    result = {
        "image": name, "knobs": dict(knobs), "shape": list(x.shape[-2:]), "file_bytes": len(parts["data"]),
        "header_bytes": parts["header_bytes"], "side_bytes": parts["side_bytes"], "sections": sections,
        "forward_bits": forward, "totals": total, "losses": losses(total),
        "psnr_decoded": quality if math.isfinite(quality) else None, "decoded_exact": not math.isfinite(quality),
    }
    if finer:
        result["finer_tables"] = {}
        for levels in finer:
            codec.set_options(scale_levels=levels)
            try:
                other = split_sections(codec, x, knobs)
            finally:
                codec.set_options(scale_levels=scale_table.LEVELS)
            real = sum(s["real"] for s in other["sections"].values())
            result["finer_tables"][str(levels)] = {
                "sections": other["sections"], "real": real,
                "saving": 1 - real / total["real_all_sections"],
                "y_saving": 1 - other["sections"]["y"]["real"] / sections["y"]["real"]}
    return result


def gaussian(codec: Codec) -> bool:
    return bool(scale_table.conditionals(codec.backbone))


def summarise_codec(rows: list[dict], finer: tuple[int, ...]) -> dict:
    """Medians over images and knob settings of every ratio, overall and per section."""
    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    out = {"losses": {k: median(r["losses"][k] for r in rows) for k in rows[0]["losses"]},
           "losses_max": {k: max((r["losses"][k] for r in rows if r["losses"][k] is not None), default=None)
                          for k in rows[0]["losses"]},
           "sections": {s: {k: median(r["sections"][s]["losses"][k] for r in rows)
                            for k in rows[0]["sections"][s]["losses"]} for s in rows[0]["sections"]},
           "median_header_bytes": statistics.median(r["header_bytes"] for r in rows),
           "escapes_median": median(r["totals"]["escapes"] for r in rows),
           "escaped_share_of_coded_median": median(_ratio(r["totals"]["coded_escaped"], r["totals"]["coded"])
                                                   for r in rows)}
    if finer and "finer_tables" in rows[0]:
        out["finer_tables"] = {str(n): {"saving_median": median(r["finer_tables"][str(n)]["saving"] for r in rows),
                                        "y_saving_median": median(r["finer_tables"][str(n)]["y_saving"] for r in rows)}
                               for n in finer}
    total = out["losses"]["total_over_exact"]
    out["meets_target"] = total is not None and out["losses_max"]["total_over_exact"] <= TARGET
    return out


def measure_codec(codec: Codec, images: list, knob_count: int, finer: tuple[int, ...] = ()) -> dict:
    """Every image at every knob point of one codec, and the summary figures."""
    device = next(codec.parameters()).device
    finer = finer if gaussian(codec) else ()
    rows = [measure(codec, name, x.to(device), knobs, finer) for knobs in knob_points(codec, knob_count)
            for name, x in images]
    return {**summarise_codec(rows, finer), "rows": rows}


def _pct(ratio: float | None) -> str:
    return "—" if ratio is None else f"{100 * (ratio - 1):+.2f} %"


def markdown(per_codec: dict) -> str:
    """One Markdown line: the whole overhead over the exact ideal and its scale-table part, per codec."""
    parts = []
    for name, row in per_codec.items():
        if "error" in row:
            parts.append(f"{name} failed")
            continue
        loss = row["losses"]
        text = f"{name} {_pct(loss['total_over_exact'])} (scale table {_pct(loss['scale_table'])})"
        if "finer_tables" in row:
            text += ", finer table saves " + ", ".join(
                f"{100 * v['saving_median']:.2f} % at {n}" for n, v in row["finer_tables"].items())
        parts.append(text)
    return f"Coding overhead over the exact ideal, median [target ≤ {100 * (TARGET - 1):.1f} %]: " + "; ".join(parts)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=[n for n in BENCH_CODECS if n not in SLOW_CODECS],
                        help="names in benchmarks/codecs.py (the lossless ones: run them on small crops)")
    parser.add_argument("--checkpoints", nargs="+", help="trained models instead (ctrlic checkpoints or exported "
                        "codecs; named <sweep>/<run>); --fit-steps and --paper do not apply")
    parser.add_argument("--images", default=str(KODAK4))
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--crop", type=int, default=256, help="top-left crop (0 = whole images)")
    parser.add_argument("--knob-points", type=int, default=3, help="knob settings per controllable codec")
    parser.add_argument("--fit-steps", type=int, default=300, help="brief fit so the priors match the latents")
    parser.add_argument("--scale-levels", type=int, nargs="*", default=[128, 256],
                        help="finer scale tables to measure on the Gaussian codecs")
    parser.add_argument("--paper", action="store_true", help="paper-size models (PAPER_CODECS)")
    parser.add_argument("--device", default="cpu", help="where the networks run (entropy coding is on the CPU)")
    parser.add_argument("--name", default="coding_overhead")
    args = parser.parse_args(argv)
    images = load_images(args.images, args.crop, args.limit)
    per_codec = {}
    for codec_name, build in codecs_to_measure(args.codecs, args.checkpoints, args.fit_steps, args.paper,
                                               args.device):
        try:
            per_codec[codec_name] = measure_codec(build(), images, args.knob_points, tuple(args.scale_levels))
        except Exception as exc:  # one broken codec must not hide the others' figures
            per_codec[codec_name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{codec_name:32s} FAILED: {per_codec[codec_name]['error']}")
            continue
        loss = per_codec[codec_name]["losses"]
        print(f"{codec_name:32s} " + "  ".join(f"{k} {_pct(v)}" for k, v in loss.items()))
    path = write_json(args.name, {"target_ratio": TARGET, "crop": args.crop,
                                  "fit_steps": None if args.checkpoints else args.fit_steps,
                                  "checkpoints": args.checkpoints, "paper_size": args.paper, "device": args.device,
                                  "codecs": per_codec, "markdown": markdown(per_codec)})
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()

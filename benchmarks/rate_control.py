"""Rate control: relative error of target-bpp searches over a grid of targets, and the encodes they took.

For every controllable codec and image, the reachable range is measured at both ends of the rate path;
the targets are spread inside it (``--fractions``), so the figure measures the search, not how far the
knob reaches; the range's span (high / low bpp) is recorded per image. Targets outside the range
(``--outside``: multiples of the low end below 1, of the high end above 1) are searched too and reported
apart: the search must return the nearest end and say the target is out of reach. Each search is
``ctrlic.codecs.rate_search.search_target`` on real bitstreams. ``--checkpoints`` measures trained models
(e.g. a comparison's ``alpha_adapters``, ``gain_units`` and ``qvrf`` jobs, whose knobs span ≥ 3×) instead of
the briefly fitted random ones.
"""

from __future__ import annotations

import argparse
import math

from benchmarks.codecs import KODAK4, codecs_to_measure, load_images, summarise
from benchmarks.common import write_json
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.rate_search import search_target

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: targets beyond the reachable range: half the lowest rate, 1.5× the highest
OUTSIDE = (0.5, 1.5)
#: the CPU set's codecs with a rate knob (CALLIC's knob sets fine-tuning steps, not a rate: left out)
CONTROLLABLE = ("stf+alpha_adapters", "cheng2020_attn+alpha_adapters", "tic+layer_prompts", "control_gic")


def reachable_bpp(codec: Codec, x) -> tuple[float, float]:
    """bpp of the whole file at both ends of the codec's rate path, lowest first."""
    path = codec.control.rate_path()
    ends = (path.points[0], path.points[-1]) if path.discrete else (path.at(0.0), path.at(1.0))
    h, w = x.shape[-2:]
    rates = [8 * len(codec.compress(x, knobs)) / (h * w) for knobs in ends]
    return min(rates), max(rates)


def _search(codec: Codec, name: str, x, target: float, reach: tuple[float, float], tolerance: float,
            max_encodes: int) -> dict:
    found = search_target(codec, x, target, tolerance=tolerance, max_encodes=max_encodes)
    return {"image": name, "target_bpp": target, "bpp": found.bpp, "knobs": found.knobs,
            "relative_error": found.relative_error, "encodes": found.encodes, "in_range": found.in_range,
            "reachable": list(reach), "span": reach[1] / reach[0]}


def search_grid(codec: Codec, name: str, x, fractions, tolerance: float, max_encodes: int,
                outside=()) -> list[dict]:
    """Searches for targets at ``fractions`` of the reachable range, then at the ``outside`` multiples."""
    low, high = reach = reachable_bpp(codec, x)
    targets = [low + f * (high - low) for f in fractions] + [(low if m < 1 else high) * m for m in outside]
    return [_search(codec, name, x, t, reach, tolerance, max_encodes) for t in targets]


def low_high(row: dict) -> tuple[float, float]:
    return row["reachable"][0], row["reachable"][1]


def _summary(rows: list[dict], tolerance: float) -> dict:
    inside = [r for r in rows if low_high(r)[0] <= r["target_bpp"] <= low_high(r)[1]]
    outside = [r for r in rows if r not in inside]
    return {"relative_error": summarise([r["relative_error"] for r in inside]),
            "encodes": summarise([r["encodes"] for r in inside]),
            "within_tolerance": sum(r["relative_error"] <= tolerance for r in inside), "searches": len(inside),
            "span": summarise([r["span"] for r in rows]),
            "outside": {"searches": len(outside), "flagged_out_of_range": sum(not r["in_range"] for r in outside),
                        "returned_nearest_end": sum(_nearest_end(r) for r in outside)} if outside else None,
            "rows": rows}


def _nearest_end(row: dict) -> bool:
    """The search of an unreachable target returned the end of the range next to it (same bytes count)."""
    low, high = low_high(row)
    return math.isclose(row["bpp"], low if row["target_bpp"] < low else high, rel_tol=1e-9)


def markdown(per_codec: dict) -> str:
    """One Markdown line: median/max relative error and median encodes per codec, its span, out-of-range."""
    parts = []
    for name, row in per_codec.items():
        if "error" in row:
            parts.append(f"{name} failed")
            continue
        part = (f"{name} {row['relative_error']['median']:.2%}/{row['relative_error']['max']:.2%} in "
                f"{row['encodes']['median']:.0f} encodes (span {row['span']['min']:.1f}–{row['span']['max']:.1f}×")
        out = row["outside"]
        part += (f"; {out['flagged_out_of_range']}/{out['searches']} targets outside flagged, "
                 f"{out['returned_nearest_end']} at the nearest end)" if out else ")")
        parts.append(part)
    return "Rate control, relative bpp error median/max and median encodes: " + "; ".join(parts)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=list(CONTROLLABLE),
                        help="controllable codecs of benchmarks/codecs.py")
    parser.add_argument("--checkpoints", nargs="+", help="trained controllable models instead (ctrlic checkpoints "
                        "or exported codecs; named <sweep>/<run>)")
    parser.add_argument("--images", default=str(KODAK4))
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--crop", type=int, default=256, help="top-left crop (0 = whole images)")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS),
                        help="targets as fractions of each image's reachable bpp range")
    parser.add_argument("--outside", type=float, nargs="*", default=list(OUTSIDE),
                        help="targets beyond the range: multiples of its low end (< 1) or high end (> 1)")
    parser.add_argument("--tolerance", type=float, default=0.005, help="search_target's relative tolerance")
    parser.add_argument("--max-encodes", type=int, default=20)
    parser.add_argument("--fit-steps", type=int, default=100)
    parser.add_argument("--name", default="rate_control")
    args = parser.parse_args(argv)
    images = load_images(args.images, args.crop, args.limit)
    per_codec = {}
    for codec_name, build in codecs_to_measure(args.codecs, args.checkpoints, args.fit_steps):
        try:
            codec = build()
            rows = [row for name, x in images for row in search_grid(codec, name, x, args.fractions, args.tolerance,
                                                                      args.max_encodes, args.outside)]
        except Exception as exc:  # one broken codec must not hide the others' figures
            per_codec[codec_name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{codec_name:32s} FAILED: {per_codec[codec_name]['error']}")
            continue
        per_codec[codec_name] = row = _summary(rows, args.tolerance)
        print(f"{codec_name:32s} relative error median {row['relative_error']['median']:.4f} max "
              f"{row['relative_error']['max']:.4f}; encodes median {row['encodes']['median']:.0f}; "
              f"span {row['span']['min']:.2f}–{row['span']['max']:.2f}×", flush=True)
    path = write_json(args.name, {"tolerance": args.tolerance, "max_encodes": args.max_encodes,
                                  "fractions": args.fractions, "outside": args.outside, "crop": args.crop,
                                  "fit_steps": None if args.checkpoints else args.fit_steps,
                                  "checkpoints": args.checkpoints, "codecs": per_codec,
                                  "markdown": markdown(per_codec)})
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()

"""Rate control: relative error of target-bpp searches over a grid of targets, and the encodes they took.

For every controllable codec and image, the reachable range is measured at both ends of the rate path;
the targets are spread inside it (``--fractions``), so the figure measures the search, not how far the
knob reaches. Each search is ``ctrlic.codecs.rate_search.search_target`` on real bitstreams.
"""

from __future__ import annotations

import argparse

from benchmarks.codecs import KODAK4, build_bench_codec, load_images, quick_fit, summarise
from benchmarks.common import write_json
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.rate_search import search_target

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: the CPU set's codecs with a rate knob (CALLIC's knob sets fine-tuning steps, not a rate: left out)
CONTROLLABLE = ("stf+alpha_adapters", "cheng2020_attn+alpha_adapters", "tic+layer_prompts", "control_gic")


def reachable_bpp(codec: Codec, x) -> tuple[float, float]:
    """bpp of the whole file at both ends of the codec's rate path, lowest first."""
    path = codec.control.rate_path()
    ends = (path.points[0], path.points[-1]) if path.discrete else (path.at(0.0), path.at(1.0))
    h, w = x.shape[-2:]
    rates = [8 * len(codec.compress(x, knobs)) / (h * w) for knobs in ends]
    return min(rates), max(rates)


def search_grid(codec: Codec, name: str, x, fractions, tolerance: float, max_encodes: int) -> list[dict]:
    low, high = reachable_bpp(codec, x)
    rows = []
    for fraction in fractions:
        target = low + fraction * (high - low)
        found = search_target(codec, x, target, tolerance=tolerance, max_encodes=max_encodes)
        rows.append({"image": name, "target_bpp": target, "bpp": found.bpp, "knobs": found.knobs,
                     "relative_error": found.relative_error, "encodes": found.encodes,
                     "in_range": found.in_range, "reachable": [low, high]})
    return rows


def markdown(per_codec: dict) -> str:
    """One Markdown line: median/max relative error and median encodes per codec."""
    parts = [f"{name} {row['relative_error']['median']:.2%}/{row['relative_error']['max']:.2%} "
             f"in {row['encodes']['median']:.0f} encodes" if "error" not in row else f"{name} failed"
             for name, row in per_codec.items()]
    return "Rate control, relative bpp error median/max and median encodes: " + "; ".join(parts)


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=list(CONTROLLABLE),
                        help="controllable codecs of benchmarks/codecs.py")
    parser.add_argument("--images", default=str(KODAK4))
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--crop", type=int, default=256, help="top-left crop (0 = whole images)")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS),
                        help="targets as fractions of each image's reachable bpp range")
    parser.add_argument("--tolerance", type=float, default=0.005, help="search_target's relative tolerance")
    parser.add_argument("--max-encodes", type=int, default=20)
    parser.add_argument("--fit-steps", type=int, default=100)
    parser.add_argument("--name", default="rate_control")
    args = parser.parse_args(argv)
    images = load_images(args.images, args.crop, args.limit)
    per_codec = {}
    for codec_name in args.codecs:
        try:
            codec = build_bench_codec(codec_name)
            quick_fit(codec, args.fit_steps)
            rows = [row for name, x in images
                    for row in search_grid(codec, name, x, args.fractions, args.tolerance, args.max_encodes)]
        except Exception as exc:  # one broken codec must not hide the others' figures
            per_codec[codec_name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{codec_name:32s} FAILED: {per_codec[codec_name]['error']}")
            continue
        errors = summarise([r["relative_error"] for r in rows])
        encodes = summarise([r["encodes"] for r in rows])
        per_codec[codec_name] = {"relative_error": errors, "encodes": encodes,
                                 "within_tolerance": sum(r["relative_error"] <= args.tolerance for r in rows),
                                 "searches": len(rows), "rows": rows}
        print(f"{codec_name:32s} relative error median {errors['median']:.4f} max {errors['max']:.4f}; "
              f"encodes median {encodes['median']:.0f} max {encodes['max']:.0f}")
    path = write_json(args.name, {"tolerance": args.tolerance, "max_encodes": args.max_encodes,
                                  "fractions": args.fractions, "crop": args.crop, "fit_steps": args.fit_steps,
                                  "codecs": per_codec, "markdown": markdown(per_codec)})
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()

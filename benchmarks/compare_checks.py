"""What a finished comparison shows about its regime (issue #17 item 4), and its summary to commit.

Checks on a comparison's sweep folder: (a) the separately trained anchors' curve is monotone, (b) every
scheme's knob spans at least ``--min-span`` × in bpp, (c) the anchors lie above JPEG at equal bpp over part
of their range. JPEG is measured here on the same evaluation images (imagecodecs, qualities 1–95, points
that add no rate dropped), interpolated linearly in bpp at each anchor's rate, and not extrapolated.
Copies the sweep's ``comparison.csv``, ``summary.md`` and ``summary_rd.png`` to ``--out`` (default
``benchmarks/results/compare_<backbone>/``) and writes ``checks.json`` and ``rd_vs_jpeg.png`` there.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from benchmarks.codecs import KODAK4
from benchmarks.common import RESULTS_DIR, write_json
from benchmarks.compare_regime import by_curve, summarized
from ctrlic.datamodules.image_io import list_images, load_rgb8
from ctrlic.evaluation.classical import rd_curve
from ctrlic.evaluation.plot import plot_rd_panels

#: JPEG's whole quality scale, its lowest rates included (where learned codecs first beat it)
JPEG_QUALITIES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
#: files of the sweep's summary that are committed
SUMMARY_FILES = ("comparison.csv", "summary.md", "summary_rd.png")


def jpeg_curve(images: Path) -> dict:
    """JPEG on ``images`` over ``JPEG_QUALITIES``, keeping only points whose rate rises."""
    curve = rd_curve([load_rgb8(p)[0] for p in list_images(images)], "jpeg", JPEG_QUALITIES, dataset=images.name)
    r = curve["results"]
    keep = [i for i in range(len(r["bpp"])) if i == 0 or r["bpp"][i] > max(r["bpp"][:i])]
    curve["results"] = {k: [v[i] for i in keep] for k, v in r.items()}
    curve["meta"]["qualities_kept"] = [JPEG_QUALITIES[i] for i in keep]
    return curve


def against_jpeg(anchors: dict, jpeg: dict) -> list[dict]:
    """Per anchor point: its PSNR and JPEG's at the same bpp (None outside JPEG's measured range)."""
    bpp, psnr = np.array(jpeg["results"]["bpp"]), np.array(jpeg["results"]["psnr-rgb"])
    rows = []
    for b, p in zip(anchors["results"]["bpp"], anchors["results"]["psnr-rgb"], strict=True):
        inside = bpp[0] <= b <= bpp[-1]
        ref = float(np.interp(b, bpp, psnr)) if inside else None
        rows.append({"bpp": b, "psnr": p, "jpeg_psnr": ref, "above": None if ref is None else p > ref})
    return rows


def checks(comparison: dict, jpeg: dict, min_span: float) -> dict:
    rows, curves = by_curve(comparison)
    anchors = rows.pop("anchors")
    vs_jpeg = against_jpeg(curves["anchors"], jpeg)
    spans = {name: row["bpp_span"] for name, row in rows.items()}
    return {"anchors_monotone": bool(anchors["monotone"]), "anchor_span": anchors["bpp_span"], "knob_spans": spans,
            "min_span": min_span, "every_knob_spans_enough": all(s is not None and s >= min_span for s in spans.values()),
            "anchors_vs_jpeg": vs_jpeg, "anchors_above_jpeg_somewhere": any(r["above"] for r in vs_jpeg),
            "bd_rate_psnr": {name: row["bd_rate_psnr"] for name, row in rows.items()}}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, required=True, help="the comparison's sweep folder")
    parser.add_argument("--backbone", required=True, help="names the output folder compare_<backbone>")
    parser.add_argument("--images", type=Path, default=KODAK4, help="the comparison's evaluation images")
    parser.add_argument("--min-span", type=float, default=3.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or RESULTS_DIR / f"compare_{args.backbone}"
    comparison = summarized(args.sweep)["comparison"]
    out.mkdir(parents=True, exist_ok=True)
    for name in SUMMARY_FILES:
        shutil.copyfile(args.sweep / name, out / name)
    jpeg = jpeg_curve(args.images)
    result = checks(comparison, jpeg, args.min_span)
    plot = plot_rd_panels(comparison["curves"], out / "rd_vs_jpeg.png", ["psnr-rgb", "ms-ssim-rgb"], [jpeg],
                          title=f"{args.backbone}: every scheme, the anchors and JPEG on {args.images.name}")
    above = [r for r in result["anchors_vs_jpeg"] if r["above"]]
    line = (f"compare {args.backbone}: anchors monotone {result['anchors_monotone']} (span "
            f"{result['anchor_span']:.2f}×); knob spans " + ", ".join(f"{k} {v:.2f}×" for k, v in
                                                                       result["knob_spans"].items())
            + f"; anchors above JPEG at {len(above)} of {len(result['anchors_vs_jpeg'])} points")
    return write_json("checks", {"sweep": str(args.sweep), "images": str(args.images), "jpeg": jpeg, **result,
                                 "plot": str(plot), "markdown": line}, out)


if __name__ == "__main__":
    main()

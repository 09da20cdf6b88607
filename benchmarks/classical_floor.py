"""Classical codecs as a floor: JPEG, WebP, AVIF and JPEG XL RD curves, and the lossless bpsp table.

Curves are written in CompressAI's results format (one file per codec under ``results/classical/``) so
they plot beside the learned codecs; ``--reference-dir ctrlic/reference_curves/kodak`` also installs
them as reference curves (``imagecodecs__<codec>.json``), which every RD plot of that dataset shows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.codecs import KODAK4
from benchmarks.common import RESULTS_DIR, write_json
from benchmarks.import_reference_curves import MEASURED_PREFIX
from ctrlic.datamodules.image_io import list_images, load_rgb8
from ctrlic.evaluation.classical import (
    DEFAULT_QUALITIES,
    LOSSLESS_CODECS,
    LOSSY_CODECS,
    lossless_table,
    rd_curve,
    versions,
)
from ctrlic.evaluation.results import write_results

#: file-name prefix of the reference curves this script installs (a re-import keeps them)
REFERENCE_PREFIX = MEASURED_PREFIX


def markdown(dataset: str, table: dict[str, float], curves: dict[str, dict]) -> str:
    """One Markdown line: lossless bpsp per codec and each lossy curve's bpp/PSNR span."""
    lossless = ", ".join(f"{codec} {bpsp:.3f}" for codec, bpsp in table.items())
    lossy = ", ".join(f"{codec} {c['results']['bpp'][0]:.2f}–{c['results']['bpp'][-1]:.2f} bpp / "
                      f"{c['results']['psnr-rgb'][0]:.1f}–{c['results']['psnr-rgb'][-1]:.1f} dB"
                      for codec, c in curves.items())
    return f"Classical floor on {dataset}: lossless bpsp {lossless or '-'}; lossy {lossy or '-'}"


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(KODAK4))
    parser.add_argument("--dataset", default="kodak4", help="recorded in each curve's meta")
    parser.add_argument("--lossy", nargs="*", default=list(LOSSY_CODECS), choices=LOSSY_CODECS)
    parser.add_argument("--lossless", nargs="*", default=list(LOSSLESS_CODECS), choices=LOSSLESS_CODECS)
    parser.add_argument("--qualities", type=int, nargs="+", default=list(DEFAULT_QUALITIES))
    parser.add_argument("--reference-dir", type=Path, default=None,
                        help="also write the curves there as reference curves")
    parser.add_argument("--name", default="classical_floor")
    args = parser.parse_args(argv)
    images = [load_rgb8(path)[0] for path in list_images(args.images)]
    curves, seconds = {}, {}
    curve_dir = RESULTS_DIR / args.name
    for codec in args.lossy:
        start = time.perf_counter()
        curves[codec] = rd_curve(images, codec, args.qualities, dataset=args.dataset)
        seconds[codec] = time.perf_counter() - start
        write_results(curve_dir / f"{codec}.json", curves[codec])
        if args.reference_dir is not None:
            write_results(args.reference_dir / f"{REFERENCE_PREFIX}{codec}.json", curves[codec])
        bpp, psnr = curves[codec]["results"]["bpp"], curves[codec]["results"]["psnr-rgb"]
        print(f"{codec:8s} {bpp[0]:.3f}–{bpp[-1]:.3f} bpp, {psnr[0]:.2f}–{psnr[-1]:.2f} dB ({seconds[codec]:.0f} s)")
    table = lossless_table(images, args.lossless) if args.lossless else {}
    for codec, bpsp in table.items():
        print(f"lossless {codec:9s} {bpsp:.3f} bpsp")
    path = write_json(args.name, {"images": args.images, "num_images": len(images), "dataset": args.dataset,
                                  "versions": versions(), "lossless_bpsp": table, "lossy": curves,
                                  "lossy_seconds": seconds, "markdown": markdown(args.dataset, table, curves)})
    print(f"results: {path} (curves under {curve_dir})")
    return path


if __name__ == "__main__":
    main()

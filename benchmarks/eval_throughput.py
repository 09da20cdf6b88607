"""Evaluation throughput: images per second of ``evaluate`` with 1, 2, … coding worker processes (issue #19).

One trained codec (``--checkpoint``: a ctrlic checkpoint or exported codec, e.g. a comparison's
``alpha_adapters/checkpoints/last.ckpt``) codes every image of a folder at ``--points`` knob settings,
real bitstreams, once per worker count (``eval.workers``), one torch thread per worker (``eval.threads=1``,
so the results are bit-identical across worker counts, which is checked). The figure is the wall time of
the whole ``evaluate`` call, worker start-up and the merge into one ``results.json`` included; each
count is timed ``--repeats`` times (median), in a fresh output folder, so nothing is reused.
Writes ``benchmarks/results/eval_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_json
from ctrlic.datamodules.eval_images import EvalImages
from ctrlic.datamodules.image_io import list_images
from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.settings import SweepSettings
from ctrlic.lightning_modules.checkpoint import open_codec

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
#: what differs between equal evaluations: the clock
TIMINGS = ("encoding_time", "decoding_time")


def timed_evaluation(checkpoint: str, images: EvalImages, workers: int, points: int, out: Path) -> tuple[float, dict]:
    """Seconds of one evaluation with ``workers`` processes, and its results without the timings."""
    codec = open_codec(checkpoint)
    settings = SweepSettings(max_points=points, workers=workers, threads=1, save_bitstreams=False,
                             bd_reference=None, report={"enabled": False})
    start = time.perf_counter()
    evaluate(codec, {"images": images}, out, settings)
    seconds = time.perf_counter() - start
    results = json.loads((out / "results.json").read_text())["results"]
    return seconds, {k: v for k, v in results.items() if k not in TIMINGS}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a ctrlic checkpoint or exported codec")
    parser.add_argument("--images", type=Path, default=KODAK, help="folder of images (default: the 24 Kodak)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--points", type=int, default=3, help="knob settings per image")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--name", default="eval_throughput")
    args = parser.parse_args(argv)
    files = list_images(args.images) if args.images.is_dir() else []
    if not files:
        raise SystemExit(f"no images in {args.images}; point --images at a folder of PNG/JPEG files")
    images = EvalImages(files, args.images)
    rows, reference = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            runs = []
            for repeat in range(args.repeats):
                seconds, results = timed_evaluation(args.checkpoint, images, workers, args.points,
                                                    Path(tmp) / f"w{workers}_{repeat}")
                reference = reference or results
                if results != reference:
                    raise SystemExit(f"eval.workers={workers} gave other results than eval.workers={args.workers[0]}")
                runs.append(seconds)
                print(f"workers={workers} run {repeat + 1}: {seconds:.1f} s", flush=True)
            median = statistics.median(runs)
            rows[str(workers)] = {"seconds": median, "runs_s": runs, "images_per_s": len(files) / median,
                                  "codings_per_s": len(files) * args.points / median}
    base = rows[str(args.workers[0])]["seconds"]
    for row in rows.values():
        row["speedup"] = base / row["seconds"]
    line = (f"evaluation of {len(files)} images × {args.points} knob points ({Path(args.checkpoint).parent.parent.name}"
            f"): " + ", ".join(f"{w} worker{'s' if w != '1' else ''} {r['images_per_s']:.2f} images/s "
                               f"({r['speedup']:.2f}×)" for w, r in rows.items()))
    return write_json(args.name, {"checkpoint": args.checkpoint, "images": str(args.images), "num_images": len(files),
                                  "points": args.points, "repeats": args.repeats, "threads_per_worker": 1,
                                  "results_identical": True, "workers": rows, "markdown": line})


if __name__ == "__main__":
    main()

"""The one evaluation entry point: every knob setting of a codec on named image sets, with real bitstreams.

Used by the end-of-training callback, ``task=eval`` and ``ctrlic eval``. Lossy codecs get an RD sweep
(``lossy``), lossless ones a bpsp sweep beside the classical codecs (``lossless``); either way each set
writes ``results[_<set>].json``, ``per_image[_<set>].csv`` and a plot, and goes to the loggers; then
``report.html`` shows them all (``report``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rich.progress import Progress

from ctrlic.codecs.codec import Codec
from ctrlic.evaluation import lossless, lossy
from ctrlic.evaluation.files import set_file, write_csv
from ctrlic.evaluation.loggers import log_report, log_results
from ctrlic.evaluation.report import build_report
from ctrlic.evaluation.results import write_results
from ctrlic.evaluation.settings import SweepSettings, sweep_points

log = logging.getLogger("ctrlic")


def evaluate(codec: Codec, sets: Mapping[str, Sequence[Mapping]], out_dir: str | Path, settings: SweepSettings,
             loggers: Iterable = (), step: int = 0) -> dict[str, dict]:
    """Code every image of every set at every knob setting on the CPU; returns {set name: results}.

    ``sets`` maps names to re-iterable collections of ``{"x": (1, 3, H, W), "name": str}`` items.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codec = codec.cpu()
    previous = codec.options
    codec.set_options(**settings.coding_options())
    try:
        return _evaluate(codec, sets, out_dir, settings, list(loggers), step)
    finally:
        codec.options = previous


def _evaluate(codec: Codec, sets: Mapping[str, Sequence[Mapping]], out_dir: Path, settings: SweepSettings,
              loggers: list, step: int) -> dict[str, dict]:
    codec.prepare()
    kind = lossless if codec.lossless else lossy
    prefix = "lossless" if codec.lossless else "rd"
    points = sweep_points(codec, settings)
    outputs = {}
    with Progress(transient=True) as progress:
        for n, (set_name, images) in enumerate(sets.items()):
            task = progress.add_task(f"evaluating {set_name}", total=len(points) * len(images))
            results, rows = kind.evaluate_set(codec, images, points, out_dir, set_name, settings,
                                              lambda task=task: progress.advance(task))
            path = write_results(set_file(out_dir, "results", ".json", n, set_name), results)
            write_csv(set_file(out_dir, "per_image", ".csv", n, set_name), rows)
            plot = kind.plot(results, set_file(out_dir, "rd" if kind is lossy else "bpsp", ".png", n, set_name),
                             settings)
            log_results(loggers, results, plot, prefix=f"{prefix}/{set_name}", step=step)
            log.info("%s on %s (%s): %s", kind.SWEEP, set_name, codec.name, kind.describe(results))
            log.info("results: %s, plot: %s", path, plot)
            outputs[set_name] = results
    log_report(loggers, build_report(codec, sets, out_dir, settings))
    return outputs

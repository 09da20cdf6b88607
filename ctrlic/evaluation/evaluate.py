"""The one evaluation entry point: every knob setting of a codec on named image sets, with real bitstreams.

Used by the end-of-training callback, ``task=eval`` and ``ctrlic eval``. Lossy codecs get an RD sweep
(``lossy``), lossless ones a bpsp sweep beside the classical codecs (``lossless``). Every image is coded
into per-image records first (``records``; in this process, in ``eval.workers`` processes, or for one
``eval.shard`` of a multirun: ``sharding``), then each set's results are merged from the records alone:
``results[_<set>].json``, ``per_image[_<set>].csv`` and a plot, sent to the loggers, and ``report.html``.
A rerun reuses the records it finds, so a killed evaluation continues where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rich.progress import Progress

from ctrlic.codecs.codec import Codec
from ctrlic.errors import UserError
from ctrlic.evaluation import lossless, lossy, sharding
from ctrlic.evaluation.files import set_file, write_csv
from ctrlic.evaluation.loggers import log_report, log_results
from ctrlic.evaluation.records import RECORDS, RecordStore, SetJob, codec_key, digest
from ctrlic.evaluation.report import build_report
from ctrlic.evaluation.results import load_results, write_results
from ctrlic.evaluation.settings import SweepSettings, sweep_points
from ctrlic.utils.threads import torch_threads

log = logging.getLogger("ctrlic")
MERGE_MODES = ("auto", "only", "never")


class MergeModeError(UserError):
    """An ``eval.merge`` value that is not a merge mode, or ``eval.merge=only`` before every shard is done."""


class EmptySetError(UserError):
    """An evaluation set that holds no image: there would be no RD point to merge."""


def evaluate(codec: Codec, sets: Mapping[str, Sequence[Mapping]], out_dir: str | Path, settings: SweepSettings,
             loggers: Iterable = (), step: int = 0) -> dict[str, dict]:
    """Code every image of every set at every knob setting on the CPU; returns {set name: results}.

    ``sets`` maps names to indexable collections (or DataLoaders over them) of ``{"x": (1, 3, H, W) or
    (3, H, W), "name": str}`` items. Returns {} when this job merges nothing (``eval.merge=never``, or other
    shards' records are still missing); a shard run again after the merge returns the merged results.
    """
    shard = _checked(settings)
    _check_sets(sets)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codec = codec.cpu()
    previous = codec.options
    codec.set_options(**settings.coding_options())
    try:
        return _evaluate(codec, sets, out_dir, settings, list(loggers), step, shard)
    finally:
        codec.options = previous


def _evaluate(codec: Codec, sets: Mapping[str, Sequence[Mapping]], out_dir: Path, settings: SweepSettings,
              loggers: list, step: int, shard: tuple[int, int]) -> dict[str, dict]:
    codec.prepare()
    kind = lossless if codec.lossless else lossy
    points = sweep_points(codec, settings)
    datasets = {name: sharding.dataset_of(images) for name, images in sets.items()}
    store = RecordStore(Path(settings.records) if settings.records else out_dir / RECORDS)
    keys = [codec_key(codec, kind.KIND, kind.measured(settings), p) for p in points]
    jobs = {name: SetJob(name, points, keys, store, out_dir, settings.save_bitstreams) for name in datasets}
    if settings.merge != "only":
        _code(kind, codec, datasets, jobs, points, store, settings, shard)
    if settings.merge == "never":
        return {}
    state = digest({"out": str(out_dir.resolve()), "sets": {name: [keys, len(data)] for name, data in datasets.items()}})
    with store.merge_lock():
        # this job checked the content of the images it coded; a merge of others' records reads them again
        others = settings.merge == "only" or shard[1] > 1
        missing = {name: jobs[name].missing(data, check_content=others) for name, data in datasets.items()}
        if any(missing.values()) and settings.merge == "only":
            raise MergeModeError(f"eval.merge=only: {sum(missing.values())} image(s) have no records in {store.root} "
                                 "made by this model with these settings of these images: run the shards that code "
                                 "them first")
        if any(missing.values()):
            log.info("records of %d image(s) are missing in %s, or were made by another model or settings or of "
                     "other image content (other shards not done?): no results yet; the last shard to finish merges "
                     "them, or merge later with eval.merge=only", sum(missing.values()), store.root)
            return {}
        done = shard[1] > 1 and settings.merge == "auto" and store.merged(state)
        merged = _merged_results(datasets, out_dir) if done else None
        if merged is not None:
            log.info("another shard merged these records already: the results are in %s", out_dir)
            return merged
        outputs = _merge(kind, codec, sets, datasets, jobs, out_dir, settings, list(loggers), step)
        store.mark_merged(state)
        return outputs


def _merged_results(datasets: Mapping, out_dir: Path) -> dict[str, dict] | None:
    """The results an earlier merge of the same records wrote (None if one of its files is gone: merge again)."""
    paths = {name: set_file(out_dir, "results", ".json", n, name) for n, name in enumerate(datasets)}
    return {name: load_results(path) for name, path in paths.items()} if all(p.is_file() for p in paths.values()) else None


def _checked(settings: SweepSettings) -> tuple[int, int]:
    """The settings that could stop the evaluation half-way, checked before any coding; returns the shard."""
    if settings.merge not in MERGE_MODES:
        raise MergeModeError(f"eval.merge={settings.merge!r}: choose one of {', '.join(MERGE_MODES)}")
    sharding.worker_count(settings)
    return sharding.parse_shard(settings.shard)


def _check_sets(sets: Mapping[str, Sequence]) -> None:
    """Every set holds an image (an empty one would end in a merge of no rows); no set at all is no evaluation."""
    empty = [name for name, images in sets.items() if len(sharding.dataset_of(images)) == 0]
    if empty:
        raise EmptySetError(f"evaluation set(s) {', '.join(map(repr, empty))} hold no image: "
                            "point each set at a folder of PNG/JPEG images, or drop it")


def _code(kind, codec: Codec, datasets: Mapping, jobs: Mapping[str, SetJob], points: list[dict],
          store: RecordStore, settings: SweepSettings, shard: tuple[int, int]) -> None:
    """This job's images into records: here, or in worker processes."""
    units = sharding.plan(datasets, shard)
    workers = sharding.worker_count(settings)
    total = len(units) * len(points)
    where = f"shard {shard[0]}/{shard[1]}: " if shard[1] > 1 else ""
    log.info("%scoding %d image(s) at %d knob setting(s) into %s (%d worker(s); existing records are reused)",
             where, len(units), len(points), store.root, workers)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"{kind.SWEEP}: coding", total=total)
        if workers > 1:
            start = store.count()
            sharding.run_workers(kind, codec, datasets, jobs, units, settings, workers,
                                 lambda: progress.update(task, completed=min(total, store.count() - start)))
            return
        coded = 0

        def advance(n: int) -> None:
            nonlocal coded
            coded += n
            progress.advance(task, len(points))

        with torch_threads(settings.threads):
            sharding.code_units(kind, codec, datasets, jobs, units, settings, sharding.worker_device(settings, 0),
                                advance)
    log.info("%s%d record(s) coded, %d reused", where, coded, total - coded)


def _merge(kind, codec: Codec, sets: Mapping, datasets: Mapping, jobs: Mapping[str, SetJob], out_dir: Path,
           settings: SweepSettings, loggers: list, step: int) -> dict[str, dict]:
    """Each set's results from its records: files, plots, loggers, then the report."""
    prefix = "lossless" if kind is lossless else "rd"
    outputs = {}
    for n, (set_name, data) in enumerate(datasets.items()):
        results, rows = kind.merge_set(codec, jobs[set_name], len(data), settings)
        path = write_results(set_file(out_dir, "results", ".json", n, set_name), results)
        write_csv(set_file(out_dir, "per_image", ".csv", n, set_name), rows)
        plot = kind.plot(results, set_file(out_dir, "rd" if kind is lossy else "bpsp", ".png", n, set_name), settings)
        log_results(loggers, results, plot, prefix=f"{prefix}/{set_name}", step=step)
        log.info("%s on %s (%s): %s", kind.SWEEP, set_name, codec.name, kind.describe(results))
        log.info("results: %s, plot: %s", path, plot)
        outputs[set_name] = results
    log_report(loggers, build_report(codec, sets, out_dir, settings))
    return outputs

"""Which images this evaluation codes, and in how many processes: shards across jobs, workers on one machine.

Images are units: image ``k`` of the run (counted over the sets in order) belongs to shard ``k mod n`` of
``eval.shard=i/n``. The units of this job are dealt to ``eval.workers`` processes (round robin; one per GPU
when GPUs are present, each with its own metrics device), or coded in this process when there is one.
Each unit writes its records (``evaluation.records``), skipping those a former run left, so a rerun of a
killed evaluation codes only what is missing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

import torch

from ctrlic.codecs.build import load_codec
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.codec_file import CODEC_FORMAT
from ctrlic.errors import UserError
from ctrlic.evaluation import lossless, lossy
from ctrlic.evaluation.records import SetJob
from ctrlic.evaluation.settings import SweepSettings
from ctrlic.utils.threads import torch_threads

log = logging.getLogger("ctrlic")

KINDS: dict[str, ModuleType] = {lossy.KIND: lossy, lossless.KIND: lossless}


class ShardError(UserError):
    """An ``eval.shard``, ``eval.workers`` or ``eval.threads`` value that cannot work."""


@dataclass(frozen=True)
class Unit:
    """One image of one set."""

    set_name: str
    index: int


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 ≤ i < n; None → (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ShardError(f"eval.shard={text!r}: write it as i/n, e.g. eval.shard=0/4 (job i of n)") from None
    if n < 1 or not 0 <= i < n:
        raise ShardError(f"eval.shard={text!r}: needs 0 <= i < n, e.g. 0/{max(n, 2)} … {max(n, 2) - 1}/{max(n, 2)}")
    return i, n


def dataset_of(images):
    """The indexable dataset behind an evaluation set (a DataLoader's ``dataset``, or the collection itself)."""
    return getattr(images, "dataset", images)


def plan(datasets: Mapping[str, Sequence], shard: tuple[int, int]) -> list[Unit]:
    """The images this shard codes, in set order."""
    i, n = shard
    units = [Unit(name, index) for name, data in datasets.items() for index in range(len(data))]
    return units[i::n]


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_count(settings: SweepSettings) -> int:
    """``eval.workers``, or one per GPU (at least one) when unset."""
    workers = settings.workers if settings.workers is not None else max(1, gpu_count())
    if workers < 1:
        raise ShardError(f"eval.workers={workers}: give at least 1 (or null: one per GPU)")
    if settings.threads is not None and settings.threads < 1:
        raise ShardError(f"eval.threads={settings.threads}: give at least 1 (or null: torch's default)")
    return workers


def worker_device(settings: SweepSettings, worker: int) -> str | None:
    """Worker ``worker``'s metrics device: its own GPU when there are GPUs (unless ``metrics_device`` is set)."""
    gpus = gpu_count()
    if settings.metrics_device is None and gpus:
        return f"cuda:{worker % gpus}"
    return settings.metrics_device


def code_units(kind: ModuleType, codec: Codec, datasets: Mapping[str, Sequence], jobs: Mapping[str, SetJob],
               units: Sequence[Unit], settings: SweepSettings, device: str | None,
               advance: Callable[[int], None] = lambda coded: None) -> int:
    """Code ``units`` in this process; returns the number of records written (the others existed)."""
    tools = kind.Tools(settings, device)
    coded = 0
    for unit in units:
        n = kind.code_unit(codec, jobs[unit.set_name], unit.index, datasets[unit.set_name][unit.index], tools)
        coded += n
        advance(n)
    return coded


def portable(codec: Codec) -> dict:
    """The codec as an exported codec file's contents (architecture, weights, fingerprint) plus its coding
    options: what a worker process rebuilds it from (modules themselves do not always pickle)."""
    if not codec.arch:
        raise ShardError("eval.workers > 1 needs a codec built from config (a checkpoint, an exported codec or "
                         "build_codec); this one records no architecture: use eval.workers=1")
    return {"format": CODEC_FORMAT, "arch": codec.arch, "fingerprint": codec.fingerprint.hex(),
            "state_dict": {k: v.detach().cpu() for k, v in codec.backbone.state_dict().items()},
            "options": codec.options.plain()}


def _worker(kind_name: str, exported: dict, datasets: Mapping[str, Sequence], jobs: Mapping[str, SetJob],
            units: Sequence[Unit], settings: SweepSettings, device: str | None, threads: int | None,
            errors) -> None:
    """A worker process: its units, with its own threads and metrics device; an error goes to ``errors``."""
    try:
        with torch.no_grad(), torch_threads(threads):
            codec = load_codec(exported, "the evaluated codec")
            codec.set_options(**exported["options"])
            code_units(KINDS[kind_name], codec, datasets, jobs, units, settings, device)
    except BaseException as exc:
        errors.put(f"{type(exc).__name__}: {exc}")
        raise SystemExit(1) from None


def run_workers(kind: ModuleType, codec: Codec, datasets: Mapping[str, Sequence], jobs: Mapping[str, SetJob],
                units: Sequence[Unit], settings: SweepSettings, workers: int,
                progress: Callable[[], None] = lambda: None) -> None:
    """Deal ``units`` to ``workers`` spawned processes and wait for all of them.

    Threads per worker: ``eval.threads``, else the machine's cores shared out. A worker that fails or is
    killed fails the evaluation; the records written so far stay, so a rerun continues.
    """
    threads = settings.threads or max(1, (os.cpu_count() or 1) // workers)
    exported = portable(codec)
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    processes = [context.Process(target=_worker, name=f"ctrlic-eval-{w}", daemon=False,
                                 args=(kind.KIND, exported, datasets, jobs, units[w::workers], settings,
                                       worker_device(settings, w), threads, errors))
                 for w in range(workers) if units[w::workers]]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            progress()
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
    progress()
    failed = [p for p in processes if p.exitcode != 0]
    if failed:
        reasons = []
        while not errors.empty():
            reasons.append(errors.get())
        why = "; ".join(reasons) or f"exit code {failed[0].exitcode}"
        raise RuntimeError(f"{len(failed)} of {len(processes)} evaluation workers failed ({why}); the records "
                           "written so far are kept: rerun the same command to continue")

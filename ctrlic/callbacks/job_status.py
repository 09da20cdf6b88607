"""Hydra callback: every multirun job records whether it is running, completed or failed (job_status.json),
so that a job waiting for it (``after.job_dir``, utils.job_dependency) stops at once when it failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from ctrlic.utils.job_dependency import STATUS


def _write(status: str, error: str | None = None) -> None:
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return
    out = Path(hydra.runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{STATUS}.tmp"
    tmp.write_text(json.dumps({"status": status, "error": error}))
    tmp.replace(out / STATUS)


class JobStatusFile(Callback):
    """``<job dir>/job_status.json``: RUNNING from the job's start, then COMPLETED or FAILED (with the error).

    A job stopped by a signal (Slurm's time limit, then requeued) records nothing more; its next start
    writes RUNNING again.
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        _write("RUNNING")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        failed = job_return.status == JobStatus.FAILED
        error = f"{type(job_return._return_value).__name__}: {job_return._return_value}" if failed else None
        _write(job_return.status.name, error)

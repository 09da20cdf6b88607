"""A job that starts from another job's model (experiment=compare: the variable-rate schemes start from the
anchor of the same multirun) waits until that job has finished, so any launcher can run them: one after
another (the anchors first in the sweep), in parallel (submitit_local, Slurm) or in two multiruns."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from ctrlic.errors import UserError

#: what a finished training leaves in its run directory (tasks.train)
DONE = "final_metrics.json"
#: what the job-status Hydra callback writes into a multirun job's directory
STATUS = "job_status.json"

log = logging.getLogger("ctrlic")


class DependencyError(UserError):
    """The job this run starts from failed, or did not finish in time."""


def job_status(job_dir: str | Path) -> dict:
    """The status a multirun job recorded (``{}`` when none, e.g. a run outside a multirun)."""
    path = Path(job_dir) / STATUS
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def wait_for_job(after: Mapping | None, sleep=time.sleep, clock=time.monotonic) -> None:
    """Return once ``after.job_dir`` holds a finished training; stop with one line if that job failed or
    ``after.timeout_min`` passed. ``after.job_dir`` null: return at once."""
    job_dir = (after or {}).get("job_dir")
    if not job_dir:
        return
    job_dir = Path(job_dir)
    deadline = clock() + 60 * float(after.get("timeout_min", 1440))
    waiting = False
    while not (job_dir / DONE).is_file():
        status = job_status(job_dir)
        if status.get("status") == "FAILED":
            raise DependencyError(f"the job this run starts from failed ({job_dir}: {status.get('error')}); "
                                  "fix and rerun it, then this one")
        if clock() >= deadline:
            raise DependencyError(f"{job_dir / DONE} did not appear within after.timeout_min="
                                  f"{after.get('timeout_min')}: the job this run starts from has not finished; "
                                  "run it first or raise the timeout")
        if not waiting:
            log.info("waiting for %s to finish training (after.job_dir)", job_dir)
            waiting = True
        sleep(float(after.get("poll_s", 10)))

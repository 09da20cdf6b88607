"""``resume=auto``: continue from the newest checkpoint of the run directory (Slurm requeue, crashes)."""

from __future__ import annotations

import logging
from pathlib import Path

from ctrlic.errors import UserError
from ctrlic.utils.checkpoint_io import PARTIAL_PREFIX

log = logging.getLogger("ctrlic")

RESUME_MODES = ("auto", "never")


class ResumeError(UserError):
    """``resume`` has a value that is not a resume mode."""


def newest_checkpoint(run_dir: str | Path) -> Path | None:
    """The most recently written ``*.ckpt`` under ``<run_dir>/checkpoints`` (partial saves ignored)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    found = [p for p in folder.glob("*.ckpt") if p.is_file() and not p.name.startswith(PARTIAL_PREFIX)]
    return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name), default=None)


def checkpoint_to_resume(resume: str | None, ckpt_path: str | None, run_dir: str | Path) -> str | None:
    """The checkpoint ``trainer.fit`` starts from.

    ``resume=auto``: the run directory's newest checkpoint, else ``ckpt_path`` (a fresh start when
    neither exists), so a requeued or restarted job continues where it stopped. ``never``/null:
    ``ckpt_path`` only.
    """
    mode = "never" if resume is None else str(resume)
    if mode not in RESUME_MODES:
        raise ResumeError(f"resume={resume!r} is not a resume mode; use resume=auto (newest checkpoint of"
                          f" the run directory) or resume=never")
    if mode == "auto":
        newest = newest_checkpoint(run_dir)
        if newest is not None:
            log.info("resume=auto: continuing from %s", newest)
            return str(newest)
        log.info("resume=auto: no checkpoint in %s yet, %s", Path(run_dir) / "checkpoints",
                 f"starting from {ckpt_path}" if ckpt_path else "starting fresh")
    return str(ckpt_path) if ckpt_path else None

"""One training per run directory: an exclusive lock that the kernel drops when its process ends.

Two trainings in one ``hydra.run.dir`` would write the same checkpoints and logs (the Hydra callback
``callbacks.run_lock`` takes this lock). ``fcntl.flock`` on an open file is released however its holder
ends (also SIGKILL), so a crashed run never blocks the next one; only the global-rank-0 process takes
it (DDP ranks share the directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only

from ctrlic.errors import UserError

LOCK_NAME = ".train.lock"


class RunDirBusyError(UserError):
    """Another training holds the run directory."""


@contextlib.contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``<run_dir>/.train.lock`` while the block runs; refuse at once if another process holds it."""
    if getattr(rank_zero_only, "rank", 0) != 0:
        yield
        return
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunDirBusyError(f"{run_dir} is in use by another training ({holder}); wait for it to end, or "
                                  "train into another directory (hydra.run.dir=...)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        yield  # closing the file releases the lock

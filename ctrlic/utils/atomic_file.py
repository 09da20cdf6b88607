"""Files written whole or not at all: a temporary file in the target's folder, renamed over the target.

The rename is atomic on POSIX file systems, so the target always holds a whole file, the old one or
the new one (SIGKILL, node failure, Slurm time-out). The new file gets the mode a plain ``open``
would give it under the user's umask (``mkstemp`` alone makes it private to the owner).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def umask_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(target: str | os.PathLike, prefix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; once the block has written it, it replaces ``target``
    (mode from the umask, data and rename flushed to disk). On any error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{prefix}{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, umask_mode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

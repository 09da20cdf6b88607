"""One training per run directory: a second one into a directory another training holds stops in one line."""

from __future__ import annotations

import os
import signal
import time

from ctrlic.utils.run_lock import LOCK_NAME, run_dir_lock
from tests import forked
from tests.conftest import SMOKE, run_cli


def test_second_training_into_the_same_run_dir_is_refused(tmp_path):
    first = forked.start("run.py", [*SMOKE, "trainer.max_steps=100000", "trainer.val_check_interval=100000",
                                    f"hydra.run.dir={tmp_path}"], env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        deadline = time.monotonic() + 300
        written = tmp_path / ".hydra" / "overrides.yaml"  # Hydra writes it after config.yaml
        while not (tmp_path / LOCK_NAME).is_file() or \
                not (tmp_path / LOCK_NAME).read_text().startswith(f"pid {first.pid} ") or \
                not (written.is_file() and written.stat().st_size):
            assert first.poll() is None, "the first training ended before it took the lock"
            assert time.monotonic() < deadline, "the first training never took the lock"
            time.sleep(0.5)
        config_before = (tmp_path / ".hydra" / "config.yaml").read_bytes()
        second = run_cli(*SMOKE, "seed=7", f"hydra.run.dir={tmp_path}", check=False)
        out = second.stdout + second.stderr
        assert second.returncode == 2 and "Traceback" not in out, out[-4000:]
        lines = [line for line in out.splitlines() if "in use by another training" in line]
        assert len(lines) == 1 and f"pid {first.pid} " in lines[0], out[-4000:]
        assert first.poll() is None  # the first keeps training
        assert (tmp_path / ".hydra" / "config.yaml").read_bytes() == config_before  # nor were its files touched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with run_dir_lock(tmp_path):  # a killed holder leaves no stale lock
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} ")

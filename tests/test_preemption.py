"""Slurm's pre-timeout signal outside Slurm: USR2 to a training run checkpoints after the step, ends
the run as USR2 would, and ``resume=auto`` continues from that step (the Slurm path: tests/slurm)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time

import pytest
import torch

from ctrlic.callbacks.preemption import PREEMPTED_CHECKPOINT, hand_over_signal
from tests import forked
from tests.conftest import SMOKE, run_cli
from tests.helpers_resume import by_step, read_steps

MAX_STEPS = 6


def _overrides(run_dir, record, delay_s: float) -> list[str]:
    return [*SMOKE, "callbacks.rd_sweep=null", f"trainer.max_steps={MAX_STEPS}",
            f"trainer.val_check_interval={MAX_STEPS}", "data.val_limit=1", "data.val_crop=64",
            f"+callbacks.recorder={{_target_:tests.helpers_resume.StepRecorder,path:'{record}',delay_s:{delay_s}}}",
            "resume=auto", f"hydra.run.dir={run_dir}"]


def test_usr2_checkpoints_after_the_step_ends_the_run_and_resume_continues_there(tmp_path):
    run_dir, record = tmp_path / "run", tmp_path / "steps.jsonl"
    proc = forked.start("run.py", _overrides(run_dir, record, delay_s=1.0),
                        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if record.exists() and any(e["step"] >= 1 for e in read_steps(record)):
            proc.send_signal(signal.SIGUSR2)
            break
        time.sleep(0.05)
    ended = proc.wait(timeout=120)
    assert ended.returncode == -signal.SIGUSR2, f"the run did not end on USR2 ({ended.returncode}): {ended.stderr[-3000:]}"
    saved = torch.load(run_dir / "checkpoints" / PREEMPTED_CHECKPOINT, map_location="cpu", weights_only=False)
    k = saved["global_step"]
    entries = read_steps(record)
    assert sorted(by_step(entries, proc.pid, "end")) == list(range(k)) and 1 <= k < MAX_STEPS
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()  # written only at the last step

    run_cli(*_overrides(run_dir, record, delay_s=0.0))
    resumed = read_steps(record)[len(entries)]["pid"]
    assert sorted(by_step(read_steps(record), resumed, "start")) == list(range(k, MAX_STEPS))


def test_a_requeue_whose_scontrol_slurm_ends_with_sigterm_exits_as_a_requeue(caplog):
    """Slurm's SIGTERM to the job can reach the `scontrol requeue` that asked for it before it exits: that is an
    accepted requeue (exit as submitit does after one), while any other failure of the handler stays a failure."""
    def requeue_killed(signum, frame):
        raise subprocess.CalledProcessError(-signal.SIGTERM, ["scontrol", "requeue", "3"])

    def requeue_refused(signum, frame):
        raise subprocess.CalledProcessError(1, ["scontrol", "requeue", "3"])

    with caplog.at_level(logging.WARNING, logger="ctrlic"), pytest.raises(SystemExit) as ended:
        hand_over_signal(requeue_killed, signal.SIGUSR2)
    assert ended.value.code == -1 and "the requeue was accepted" in caplog.text
    with pytest.raises(subprocess.CalledProcessError):
        hand_over_signal(requeue_refused, signal.SIGUSR2)

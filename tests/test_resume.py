"""Crash-safe resume: atomic checkpoints, resume=auto, and a real SIGKILL of a training run."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from ctrlic.utils.checkpoint_io import PARTIAL_PREFIX, AtomicCheckpointIO
from ctrlic.utils.resume import ResumeError, checkpoint_to_resume, newest_checkpoint
from tests import forked
from tests.conftest import SMOKE, run_cli
from tests.helpers_resume import by_step, read_steps

CHECKPOINT_EVERY, MAX_STEPS = 3, 8


def test_atomic_save_keeps_the_old_checkpoint_when_a_save_fails(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 3}, target)
    with pytest.raises(TypeError, match="pickle"):
        io.save_checkpoint({"global_step": 6, "lock": threading.Lock()}, target)  # a lock cannot be pickled
    assert torch.load(target, weights_only=True)["global_step"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_resume_auto_picks_the_newest_whole_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert checkpoint_to_resume("auto", None, tmp_path) is None
    assert checkpoint_to_resume("auto", "given.ckpt", tmp_path) == "given.ckpt"
    for n, name in enumerate(("best-3.ckpt", "step-6.ckpt", f"{PARTIAL_PREFIX}step-9.ckpt.x1")):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, ns=(n * 10**9, n * 10**9))
    assert newest_checkpoint(tmp_path) == folder / "step-6.ckpt"
    assert checkpoint_to_resume("auto", "given.ckpt", tmp_path) == str(folder / "step-6.ckpt")
    assert checkpoint_to_resume("never", "given.ckpt", tmp_path) == "given.ckpt"
    with pytest.raises(ResumeError, match="resume=auto"):
        checkpoint_to_resume("yes", None, tmp_path)


def _overrides(run_dir, record, delay_s: float) -> list[str]:
    return [*SMOKE, "callbacks.rd_sweep=null", "module/scheduler=cosine",
            f"trainer.max_steps={MAX_STEPS}", f"trainer.val_check_interval={MAX_STEPS}", "data.val_limit=1",
            "data.val_crop=64", f"callbacks.periodic_checkpoint.every_n_train_steps={CHECKPOINT_EVERY}",
            f"+callbacks.recorder={{_target_:tests.helpers_resume.StepRecorder,path:'{record}',delay_s:{delay_s}}}",
            "resume=auto", f"hydra.run.dir={run_dir}"]


def _kill_after_first_checkpoint(run_dir, record) -> int:
    """Start a run, SIGKILL it two steps after its first periodic checkpoint; returns its pid."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = forked.start("run.py", _overrides(run_dir, record, delay_s=0.5), env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        started = [e["step"] for e in read_steps(record)] if record.exists() else []
        if (run_dir / "checkpoints" / f"step-{CHECKPOINT_EVERY}.ckpt").exists() and \
                max(started, default=0) >= CHECKPOINT_EVERY + 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    ended = proc.wait(timeout=60)
    assert ended.returncode == -signal.SIGKILL, f"the run was not killed ({ended.returncode}): {ended.stderr[-3000:]}"
    return proc.pid


def test_run_killed_with_sigkill_resumes_at_the_same_step_batch_and_optimizer_state(tmp_path):
    run_dir, record = tmp_path / "run", tmp_path / "steps.jsonl"
    killed = _kill_after_first_checkpoint(run_dir, record)
    newest = newest_checkpoint(run_dir)
    resumed_from = torch.load(newest, map_location="cpu", weights_only=True)["global_step"]
    assert resumed_from == CHECKPOINT_EVERY < MAX_STEPS

    run_cli(*_overrides(run_dir, record, delay_s=0.0))
    entries = read_steps(record)
    resumed = next(e["pid"] for e in entries if e["pid"] != killed)
    before, after = by_step(entries, killed, "start"), by_step(entries, resumed, "start")
    assert min(after) == resumed_from and max(after) == MAX_STEPS - 1
    overlap = sorted(set(before) & set(after))
    assert overlap[:2] == [resumed_from, resumed_from + 1]
    for step in overlap:  # the same data and the same learning rate (scheduler state) at every step
        assert after[step]["batch"] == before[step]["batch"]
        assert after[step]["lr"] == pytest.approx(before[step]["lr"], rel=1e-9)
    # the loss one step after the checkpoint depends on Adam's moments: equal only if they were restored
    losses_before, losses_after = by_step(entries, killed, "end"), by_step(entries, resumed, "end")
    for step in (resumed_from, resumed_from + 1):
        assert losses_after[step]["loss"] == pytest.approx(losses_before[step]["loss"], rel=1e-5)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == MAX_STEPS
    assert not list((run_dir / "checkpoints").glob(f"{PARTIAL_PREFIX}*"))

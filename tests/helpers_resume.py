"""A callback the resume tests add to real runs: what each training step saw and gave, optionally slowed."""

from __future__ import annotations

import hashlib
import json
import os
import time

import lightning as L
import torch


class StepRecorder(L.Callback):
    """Appends JSON lines to ``path``: at batch start ``{pid, step, batch sha256, lr}``, at batch end
    ``{pid, step, loss}``; then sleeps ``delay_s`` (so a test can kill the run between two steps)."""

    def __init__(self, path: str, delay_s: float = 0.0) -> None:
        self.path, self.delay_s = path, delay_s

    def _write(self, entry: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), **entry}) + "\n")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        digest = hashlib.sha256(batch.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
        self._write({"event": "start", "rank": trainer.global_rank, "step": trainer.global_step,
                     "batch": digest, "lr": [g["lr"] for g in trainer.optimizers[0].param_groups]})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._write({"event": "end", "rank": trainer.global_rank, "step": trainer.global_step - 1,
                     "loss": float(torch.as_tensor(loss).detach())})
        time.sleep(self.delay_s)


def read_steps(path) -> list[dict]:
    """The recorded lines, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def by_step(entries: list[dict], pid: int, event: str) -> dict[int, dict]:
    return {e["step"]: e for e in entries if e["pid"] == pid and e["event"] == event}

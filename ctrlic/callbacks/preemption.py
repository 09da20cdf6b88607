"""Slurm's pre-timeout signal: checkpoint at the end of the current step, then let the requeue happen.

Slurm sends the signal ``signal_delay_s`` before the time limit (``#SBATCH --signal=USR2@120``, set by
submitit), or on ``scancel --signal=USR2``. submitit's handler requeues the job and exits at once, in
the middle of a step, so the job would lose everything since its last periodic checkpoint, and W&B
what its service process had not yet written. This callback takes the signal over while training
runs: it notes it, finishes the step, writes ``preempted.ckpt`` (which ``resume=auto`` finds as the
newest checkpoint), lets Lightning log that step, closes the W&B runs and then hands the signal to
whoever owned it before (submitit: requeue and exit; nobody: the default action, the process ends).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import lightning as L

from ctrlic.utils.wandb_logger import finish_wandb_runs

log = logging.getLogger("ctrlic")

#: the checkpoint written on the signal; one file, replaced atomically at each preemption
PREEMPTED_CHECKPOINT = "preempted.ckpt"


class PreemptionCheckpoint(L.Callback):
    """On ``signal_name`` during training: save ``<dirpath>/preempted.ckpt`` after the step, then pass
    the signal on to its previous handler. Every rank takes part in the decision, so DDP ranks save
    at the same step even when the signal reaches them at different moments."""

    def __init__(self, dirpath: str, signal_name: str = "USR2") -> None:
        self.dirpath = Path(dirpath)
        self.signum = signal.Signals[f"SIG{signal_name.upper().removeprefix('SIG')}"]
        self.received = False
        self.saved = False
        self._previous = None
        self._installed = False

    def _note(self, signum: int, frame) -> None:
        self.received = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self.received = self.saved = False
        self._previous = signal.getsignal(self.signum)
        signal.signal(self.signum, self._note)
        self._installed = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if not self._installed or self.saved:
            return
        if trainer.world_size > 1:
            if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
                return
        elif not self.received:
            return
        path = self.dirpath / PREEMPTED_CHECKPOINT
        trainer.save_checkpoint(path)  # a full training checkpoint (optimizer and loop state too)
        self.saved = True
        log.warning("%s received: checkpoint at step %d in %s", self.signum.name, trainer.global_step, path)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        if self.saved:  # the saved step is logged by now: hand over before training the next one
            self._pass_on(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The last step is in ``last.ckpt``; a signal that came after it goes to its previous owner now."""
        if self._installed and (self.received or self.saved):
            self._pass_on(trainer)
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._installed:
            signal.signal(self.signum, self._previous)
            self._installed = False

    def _pass_on(self, trainer: L.Trainer) -> None:
        previous = self._previous
        self._restore()
        self.saved = False
        if previous in (signal.SIG_IGN, None):
            return
        log.warning("%s: handing the signal on at step %d", self.signum.name, trainer.global_step)
        finish_wandb_runs(trainer.loggers)  # the job's processes end now, W&B's service with them
        if callable(previous):
            hand_over_signal(previous, self.signum)
        else:
            os.kill(os.getpid(), self.signum)  # SIG_DFL: what the signal would have done without us


def hand_over_signal(handler, signum: int) -> None:
    """Call the signal's previous handler (submitit's: ``scontrol requeue``, then ``sys.exit(-1)``).

    Slurm answers the requeue by sending SIGTERM to every process of the job, and the ``scontrol`` that
    asked for it is one of them: when the SIGTERM comes before ``scontrol`` has exited (a loaded node),
    submitit sees it die and the job would end as failed although the requeue was accepted. Read that as the
    requeue it is and exit as submitit does after one."""
    try:
        handler(signum, None)
    except subprocess.CalledProcessError as err:
        if err.returncode != -signal.SIGTERM or "requeue" not in list(map(str, err.cmd or [])):
            raise
        log.warning("the requeue was accepted (Slurm ended `%s` with SIGTERM, as it ends the job's processes); "
                    "exiting for the next attempt", " ".join(map(str, err.cmd)))
        sys.exit(-1)

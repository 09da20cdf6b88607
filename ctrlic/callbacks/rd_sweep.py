"""At the end of training: the evaluation (RD or lossless sweep with real bitstreams), on rank 0 only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning as L

from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.settings import SweepSettings


class RDSweep(L.Callback):
    """Compress every evaluation image at every knob setting, decode it, write results and plots.

    Runs ``evaluation.evaluate`` with the ``eval`` config node, on the CPU, once, on global rank 0.
    """

    def __init__(self, settings: Mapping | None = None, output_dir: str | None = None) -> None:
        self.output_dir = output_dir
        self.settings = SweepSettings(**(settings or {}))
        self.results: dict[str, dict] = {}  # {eval set: results dict} of the last sweep (rank 0)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        out_dir = Path(self.output_dir or trainer.default_root_dir)
        self.results = evaluate(pl_module.codec, trainer.datamodule.eval_dataloaders(), out_dir, self.settings,
                                trainer.loggers, step=trainer.global_step)

"""At the end of training: the evaluation (RD or lossless sweep with real bitstreams), on rank 0 only."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from ctrlic.codecs.checkpoint import load_weights, read_checkpoint
from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.settings import SweepSettings
from ctrlic.lightning_modules.checkpoint import TABLES_FIT, codec_weights, training_record

log = logging.getLogger("ctrlic")
#: which weights the sweep evaluates: those at the end of training, or the best monitored checkpoint
WEIGHTS = ("last", "best")


class RDSweep(L.Callback):
    """Compress every evaluation image at every knob setting, decode it, write results and plots.

    Runs ``evaluation.evaluate`` with the ``eval`` config node, on the CPU, once, on global rank 0.
    ``weights="best"`` first loads the checkpoint a monitoring ``ModelCheckpoint`` kept as best (the
    authors evaluate their best validation loss); ``results.json`` meta says which (``evaluated_weights``).
    """

    def __init__(self, settings: Mapping | None = None, output_dir: str | None = None, weights: str = "last") -> None:
        if weights not in WEIGHTS:
            raise ValueError(f"callbacks.rd_sweep.weights={weights!r}; choose one of {', '.join(WEIGHTS)}")
        self.output_dir = output_dir
        self.settings = SweepSettings(**(settings or {}))
        self.weights = weights
        self.results: dict[str, dict] = {}  # {eval set: results dict} of the last sweep (rank 0)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        chosen = {"weights": "last", "step": trainer.global_step}
        if self.weights == "best":
            chosen = load_best(trainer, pl_module) or {**chosen, "reason": "no best checkpoint was kept "
                                                                           "(no monitored validation ran)"}
        log.info("RD sweep of the %s weights (%s)", chosen["weights"], chosen.get("checkpoint", "in memory"))
        settings = replace(self.settings, extra_meta={**self.settings.extra_meta, "evaluated_weights": chosen})
        out_dir = Path(self.output_dir or trainer.default_root_dir)
        self.results = evaluate(pl_module.codec, trainer.datamodule.eval_dataloaders(), out_dir, settings,
                                trainer.loggers, step=trainer.global_step)


def load_best(trainer: L.Trainer, pl_module: L.LightningModule) -> dict | None:
    """Load the best checkpoint of the first monitoring ``ModelCheckpoint`` into the codec; what was loaded."""
    monitors = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor]
    best = next((cb for cb in monitors if cb.best_model_path), None)
    if best is None:
        return None
    checkpoint = read_checkpoint(best.best_model_path)
    codec = pl_module.codec
    load_weights(codec.backbone, codec_weights(checkpoint))
    record = training_record(checkpoint) or {}
    if not record.get(TABLES_FIT, True):
        codec.discard_checkpoint_tables()
    score = best.best_model_score
    return {"weights": "best", "checkpoint": str(best.best_model_path), "step": int(checkpoint["global_step"]),
            "monitor": best.monitor, "score": None if score is None else float(score)}

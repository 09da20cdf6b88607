"""task=train: fit the module on the data, checkpoint, then (callback) the RD sweep."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from ctrlic.tasks.common import (
    callbacks_from_config,
    codec_from_config,
    log,
    loggers_from_config,
    trainer_from_config,
)
from ctrlic.utils.provenance import write_provenance


def train(cfg: DictConfig, run_dir: Path, repo_dir: Path) -> dict[str, float]:
    """Train; returns the final logged metrics (the objective of hyper-parameter searches)."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    codec = codec_from_config(cfg)
    module = hydra.utils.instantiate(cfg.module, codec=codec, _convert_="all")
    trainer = trainer_from_config(cfg, callbacks_from_config(cfg), loggers_from_config(cfg))
    if trainer.is_global_zero:
        write_provenance(cfg, run_dir, repo_dir)
    log.info("training %s (%s) in %s", codec.name, type(codec.control).__name__, run_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}

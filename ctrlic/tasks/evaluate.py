"""task=eval: evaluate a trained model (exported codec or checkpoint) on the eval sets with the ``eval`` settings."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.settings import SweepSettings
from ctrlic.lightning_modules.checkpoint import open_codec
from ctrlic.tasks.common import ckpt_trust, codec_from_config, log, loggers_from_config
from ctrlic.utils.provenance import write_provenance


def eval_task(cfg: DictConfig, run_dir: Path, repo_dir: Path) -> dict[str, dict]:
    write_provenance(cfg, run_dir, repo_dir)
    if cfg.get("ckpt_path"):
        codec = open_codec(cfg.ckpt_path, ckpt_trust(cfg))
    else:
        log.warning("no ckpt_path given: evaluating the model built from config (backbone.checkpoint or random)")
        codec = codec_from_config(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    settings = SweepSettings(**OmegaConf.to_container(cfg.eval, resolve=True))
    settings.extra_meta = {**settings.extra_meta, "checkpoint": cfg.get("ckpt_path")}
    return evaluate(codec, datamodule.eval_dataloaders(), run_dir, settings, loggers_from_config(cfg))

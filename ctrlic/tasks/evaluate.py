"""task=eval: evaluate a trained model (exported codec or checkpoint) on the eval sets with the ``eval`` settings."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
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
    return evaluate(codec, datamodule.eval_dataloaders(), output_dir(settings, run_dir), settings,
                    loggers_from_config(cfg))


def output_dir(settings: SweepSettings, run_dir: Path) -> Path:
    """Where the evaluation writes: the job's run directory, or for the shards of a multirun the folder of the sweep
    directory that every shard of the same evaluation shares, named by the job's other overrides: its ``records/``
    gathers every shard's records, and the last shard to finish merges them there."""
    if settings.shard is None or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return run_dir
    hydra_cfg = HydraConfig.get()
    others = [o for o in hydra_cfg.overrides.task if not re.match(r"[+~]*eval\.shard=", o)]
    return Path(hydra_cfg.sweep.dir) / shared_folder(others)


def shared_folder(overrides: list[str]) -> str:
    """A folder name for the evaluation the shards share: its overrides (hashed when long), or ``eval``."""
    name = re.sub(r"[^\w.=,+-]", "_", ",".join(overrides) or "eval")
    if len(name) > 120:
        name = f"{name[:100]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name

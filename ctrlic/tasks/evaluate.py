"""task=eval: the RD sweep of a trained model (exported codec or checkpoint) on the eval sets."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ctrlic.callbacks.rd_sweep import report
from ctrlic.codecs.build import load_codec
from ctrlic.evaluation.lossless import report_lossless, run_lossless_sweep
from ctrlic.evaluation.sweep import SweepSettings, run_sweep
from ctrlic.tasks.common import ckpt_trust, codec_from_config, log, loggers_from_config, sweep_settings
from ctrlic.utils.provenance import write_provenance


def evaluate(cfg: DictConfig, run_dir: Path, repo_dir: Path) -> dict[str, dict]:
    write_provenance(cfg, run_dir, repo_dir)
    if cfg.get("ckpt_path"):
        codec = load_codec(cfg.ckpt_path, ckpt_trust(cfg))
    else:
        log.warning("no ckpt_path given: evaluating the model built from config (backbone.checkpoint or random)")
        codec = codec_from_config(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    settings = SweepSettings(**sweep_settings(cfg), extra_meta={"checkpoint": cfg.get("ckpt_path")})
    if codec.lossless:
        results = run_lossless_sweep(codec.cpu(), datamodule.eval_dataloaders(), run_dir, settings)
        report_lossless(results, run_dir, loggers_from_config(cfg))
        return results
    results = run_sweep(codec.cpu(), datamodule.eval_dataloaders(), run_dir, settings)
    report(results, run_dir, loggers_from_config(cfg))
    return results

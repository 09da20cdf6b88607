"""task=eval: the RD sweep of a trained model (exported codec or checkpoint) on the eval sets."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ctrlic.callbacks.rd_sweep import report
from ctrlic.codecs.build import load_codec
from ctrlic.evaluation.lossless import report_lossless, run_lossless_sweep
from ctrlic.evaluation.report import build_report
from ctrlic.evaluation.sweep import SweepSettings, run_sweep
from ctrlic.tasks.common import codec_from_config, log, loggers_from_config, sweep_settings
from ctrlic.utils.provenance import write_provenance
from ctrlic.utils.report_logging import log_report


def evaluate(cfg: DictConfig, run_dir: Path, repo_dir: Path) -> dict[str, dict]:
    write_provenance(cfg, run_dir, repo_dir)
    if cfg.get("ckpt_path"):
        codec = load_codec(cfg.ckpt_path)
    else:
        log.warning("no ckpt_path given: evaluating the model built from config (backbone.checkpoint or random)")
        codec = codec_from_config(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    settings = SweepSettings(**sweep_settings(cfg), extra_meta={"checkpoint": cfg.get("ckpt_path")})
    loggers = loggers_from_config(cfg)
    if codec.lossless:
        results = run_lossless_sweep(codec.cpu(), datamodule.eval_dataloaders(), run_dir, settings)
        report_lossless(results, run_dir, loggers)
    else:
        results = run_sweep(codec.cpu(), datamodule.eval_dataloaders(), run_dir, settings)
        report(results, run_dir, loggers)
    log_report(loggers, build_report(codec.cpu(), datamodule.eval_dataloaders(), run_dir, settings))
    return results

"""task=train: fit the module on the data, checkpoint, then (callback) the RD sweep."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import lightning as L
from lightning.pytorch.callbacks import Timer
from omegaconf import DictConfig

from ctrlic.callbacks.rd_sweep import RDSweep
from ctrlic.evaluation.loggers import summary_metrics
from ctrlic.evaluation.summary import FINAL_METRICS
from ctrlic.lightning_modules.resume_check import check_resume_checkpoint
from ctrlic.tasks.common import (
    callbacks_from_config,
    ckpt_trust,
    codec_from_config,
    log,
    loggers_from_config,
    trainer_from_config,
)
from ctrlic.utils.job_dependency import wait_for_job
from ctrlic.utils.provenance import write_provenance
from ctrlic.utils.resume import checkpoint_to_resume
from ctrlic.utils.wandb_logger import log_full_config


def train(cfg: DictConfig, run_dir: Path, repo_dir: Path) -> dict[str, float]:
    """Train; returns the final metrics and the RD sweep's (the objective of hyper-parameter searches)."""
    wait_for_job(cfg.get("after"))
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    codec = codec_from_config(cfg)
    module = hydra.utils.instantiate(cfg.module, codec=codec, _convert_="all")
    ckpt_path = checkpoint_to_resume(cfg.get("resume"), cfg.get("ckpt_path"), run_dir)
    trust = ckpt_trust(cfg)
    if ckpt_path:  # a bad one stops here, in one line, before anything is written
        check_resume_checkpoint(ckpt_path, module, trust)
    trainer = trainer_from_config(cfg, callbacks_from_config(cfg), loggers_from_config(cfg))
    if trainer.is_global_zero:
        write_provenance(cfg, run_dir, repo_dir)
        log_full_config(trainer.loggers, cfg)
    log.info("training %s (%s) in %s", codec.name, type(codec.control).__name__, run_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=not trust.allowed)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics.update(rd_metrics(trainer.callbacks))
    metrics.update(training_time(trainer.callbacks))
    if trainer.is_global_zero:
        (run_dir / FINAL_METRICS).write_text(json.dumps({"global_step": trainer.global_step, **metrics},
                                                        indent=2))
        explain_missing_objective(cfg.get("objective"), metrics, trainer.callbacks)
    return metrics


def training_time(callbacks: list) -> dict[str, float]:
    """``time/train_seconds``: wall seconds in the training loop (across resumes), from the Timer callback."""
    timers = [cb for cb in callbacks if isinstance(cb, Timer)]
    return {"time/train_seconds": timers[0].time_elapsed("train")} if timers else {}


def _sweeps(callbacks: list) -> list[dict[str, dict]]:
    return [cb.results for cb in callbacks if isinstance(cb, RDSweep) and cb.results]


def rd_metrics(callbacks: list) -> dict[str, float]:
    """``rd/<set>/bd_rate``, ``rd/<set>/mean_bpp``, ... of the RD sweep; ``rd/bd_rate`` for the first set."""
    metrics: dict[str, float] = {}
    for sweep in _sweeps(callbacks):
        for n, (set_name, results) in enumerate(sweep.items()):
            scalars = summary_metrics(results, f"rd/{set_name}")
            metrics.update(scalars)
            if n == 0 and f"rd/{set_name}/bd_rate" in scalars:
                metrics["rd/bd_rate"] = scalars[f"rd/{set_name}/bd_rate"]
    return metrics


def explain_missing_objective(objective: str | None, metrics: dict[str, float], callbacks: list) -> None:
    """Say why a sweeper gets no value (the trial then fails): no such metric, or no BD-rate and why."""
    if not objective or objective in metrics:
        return
    reasons = [f"{name}: {res['meta']['bd_rate'].get('reason')}" for sweep in _sweeps(callbacks)
               for name, res in sweep.items()]
    why = "; ".join(reasons) if "bd_rate" in objective and reasons else f"metrics are {', '.join(sorted(metrics))}"
    log.error("objective=%s has no value in this run (%s)", objective, why)

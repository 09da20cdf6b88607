"""W&B logger that works without an account and re-attaches to the same run after a requeue."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf


def run_id_for(run_dir: str | Path) -> str:
    """A stable W&B run id derived from the run directory, so a requeued job continues its run."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


def make_wandb_logger(project: str, save_dir: str, run_dir: str, group: str | None = None,
                      **kwargs) -> WandbLogger:
    """Offline mode unless an API key is configured (``WANDB_API_KEY`` or a ``wandb login``)."""
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists()
    offline = os.environ.get("WANDB_MODE") == "offline" or not has_key
    return WandbLogger(project=project, save_dir=save_dir, group=group, id=run_id_for(run_dir),
                       resume="allow", offline=offline, **kwargs)


def log_full_config(loggers: list, cfg: DictConfig) -> None:
    """The whole resolved Hydra config into each W&B run (Lightning itself logs only the module's)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.config.update(OmegaConf.to_container(cfg, resolve=True), allow_val_change=True)


def finish_wandb_runs(loggers: list) -> None:
    """Write out and close the W&B runs now: a requeue ends the job's processes, W&B's service process
    among them, and what it had not yet written to the run file would be lost."""
    import wandb

    runs = [logger.experiment for logger in loggers if isinstance(logger, WandbLogger)]
    for run in runs:
        run.finish()
    if runs:
        wandb.teardown()  # and the connection to the service, which would fail at exit once it is gone

"""The tasks ``run.py`` dispatches to: train, eval, info, export, summarize, assemble, report."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ctrlic.errors import user_error

TASKS = ("train", "eval", "info", "export", "summarize", "assemble", "report")
REPO_DIR = Path(__file__).resolve().parents[2]

log = logging.getLogger("ctrlic")


def run(cfg: DictConfig):
    """Run ``cfg.task``; returns its result (for ``train``, the final metrics)."""
    from ctrlic.tasks.assemble import assemble
    from ctrlic.tasks.evaluate import eval_task
    from ctrlic.tasks.export import export
    from ctrlic.tasks.info import info
    from ctrlic.tasks.report import report
    from ctrlic.tasks.summarize import summarize_task
    from ctrlic.tasks.train import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.task == "train":
            return train(cfg, run_dir, REPO_DIR)
        if cfg.task == "eval":
            return eval_task(cfg, run_dir, REPO_DIR)
        if cfg.task == "info":
            return info(cfg, run_dir)
        if cfg.task == "export":
            return export(cfg, run_dir)
        if cfg.task == "summarize":
            return summarize_task(cfg)
        if cfg.task == "assemble":
            return assemble(cfg, run_dir)
        if cfg.task == "report":
            return report(cfg)
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        log.error("%s", cause)
        raise SystemExit(2) from None
    raise SystemExit(f"task={cfg.task!r} is not a task; choose one of {', '.join(TASKS)}")

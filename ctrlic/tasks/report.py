"""task=report: rebuild ``report.html`` of a finished run (or a multirun folder) from its files, no model."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ctrlic.evaluation.report import ReportError, write_report
from ctrlic.evaluation.summary import summarize_with
from ctrlic.tasks.common import log


def report(cfg: DictConfig) -> Path:
    """``python run.py task=report run_dir=DIR``: a run directory, or a multirun folder (its summary)."""
    if not cfg.get("run_dir"):
        raise ReportError("task=report needs run_dir=<run directory> (a folder with results.json)")
    run_dir = Path(cfg.run_dir)
    if run_dir.is_dir() and not any(run_dir.glob("results*.json")) and (run_dir / "multirun.yaml").is_file():
        path = summarize_with(run_dir, cfg.get("summary"))["report"]
    else:
        path = write_report(run_dir)
    log.info("report: %s", path)
    print(f"report: {path}")
    return path

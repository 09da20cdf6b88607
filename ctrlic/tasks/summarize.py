"""task=summarize: the multirun summary again, for any sweep folder."""

from __future__ import annotations

from ctrlic.evaluation.summary import SummaryError, summarize_with, summary_text


def summarize_task(cfg) -> dict:
    """``python run.py task=summarize summary.dir=multirun/<date>``."""
    settings = cfg.summary
    if not settings.get("dir"):
        raise SummaryError("task=summarize needs summary.dir=<multirun directory>")
    summary = summarize_with(settings.dir, settings)
    print(summary_text(summary))
    return summary

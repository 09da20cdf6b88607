"""task=summarize: the multirun summary again, for any sweep folder."""

from __future__ import annotations

from ctrlic.evaluation.summary import SummaryError, summarize, summary_text


def summarize_task(cfg) -> dict:
    """``python run.py task=summarize summary.dir=multirun/<date>``."""
    settings = cfg.summary
    if not settings.get("dir"):
        raise SummaryError("task=summarize needs summary.dir=<multirun directory>")
    summary = summarize(settings.dir, settings.metric, settings.loss, list(settings.plot_references or []))
    print(summary_text(summary))
    return summary

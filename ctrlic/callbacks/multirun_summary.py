"""Hydra callback: at the end of every multirun, the summary table, RD plot and best job."""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ctrlic.evaluation.summary import SummaryError, summarize_with, summary_text

log = logging.getLogger("ctrlic")


class MultirunSummary(Callback):
    """Runs ``task=summarize`` on ``hydra.sweep.dir`` once all jobs have finished (any launcher)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            summary = summarize_with(config.hydra.sweep.dir, config.get("summary"))
        except SummaryError as err:
            log.warning("no multirun summary: %s", err)
            return
        print(summary_text(summary))

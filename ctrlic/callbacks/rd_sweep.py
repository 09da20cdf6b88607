"""At the end of training: the RD sweep with real bitstreams, on rank 0 only."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

from ctrlic.evaluation.lossless import report_lossless, run_lossless_sweep
from ctrlic.evaluation.report import build_report
from ctrlic.evaluation.sweep import SweepSettings, run_sweep
from ctrlic.utils.rd_logging import log_rd
from ctrlic.utils.report_logging import log_report

log = logging.getLogger(__name__)


class RDSweep(L.Callback):
    """Compress every evaluation image at every knob setting, decode it, write results and plots.

    Runs on the CPU (where the entropy coder runs), once, on global rank 0.
    """

    def __init__(self, output_dir: str | None = None, **settings) -> None:
        self.output_dir = output_dir
        self.settings = SweepSettings(**settings)
        self.results: dict[str, dict] = {}  # {eval set: results dict} of the last sweep (rank 0)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        out_dir = Path(self.output_dir or trainer.default_root_dir)
        codec = pl_module.codec.cpu()
        if codec.lossless:
            self.results = run_lossless_sweep(codec, trainer.datamodule.eval_dataloaders(), out_dir, self.settings)
            report_lossless(self.results, out_dir, trainer.loggers, step=trainer.global_step)
        else:
            self.results = run_sweep(codec, trainer.datamodule.eval_dataloaders(), out_dir, self.settings)
            report(self.results, out_dir, trainer.loggers, step=trainer.global_step)
        log_report(trainer.loggers, build_report(codec, trainer.datamodule.eval_dataloaders(), out_dir, self.settings))


def report(results: dict[str, dict], out_dir: Path, loggers, step: int = 0) -> None:
    """Log each set's sweep and print where its results and plot are."""
    for n, (set_name, res) in enumerate(results.items()):
        suffix = "" if n == 0 else f"_{set_name}"
        log_rd(loggers, res, out_dir / f"rd{suffix}.png", prefix=f"rd/{set_name}", step=step)
        bd = res["meta"]["bd_rate"]
        bd_text = f"{bd['value']:+.2f} %" if bd["value"] is not None else f"n/a ({bd['reason']})"
        log.info("RD sweep on %s: %d points, BD-rate vs %s: %s", set_name, len(res["results"]["bpp"]),
                 bd["reference"], bd_text)
        log.info("results: %s", out_dir / f"results{suffix}.json")
        log.info("RD plot: %s", out_dir / f"rd{suffix}.png")

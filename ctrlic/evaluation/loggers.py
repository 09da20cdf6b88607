"""Send evaluation results to whichever loggers are active (CSV, TensorBoard, W&B)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

#: curves whose mean over the sweep is logged as a scalar
MEAN_KEYS = ("bpp", "bpp_est", "psnr-rgb", "ms-ssim-rgb", "bpsp")


def summary_metrics(results: dict, prefix: str) -> dict[str, float]:
    """Scalars of one set's results: the BD-rate (when computable), the mean of each curve and, for
    lossless codecs, bpsp at each knob setting and the classical codecs' bpsp."""
    metrics = {}
    meta = results.get("meta", {})
    bd = meta.get("bd_rate", {})
    if bd.get("value") is not None:
        metrics[f"{prefix}/bd_rate"] = bd["value"]
    for key in MEAN_KEYS:
        values = results["results"].get(key)
        if values:
            metrics[f"{prefix}/mean_{key}"] = sum(values) / len(values)
    if "bpsp" in results["results"]:
        metrics |= {f"{prefix}/bpsp_{i}": v for i, v in enumerate(results["results"]["bpsp"])}
        metrics |= {f"{prefix}/{c}_bpsp": v for c, v in meta.get("classical", {}).items()}
    return metrics


def log_results(loggers: Iterable[Logger], results: dict, plot: Path, prefix: str, step: int = 0) -> None:
    """Scalars to every logger; the points as a ``wandb.Table`` with a line plot, and the plot as an image."""
    metrics = summary_metrics(results, prefix)
    for logger in loggers:
        logger.log_metrics(metrics, step=step)
        if isinstance(logger, WandbLogger):
            import wandb

            columns = list(results["results"])
            rows = [list(r) for r in zip(*(results["results"][c] for c in columns), strict=True)]
            table = wandb.Table(columns=columns, data=rows)
            logged = {f"{prefix}/rd_points": table, f"{prefix}/rd_plot": wandb.Image(str(plot))}
            quality = next((c for c in ("psnr-rgb", "ms-ssim-rgb") if c in columns), None)
            if "bpp" in columns and quality:
                logged[f"{prefix}/rd_curve"] = wandb.plot.line(table, "bpp", quality,
                                                               title=f"{results['name']} ({prefix})")
            logger.experiment.log(logged)
        elif isinstance(logger, TensorBoardLogger):
            import numpy as np
            from PIL import Image

            image = np.asarray(Image.open(plot).convert("RGB"))
            logger.experiment.add_image(f"{prefix}/rd_plot", image, step, dataformats="HWC")
        logger.save()

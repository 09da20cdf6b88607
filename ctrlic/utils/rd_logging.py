"""Send RD sweep results to whichever loggers are active (CSV, TensorBoard, W&B)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger


def summary_metrics(results: dict, prefix: str) -> dict[str, float]:
    """Scalar metrics of a sweep: the BD-rate (when computable) and the mean of each curve."""
    metrics = {}
    bd = results.get("meta", {}).get("bd_rate", {})
    if bd.get("value") is not None:
        metrics[f"{prefix}/bd_rate"] = bd["value"]
    for key in ("bpp", "bpp_est", "psnr-rgb", "ms-ssim-rgb"):
        values = results["results"].get(key)
        if values:
            metrics[f"{prefix}/mean_{key}"] = sum(values) / len(values)
    return metrics


def log_rd(loggers: Iterable[Logger], results: dict, plot: Path, prefix: str, step: int = 0) -> None:
    """Scalars to every logger; the RD points as a ``wandb.Table`` with a line plot, and the plot as an image."""
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

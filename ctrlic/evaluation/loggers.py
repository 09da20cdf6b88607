"""Send evaluation results to whichever loggers are active (CSV, TensorBoard, W&B); in W&B also the run
report: the page as ``wandb.Html`` (pictures inlined) and the slider pictures as a ``wandb.Table``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

from ctrlic.evaluation.report import render_report
from ctrlic.evaluation.report_assets import ASSETS, MANIFEST

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


def knob_label(knobs: dict[str, float]) -> str:
    """Column name of one knob setting, e.g. ``alpha=0.45`` or ``alpha=1,beta=0``."""
    return ",".join(f"{k}={v:g}" for k, v in knobs.items()) or "fixed"


def slider_tables(run_dir: Path) -> dict[str, object]:
    """{set name: wandb.Table}: rows (image, view) with view ``decoded`` or ``bits``, a column per knob setting."""
    import wandb

    path = run_dir / ASSETS / MANIFEST
    if not path.is_file():
        return {}
    tables = {}
    for entry in json.loads(path.read_text())["sets"]:
        labels = [knob_label(p) for p in entry["points"]]
        table = wandb.Table(columns=["image", "view", "original", *labels])
        for image in entry["images"]:
            original = wandb.Image(str(run_dir / image["original"]["thumb"]), caption=image["name"])
            pixels = image["width"] * image["height"]
            decoded = [wandb.Image(str(run_dir / p["thumb"]), caption=f"{p['file_bits'] / pixels:.4f} bpp")
                       for p in image["points"]]
            table.add_data(image["name"], "decoded", original, *decoded)
            if all(p.get("bit_map") for p in image["points"]):
                maps = [wandb.Image(str(run_dir / p["bit_map"]), caption=f"{p['map_bits']:.0f} bits")
                        for p in image["points"]]
                table.add_data(image["name"], "bits", original, *maps)
        tables[entry["name"]] = table
    return tables


def log_report(loggers: Iterable[Logger], report: Path | None) -> None:
    """Send ``report`` (a written ``report.html``; None: nothing) to every W&B logger."""
    if report is None:
        return
    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not wandb_loggers:
        return
    import wandb

    run_dir = Path(report).parent
    logged = {"report/html": wandb.Html(render_report(run_dir, inline=True), inject=False)}
    logged |= {f"report/{name}/knob_slider": table for name, table in slider_tables(run_dir).items()}
    for logger in wandb_loggers:
        logger.experiment.log(logged)

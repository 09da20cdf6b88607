"""The run report in W&B: the page as ``wandb.Html`` (pictures inlined) and the slider pictures as a
``wandb.Table`` with one image column per knob setting, so the dashboard shows what the page shows."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from lightning.pytorch.loggers import Logger, WandbLogger

from ctrlic.evaluation.report import render_report
from ctrlic.evaluation.report_assets import ASSETS, MANIFEST


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

"""task=info: build the model without training and say what it is made of."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ctrlic.codecs.codec import Codec
from ctrlic.tasks.common import codec_from_config


def parameter_counts(codec: Codec, trainable_ids: set[int]) -> dict[str, dict[str, int]]:
    """Parameters of the backbone proper and of what the control scheme attached, trainable vs frozen."""
    attached = {id(p) for p in codec.control.attached_parameters()}
    counts = {"backbone": {"trainable": 0, "frozen": 0}, "control": {"trainable": 0, "frozen": 0}}
    for p in codec.backbone.parameters():
        part = counts["control" if id(p) in attached else "backbone"]
        part["trainable" if id(p) in trainable_ids else "frozen"] += p.numel()
    return counts


def info(cfg: DictConfig, run_dir: Path) -> dict:
    """Print parameter counts, knobs and data paths; also write them to ``<run dir>/info.json``."""
    codec = codec_from_config(cfg)
    module = hydra.utils.instantiate(cfg.module, codec=codec, _convert_="all")
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    counts = parameter_counts(codec, trainable)
    data = hydra.utils.instantiate(cfg.data).describe()
    console = Console()
    table = Table(title=f"{codec.name} + {type(codec.control).__name__}")
    for col in ("part", "trainable", "frozen", "total"):
        table.add_column(col, justify="right" if col != "part" else "left")
    for part, c in counts.items():
        table.add_row(part, f"{c['trainable']:,}", f"{c['frozen']:,}", f"{c['trainable'] + c['frozen']:,}")
    console.print(table)
    per_set = codec.control.parameter_groups()
    for name, count in per_set.items():
        console.print(f"  {name}: {count:,} parameters")
    knobs = codec.control.describe()["knobs"]
    console.print("knobs: " + (", ".join(f"{k['name']} in {k['range']} (default {k['default']})" for k in knobs)
                               or "none (fixed rate)"))
    console.print(f"architecture: {codec.arch}")
    console.print(f"data: {data}")
    summary = {"codec": codec.name, "parameters": counts, "control_groups": per_set, "knobs": knobs, "data": data}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "info.json").write_text(json.dumps(summary, indent=2))
    return summary

"""task=info: build the model without training and say what it is made of."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ctrlic.codecs.codec import Codec
from ctrlic.errors import user_error
from ctrlic.tasks.common import codec_from_config


def parameter_counts(codec: Codec, trainable_ids: set[int]) -> dict[str, dict[str, int]]:
    """Parameters of the backbone proper and of what the control scheme attached, trainable vs frozen."""
    attached = {id(p) for p in codec.control.attached_parameters()}
    counts = {"backbone": {"trainable": 0, "frozen": 0}, "control": {"trainable": 0, "frozen": 0}}
    for p in codec.backbone.parameters():
        part = counts["control" if id(p) in attached else "backbone"]
        part["trainable" if id(p) in trainable_ids else "frozen"] += p.numel()
    return counts


def trained_parameter_ids(codec: Codec) -> set[int]:
    """What training would update: the control scheme's parameters, or (None) the whole backbone."""
    chosen = codec.control.trainable_parameters()
    return {id(p) for p in (codec.backbone.parameters() if chosen is None else chosen)}


def describe_data(data_cfg: DictConfig) -> dict:
    """The data sets' folders and image counts; a missing or unreadable folder is reported, not raised
    (the model's description needs no data)."""
    try:
        return hydra.utils.instantiate(data_cfg).describe()
    except Exception as err:  # noqa: BLE001 - Hydra wraps what the data module raises
        cause = user_error(err)
        if cause is None:
            raise
    folders = {"train_dir": data_cfg.get("train_dir")}
    folders.update({f"eval_sets.{name}": path for name, path in (data_cfg.get("eval_sets") or {}).items()})
    return {"unavailable": str(cause), "folders": {key: {"path": str(path), "exists": Path(path).is_dir()}
                                                  for key, path in folders.items() if path}}


def info(cfg: DictConfig, run_dir: Path) -> dict:
    """Print parameter counts, knobs and data paths; also write them to ``<run dir>/info.json``.

    Builds the model only: no training module (so no loss network, e.g. LPIPS's AlexNet), and the
    data folders are described if present and reported if not.
    """
    codec = codec_from_config(cfg)
    counts = parameter_counts(codec, trained_parameter_ids(codec))
    data = describe_data(cfg.data)
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
    if "unavailable" in data:
        console.print(f"data: not available ({data['unavailable']}); task=info does not need it, training does")
    else:
        console.print(f"data: {data}")
    summary = {"codec": codec.name, "parameters": counts, "control_groups": per_set, "knobs": knobs, "data": data}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "info.json").write_text(json.dumps(summary, indent=2))
    return summary

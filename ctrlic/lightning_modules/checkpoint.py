"""The layout of ctrlic's training checkpoints, and opening a codec from one or from an exported file.

A Lightning checkpoint of a ctrlic module holds the codec's weights under ``model.backbone.`` and a
``ctrlic`` record (architecture, RNG state, module extras) written by ``on_save_checkpoint``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from ctrlic.codecs.build import codec_from_weights, load_codec
from ctrlic.codecs.checkpoint import read_checkpoint
from ctrlic.codecs.codec import Codec

#: attribute under which ctrlic's Lightning modules hold their Codec
CODEC_ATTR = "model"
#: the checkpoint entry with ctrlic's own record
RECORD = "ctrlic"
#: record key: whether the entropy tables in the state dict fit its weights (``Codec.tables_fit``)
TABLES_FIT = "tables_fit"


def training_record(checkpoint: object) -> dict | None:
    """The ``ctrlic`` record of a training checkpoint, or None for anything else."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        record = checkpoint.get(RECORD)
        return record if isinstance(record, Mapping) else None
    return None


def codec_weights(checkpoint: Mapping) -> dict[str, Tensor]:
    """The backbone's weights (adapters, prompts and entropy tables included) in a training checkpoint."""
    prefix = f"{CODEC_ATTR}.backbone."
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def open_codec(source: str | Path) -> Codec:
    """A codec from a ctrlic training checkpoint or an exported codec file, without the training config."""
    obj = read_checkpoint(source)
    record = training_record(obj)
    if record is not None and "arch" in record:
        return codec_from_weights(record["arch"], codec_weights(obj), source, tables_fit=record.get(TABLES_FIT, True))
    return load_codec(obj, source)

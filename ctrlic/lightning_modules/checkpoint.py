"""The layout of ctrlic's training checkpoints, and opening a codec from one or from an exported file.

A Lightning checkpoint of a ctrlic module holds the codec's weights under ``model.backbone.`` and a
``ctrlic`` record (format, training module, architecture, RNG state, module extras) written by
``save_record``; everything in it is plain data, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning as L
from torch import Tensor

from ctrlic.codecs.build import codec_from_weights, load_codec
from ctrlic.codecs.checkpoint import NO_TRUST, PickleTrust, read_checkpoint
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.recorded import check_declared_format
from ctrlic.utils.plain_data import plain_data, plain_hyperparameters

#: attribute under which ctrlic's Lightning modules hold their Codec
CODEC_ATTR = "model"
#: the checkpoint entry with ctrlic's own record
RECORD = "ctrlic"
#: the record's format (absent in checkpoints written before it: read as this one)
CHECKPOINT_FORMAT = "ctrlic-checkpoint/1"
CHECKPOINT_FORMATS = (CHECKPOINT_FORMAT,)
#: record key: whether the entropy tables in the state dict fit its weights (``Codec.tables_fit``)
TABLES_FIT = "tables_fit"


def module_name(module: L.LightningModule) -> str:
    """The training module's class, recorded in our checkpoints (``ctrlic.module``)."""
    return f"{type(module).__module__}.{type(module).__qualname__}"


def save_record(checkpoint: dict, module: L.LightningModule, **extra: object) -> None:
    """Write the ``ctrlic`` record (plain data only) and make Lightning's hyper-parameters plain data."""
    checkpoint[RECORD] = {"format": CHECKPOINT_FORMAT, "module": module_name(module),
                          "arch": plain_data(module.codec.arch), **extra}
    plain_hyperparameters(checkpoint)


def training_record(checkpoint: object) -> dict | None:
    """The ``ctrlic`` record of a training checkpoint, or None for anything else."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        record = checkpoint.get(RECORD)
        return record if isinstance(record, Mapping) else None
    return None


def check_checkpoint_format(record: Mapping, source: object) -> None:
    """Refuse a training checkpoint whose record declares a format this version does not know."""
    check_declared_format(record.get("format", CHECKPOINT_FORMAT), CHECKPOINT_FORMATS, source)


def codec_weights(checkpoint: Mapping) -> dict[str, Tensor]:
    """The backbone's weights (adapters, prompts and entropy tables included) in a training checkpoint."""
    prefix = f"{CODEC_ATTR}.backbone."
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def open_codec(source: str | Path, trust: PickleTrust = NO_TRUST) -> Codec:
    """A codec from a ctrlic training checkpoint or an exported codec file, without the training config.

    Nothing in the file runs (see ``codecs.build.load_codec``); ``trust`` is the user's opt-in for
    files that need the full unpickler.
    """
    obj = read_checkpoint(source, trust)
    record = training_record(obj)
    if record is not None and "arch" in record:
        check_checkpoint_format(record, source)
        return codec_from_weights(record["arch"], codec_weights(obj), source,
                                  tables_fit=record.get(TABLES_FIT, True))
    return load_codec(obj, source)

"""Checkpoint contents as plain data (dicts, lists, numbers, strings, tensors): loadable with ``weights_only=True``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def plain_data(obj: Any) -> Any:
    """``obj`` with OmegaConf containers and other mappings turned into dicts and lists, recursively."""
    if isinstance(obj, DictConfig | ListConfig):
        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, Mapping):
        return {key: plain_data(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(plain_data(v) for v in obj) if type(obj) in (list, tuple) else [plain_data(v) for v in obj]
    return obj


def plain_hyperparameters(checkpoint: dict) -> None:
    """Make Lightning's ``hyper_parameters`` plain data and drop ``hparams_type`` (a class object)."""
    checkpoint.pop("hparams_type", None)
    if "hyper_parameters" in checkpoint:
        checkpoint["hyper_parameters"] = plain_data(checkpoint["hyper_parameters"])

"""Building the run's parts from the composed config."""

from __future__ import annotations

import logging

import hydra
import lightning as L
from omegaconf import DictConfig

from ctrlic.codecs.build import build_codec
from ctrlic.codecs.checkpoint import PickleTrust
from ctrlic.codecs.codec import Codec

log = logging.getLogger("ctrlic")


def codec_from_config(cfg: DictConfig) -> Codec:
    return build_codec(cfg.backbone, cfg.get("control"))


def ckpt_trust(cfg: DictConfig) -> PickleTrust:
    """``trust_pickle=true``: this run's ``ckpt_path`` may need the full unpickler (never by default)."""
    return PickleTrust(cfg.get("trust_pickle") is True, "trust_pickle=true")


def _instantiate_group(group: DictConfig | None) -> list:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger), skipping nulls."""
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if c and "_target_" in c]


def callbacks_from_config(cfg: DictConfig) -> list[L.Callback]:
    return _instantiate_group(cfg.get("callbacks"))


def loggers_from_config(cfg: DictConfig) -> list:
    return _instantiate_group(cfg.get("logger"))


def trainer_from_config(cfg: DictConfig, callbacks: list | None = None, loggers: list | None = None) -> L.Trainer:
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks or [], logger=loggers or False)

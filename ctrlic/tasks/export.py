"""task=export: a self-contained codec file from a training checkpoint."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ctrlic.codecs.build import export_codec
from ctrlic.codecs.codec_file import CODEC_SUFFIX
from ctrlic.lightning_modules.checkpoint import open_codec
from ctrlic.tasks.common import ckpt_trust, codec_from_config, log


def export(cfg: DictConfig, run_dir: Path) -> Path:
    codec = open_codec(cfg.ckpt_path, ckpt_trust(cfg)) if cfg.get("ckpt_path") else codec_from_config(cfg)
    path = export_codec(codec, cfg.get("export_path") or run_dir / f"{codec.name}{CODEC_SUFFIX}")
    log.info("exported codec %s (weights %s) to %s", codec.name, codec.fingerprint.hex(), path)
    return path

"""task=export: a self-contained codec file from a training checkpoint."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ctrlic.codecs.build import export_codec
from ctrlic.lightning_modules.checkpoint import open_codec
from ctrlic.tasks.common import codec_from_config, log


def export(cfg: DictConfig, run_dir: Path) -> Path:
    codec = open_codec(cfg.ckpt_path) if cfg.get("ckpt_path") else codec_from_config(cfg)
    path = export_codec(codec, cfg.get("export_path") or run_dir / f"{codec.name}.codec.pt")
    log.info("exported codec %s (weights %s) to %s", codec.name, codec.fingerprint.hex(), path)
    return path

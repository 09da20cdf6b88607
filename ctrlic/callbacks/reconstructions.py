"""After training: decoded samples at several knob values, saved as PNG and sent to the image loggers."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from ctrlic.datamodules.image_io import to_uint8
from ctrlic.evaluation.settings import select_points

log = logging.getLogger(__name__)


def _label(knobs: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in knobs.items()) or "fixed"


class SampleReconstructions(L.Callback):
    """Code the first ``num_images`` evaluation images at ``num_knob_values`` knob settings (real bits).

    Writes ``samples/<image>.png`` (original, then one decoded image per setting, side by side) and
    logs each decoded image with its knob values and bpp as caption. Once, on rank 0, on the CPU, and
    only when an image logger (W&B, TensorBoard) is active: the RD sweep already codes every image.
    """

    def __init__(self, num_images: int = 1, num_knob_values: int = 3, output_dir: str | None = None) -> None:
        if num_images < 1 or num_knob_values < 1:
            raise ValueError(f"callbacks.reconstructions: num_images and num_knob_values must be >= 1,"
                             f" got {num_images} and {num_knob_values}")
        self.num_images, self.num_knob_values = num_images, num_knob_values
        self.output_dir = output_dir
        self.written: list[Path] = []

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        image_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger | TensorBoardLogger)]
        if trainer.global_rank != 0 or not image_loggers:
            return
        codec = pl_module.codec.cpu()
        codec.prepare()
        points = select_points(codec.control.sweep_points() or [{}], self.num_knob_values)
        loader = next(iter(trainer.datamodule.eval_dataloaders().values()))
        out_dir = Path(self.output_dir or trainer.default_root_dir) / "samples"
        out_dir.mkdir(parents=True, exist_ok=True)
        for n, item in enumerate(loader):
            if n == self.num_images:
                break
            x = item["x"]
            name = Path(item["name"][0]).stem
            decoded, captions = [], []
            with torch.no_grad():
                for knobs in points:
                    data = codec.compress(x, knobs)
                    decoded.append(to_uint8(codec.decompress(data)))
                    captions.append(f"{_label(knobs)}: {8 * len(data) / (x.shape[-2] * x.shape[-1]):.3f} bpp")
            path = out_dir / f"{name}.png"
            Image.fromarray(np.concatenate([to_uint8(x), *decoded], axis=1)).save(path)
            self.written.append(path)
            _log_images(image_loggers, f"samples/{name}", decoded, captions, trainer.global_step)
        log.info("sample reconstructions at %s: %s", ", ".join(_label(p) for p in points), out_dir)


def _log_images(loggers, key: str, images: list[np.ndarray], captions: list[str], step: int) -> None:
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=images, caption=captions, step=step)
        elif isinstance(logger, TensorBoardLogger):
            for image, caption in zip(images, captions, strict=True):
                logger.experiment.add_image(f"{key}/{caption.split(':')[0]}", image, step, dataformats="HWC")

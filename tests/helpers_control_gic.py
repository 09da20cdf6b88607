"""Shared pieces of the Control-GIC tests: the tiny VQGAN codec and a few trained steps of it."""

from __future__ import annotations

import lightning as L
import torch
from omegaconf import OmegaConf

from ctrlic.codecs.build import build_codec
from ctrlic.codecs.codec import Codec
from ctrlic.datamodules.image_io import load_rgb8, to_tensor
from tests.conftest import ROOT

CONF = ROOT / "conf"
KODAK = ROOT / "data" / "demo" / "kodak4"


def tiny_configs() -> tuple[dict, dict]:
    """``backbone=vqgan`` (size tiny) and ``control=granularity`` as plain dicts."""
    backbone = {**OmegaConf.to_container(OmegaConf.load(CONF / "backbone" / "vqgan.yaml")), "size": "tiny"}
    control = OmegaConf.to_container(OmegaConf.load(CONF / "control" / "granularity.yaml"))
    return backbone, control


def tiny_codec(seed: int = 0, **backbone_overrides) -> Codec:
    torch.manual_seed(seed)
    backbone, control = tiny_configs()
    return build_codec({**backbone, **backbone_overrides}, control)


def kodak_image(name: str = "kodim23.png") -> torch.Tensor:
    """A bundled Kodak image (1, 3, 512, 768) in [0, 1]."""
    arr, _ = load_rgb8(KODAK / name)
    return to_tensor(arr)[None]


def train_tiny(codec: Codec, steps: int, seed: int = 0, crop: int = 64):
    """Fit ``codec`` with the real VQModule for ``steps`` generator steps on the bundled training crops."""
    from ctrlic.datamodules.images import ImageDataModule
    from ctrlic.lightning_modules.vq import VQModule

    L.seed_everything(seed, workers=True)
    module = VQModule(codec, lr=1e-3, discriminator={"ndf": 8}, lpips={"pretrained": False})
    data = ImageDataModule(train_dir=str(ROOT / "data" / "demo" / "train"), eval_sets={}, crop_size=crop,
                           batch_size=2, num_workers=0, seed=seed)
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        use_distributed_sampler=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    return module, trainer

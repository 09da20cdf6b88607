"""Shared helpers of the lossless tests: tiny MGCF and CALLIC codecs, Kodak crops from data/demo."""

from __future__ import annotations

from pathlib import Path

import torch

from ctrlic.codecs.backbones.mgcf import MGCF
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.control.instance_lora import InstanceLoRA
from ctrlic.datamodules.image_io import load_rgb8

KODAK4 = Path(__file__).resolve().parents[1] / "data" / "demo" / "kodak4"
TINY = {"dim": 16, "depth": 2, "kernel": 7, "mlp_ratio": 4, "mixtures": 5, "patch_size": 8}
TINY_LORA = {
    "lora": [{"pattern": r"blocks\.\d+\.mcg\.w_[av]", "rank": 2}, {"pattern": r"blocks\.\d+\.mlp\.fc1", "rank": 1}],
    "tucker": [{"pattern": r"blocks\.\d+\.mcg\.dwconv", "ranks": [2, 2, 2]}],
    "sweep": [0, 2],
}


def kodak_crop(height: int, width: int, name: str = "kodim23.png", top: int = 200, left: int = 300) -> torch.Tensor:
    """(1, 3, h, w) crop of a bundled Kodak image in [0, 1]."""
    img, _ = load_rgb8(KODAK4 / name)
    crop = torch.from_numpy(img[top:top + height, left:left + width].copy())
    return crop.permute(2, 0, 1)[None].float() / 255


def tiny_mgcf(seed: int = 0, **overrides) -> MGCF:
    torch.manual_seed(seed)
    return MGCF(**(TINY | overrides)).eval()


def tiny_callic(seed: int = 0, **overrides) -> Codec:
    return Codec(tiny_mgcf(seed), InstanceLoRA(**(TINY_LORA | overrides)), name="mgcf")


def as_uint8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8)

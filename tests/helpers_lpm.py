"""Tiny TIC backbones and LPM codecs built from the real configs, for the TIC / LPM tests."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from ctrlic.codecs.build import build_codec
from ctrlic.codecs.codec import Codec
from tests.conftest import ROOT

CONF = ROOT / "conf"
#: the two prompt sets of the smoke runs, around λ₀ = 0.0067: knob values 0 (0.0035), 1 (λ₀), 2 (0.013)
SMOKE_LAMBDAS = [0.0035, 0.013]


def backbone_config(name: str, size: str = "tiny") -> dict:
    """``conf/backbone/<name>.yaml`` as a plain dict, at ``size``."""
    return {**OmegaConf.to_container(OmegaConf.load(CONF / "backbone" / f"{name}.yaml")), "size": size}


def control_config(preset: str, **overrides) -> dict:
    """``conf/control/<preset>.yaml`` merged onto its ``layer_prompts`` defaults."""
    node = OmegaConf.load(CONF / "control" / f"{preset}.yaml")
    base = OmegaConf.load(CONF / "control" / "layer_prompts.yaml")
    merged = OmegaConf.merge(base, OmegaConf.masked_copy(node, [k for k in node if k != "defaults"]), overrides)
    return OmegaConf.to_container(merged)


def tiny_lpm_codec(backbone: str = "tic", preset: str = "layer_prompts_tic", seed: int = 0, **overrides) -> Codec:
    """A tiny backbone with two narrow prompt sets (λ = 0.0035, 0.013 around λ₀ = 0.0067)."""
    torch.manual_seed(seed)
    control = control_config(preset, **{"lambdas": SMOKE_LAMBDAS, "width": 8, **overrides})
    return build_codec(backbone_config(backbone), control)


def randomize_prompts(codec: Codec, scale: float = 0.5) -> None:
    """Give the prompt sets weights large enough to move the output visibly (fresh ones barely do)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in codec.control.attached_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale / max(1, p[0].numel()) ** 0.5)

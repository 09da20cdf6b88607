"""Tiny β-CALICE codecs for tests: a 'trained' CALICE-STF (non-zero α-adapters) and the β set on top."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from ctrlic.codecs.build import build_codec
from tests.conftest import ROOT, tiny_stf_with_adapters


def beta_control(alpha_control: dict) -> dict:
    """``control=beta_adapters`` (as composed) with ``alpha_control`` as its α set."""
    conf = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "control" / "beta_adapters.yaml"))
    conf.pop("defaults")
    return {**conf, "alpha": alpha_control}


def randomise(codec, suffix: str, std: float = 0.05) -> None:
    """Give every adapter parameter ending in ``suffix`` non-zero values, as after training."""
    with torch.no_grad():
        for name, p in codec.backbone.named_parameters():
            if name.endswith(suffix):
                p.normal_(0, std)


def tiny_calice_and_beta(seed: int = 0):
    """(variable-rate codec with trained-looking α-adapters, β codec loaded from it, configs).

    The β codec is built the way ``experiment=beta_calice_stf`` builds it: the α set attached,
    the variable-rate checkpoint loaded, then the β set stacked on top.
    """
    torch.manual_seed(seed)
    backbone, alpha = tiny_stf_with_adapters()
    calice = build_codec(backbone, alpha).eval()
    randomise(calice, "W_b")
    checkpoint = calice.backbone.state_dict()
    beta = build_codec({**backbone, "checkpoint": checkpoint, "adapted": {"scheme": alpha, "merge": False}},
                       beta_control(alpha)).eval()
    return calice, beta, backbone, alpha

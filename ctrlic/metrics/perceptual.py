"""LPIPS with the real loading path, and a clear message when its backbone weights are missing."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

#: torchvision's ImageNet backbones that LPIPS builds on (file names in torch hub's cache)
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth",
                  "squeeze": "squeezenet1_1-b8a52dc0.pth"}


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights that cannot be downloaded here are not in the cache."""


def torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


class LPIPS(nn.Module):
    """LPIPS (Zhang et al. 2018) on images in [0, 1]; inputs are scaled to [−1, 1] as LPIPS expects.

    ``pretrained=True`` loads torchvision's ImageNet backbone from torch hub's cache (downloading it
    when online) and the LPIPS linear heads shipped with the ``lpips`` package. ``pretrained=False``
    gives a randomly initialised backbone: for tests on machines without the weights.
    """

    def __init__(self, net: str = "alex", pretrained: bool = True) -> None:
        super().__init__()
        import lpips

        if net not in BACKBONE_FILES:
            raise ValueError(f"LPIPS net={net!r}; choose one of {', '.join(BACKBONE_FILES)}")
        try:
            self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=not pretrained, verbose=False).eval()
        except (OSError, RuntimeError) as err:  # URLError is an OSError: no network, no cached file
            path = torch_hub_checkpoints() / BACKBONE_FILES[net]
            raise MissingWeightsError(
                f"LPIPS-{net} needs torchvision's ImageNet weights and could not get them ({err}): put "
                f"{BACKBONE_FILES[net]} in {path.parent} (or set TORCH_HOME), or use pretrained=false "
                "(random backbone, for tests only)") from None
        for p in self.model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPS:
        super().train(mode)
        self.model.eval()  # dropout in the LPIPS heads stays off
        return self

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """Mean LPIPS distance of a batch."""
        return self.model(x_hat * 2 - 1, x * 2 - 1).mean()

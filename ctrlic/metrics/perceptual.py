"""Full-reference perceptual metrics, LPIPS and DISTS, built from their packages with our weight loading.

The networks come from ``lpips`` and ``DISTS_pytorch``; only their ImageNet backbones are loaded here
(``weights`` path or torch hub's cache, see ``weights.py``), since those packages would download them.
``pretrained=False`` keeps the backbone random: for tests on machines without the weights. The
``*Metric`` classes are torchmetrics metrics (sum and count states), so they reduce right under DDP.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from ctrlic.metrics.weights import MissingWeightsError, load_backbone_state, load_into, torch_hub_checkpoints

__all__ = ["DISTS", "LPIPS", "DISTSMetric", "LPIPSMetric", "MissingWeightsError", "torch_hub_checkpoints"]

LPIPS_NETS = ("alex", "vgg", "squeeze")


def _features_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``features.K.weight`` of a torchvision classifier as ``K.weight``."""
    return {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}


class _Frozen(nn.Module):
    """A metric network: no gradients into its weights, never in training mode (dropout stays off)."""

    def _freeze(self) -> None:
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> _Frozen:
        return super().train(False)


class LPIPS(_Frozen):
    """LPIPS (Zhang et al. 2018) on images in [0, 1]; inputs are scaled to [−1, 1] as LPIPS expects.

    The linear heads ship with the ``lpips`` package; the backbone (``net`` = alex, vgg, squeeze) is
    torchvision's ImageNet model, read from ``weights`` or torch hub's cache when ``pretrained``.
    """

    def __init__(self, net: str = "alex", pretrained: bool = True, weights: str | Path | None = None) -> None:
        super().__init__()
        import lpips

        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS net={net!r}; choose one of {', '.join(LPIPS_NETS)}")
        self.model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        if pretrained:
            features = _features_state(load_backbone_state(net, weights))
            backbone = self.model.net
            state = {key: features.get(key.split(".", 1)[1]) for key in backbone.state_dict()}
            load_into(backbone, {k: v for k, v in state.items() if v is not None}, f"LPIPS-{net}")
        self._freeze()

    def distances(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """LPIPS distance of each image of the batch, shape (N,)."""
        return self.model(x_hat * 2 - 1, x * 2 - 1).reshape(-1)

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """Mean LPIPS distance of a batch."""
        return self.distances(x_hat, x).mean()


class DISTS(_Frozen):
    """DISTS (Ding et al. 2020) on images in [0, 1], from ``DISTS_pytorch``.

    Its α/β weights ship with the package; the VGG16 backbone is torchvision's ImageNet model, read
    from ``weights`` or torch hub's cache when ``pretrained`` (the package would download it).
    """

    def __init__(self, pretrained: bool = True, weights: str | Path | None = None) -> None:
        super().__init__()
        from DISTS_pytorch import DISTS_pt
        from torchvision.models import vgg

        features = vgg.make_layers(vgg.cfgs["D"])  # VGG16's conv part, as models.vgg16().features
        if pretrained:
            load_into(features, _features_state(load_backbone_state("vgg", weights)), "DISTS-vgg16")
        # the package builds its stages from models.vgg16(pretrained=True): hand it ours instead
        with mock.patch.object(DISTS_pt, "models", SimpleNamespace(vgg16=lambda **_: SimpleNamespace(features=features))):
            self.model = DISTS_pt.DISTS(load_weights=False)
        head = torch.load(Path(DISTS_pt.__file__).with_name("weights.pt"), map_location="cpu", weights_only=True)
        with torch.no_grad():
            self.model.alpha.copy_(head["alpha"])
            self.model.beta.copy_(head["beta"])
        self._freeze()

    def distances(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """DISTS of each image of the batch, shape (N,); differentiable in ``x_hat`` when grad is on."""
        return self.model(x, x_hat, require_grad=torch.is_grad_enabled()).reshape(-1)

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        return self.distances(x_hat, x).mean()


class _MeanDistance(Metric):
    """Mean of a per-image distance over everything seen, on every rank (sum and count states)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, net: nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = net
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, x_hat: Tensor, x: Tensor) -> None:
        """``x_hat``, ``x``: (N, 3, H, W) in [0, 1]."""
        with torch.no_grad():
            d = self.net.distances(x_hat.float(), x.float())
        self.total += d.double().sum()
        self.count += d.numel()

    def compute(self) -> Tensor:
        return (self.total / self.count).float()


class LPIPSMetric(_MeanDistance):
    """Mean LPIPS (``net`` = alex or vgg) as a torchmetrics metric."""

    def __init__(self, net: str = "alex", pretrained: bool = True, weights: str | Path | None = None,
                 **kwargs) -> None:
        super().__init__(LPIPS(net, pretrained, weights), **kwargs)


class DISTSMetric(_MeanDistance):
    """Mean DISTS as a torchmetrics metric."""

    def __init__(self, pretrained: bool = True, weights: str | Path | None = None, **kwargs) -> None:
        super().__init__(DISTS(pretrained, weights), **kwargs)


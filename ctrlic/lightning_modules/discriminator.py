"""PatchGAN discriminator with hinge loss (pix2pix / taming layout), shared by the GAN-trained codecs.

``AdversarialLoss`` holds the discriminator as ``discriminator`` so a training module that stores
it as ``self.loss`` has the state-dict keys of Control-GIC's checkpoints (``loss.discriminator.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NLayerDiscriminator(nn.Module):
    """PatchGAN: stride-2 4×4 convolutions with BatchNorm and LeakyReLU(0.2), one logit per patch.

    Control-GIC uses ``n_layers=2, ndf=64`` (0.66M parameters).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


def _init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss ½(E[relu(1 − D(x))] + E[relu(1 + D(x̂))])."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_loss(logits_fake: Tensor) -> Tensor:
    """Generator side of the hinge GAN: −E[D(x̂)]."""
    return -logits_fake.mean()


def adaptive_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor, scale: float, max_weight: float = 1e4) -> Tensor:
    """Esser et al.'s balance ‖∇nll‖ / ‖∇g‖ at the decoder's last layer, times ``scale`` (no gradient)."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = nll_grad.norm() / (g_grad.norm() + 1e-4)
    return (weight.clamp(0.0, max_weight) * scale).detach()


class AdversarialLoss(nn.Module):
    """The discriminator plus its hinge losses; images in [−1, 1]."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 2) -> None:
        super().__init__()
        self.discriminator = NLayerDiscriminator(in_channels, ndf, n_layers)

    def generator(self, x_hat: Tensor) -> Tensor:
        return generator_loss(self.discriminator(x_hat))

    def discriminator_loss(self, x: Tensor, x_hat: Tensor) -> Tensor:
        return hinge_d_loss(self.discriminator(x), self.discriminator(x_hat.detach()))

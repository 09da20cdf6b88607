"""Rate–distortion(–perception) losses shared by the training modules, one class per loss.

Each is chosen by a config file in ``conf/module/loss/`` (``_target_`` one of these classes), so a new
loss is a new class and a new file. All compute in float32 and return their terms: ``loss``, ``bpp``,
``mse`` and whatever distortion they add.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ctrlic.metrics.perceptual import LPIPS
from ctrlic.metrics.quality import bits_per_pixel, ms_ssim


class RateDistortionLoss(nn.Module):
    """Base: rate in bits per pixel and MSE of ``out`` against ``x``; subclasses combine them with λ.

    Perceptual terms see x̂ as the network gives it, as in the authors' losses; ``clamp=True`` clips
    it to [0, 1] first (no gradient then reaches values outside the range).
    """

    def __init__(self, clamp: bool = False) -> None:
        super().__init__()
        self.clamp = clamp

    def seen(self, x_hat: Tensor) -> Tensor:
        """x̂ as the perceptual terms see it (clipped to [0, 1] only with ``clamp``)."""
        return x_hat.clamp(0, 1) if self.clamp else x_hat

    def forward(self, out: dict, x: Tensor, lmbda: float, num_pixels: int | None = None) -> dict[str, Tensor]:
        """``num_pixels`` charges the rate to other pixels than x's (the unpadded image in validation)."""
        n, _, h, w = x.shape
        bpp = bits_per_pixel(out["likelihoods"], num_pixels or n * h * w)
        x_hat, x = out["x_hat"].float(), x.float()
        terms = {"bpp": bpp, "mse": (x_hat - x).pow(2).mean()}
        terms["loss"] = self.combine(terms, x_hat, x, lmbda)
        return terms

    def combine(self, terms: dict[str, Tensor], x_hat: Tensor, x: Tensor, lmbda: float) -> Tensor:
        """The loss from the terms (add any new term to ``terms``, it is logged)."""
        raise NotImplementedError


class MSERateLoss(RateDistortionLoss):
    """``λ·255²·MSE + bpp`` (CompressAI; λ weighs the distortion)."""

    def combine(self, terms: dict[str, Tensor], x_hat: Tensor, x: Tensor, lmbda: float) -> Tensor:
        return lmbda * 255**2 * terms["mse"] + terms["bpp"]


class MSSSIMRateLoss(RateDistortionLoss):
    """``λ·(1 − MS-SSIM) + bpp`` (CompressAI's MS-SSIM models; λ weighs the distortion)."""

    def combine(self, terms: dict[str, Tensor], x_hat: Tensor, x: Tensor, lmbda: float) -> Tensor:
        terms["ms_ssim"] = ms_ssim(self.seen(x_hat), x, round8=False)
        return lmbda * (1 - terms["ms_ssim"]) + terms["bpp"]


class LPIPSRateLoss(RateDistortionLoss):
    """``λ·bpp + mse_weight·MSE + lpips_weight·LPIPS`` (λ weighs the rate).

    CALICE's LPIPS loss is 150·MSE + 0.1·LPIPS, with LPIPS inputs scaled to [−1, 1] (the authors'
    training passes [0, 1] unnormalised, their evaluation scales; we scale in both). β-CALICE's RDP
    loss is this with ``lpips_weight = 2β``, set per batch by ``VariableRateModule``. ``lpips`` holds
    the LPIPS options: ``net``, ``pretrained``, ``weights`` (backbone file).
    """

    def __init__(self, mse_weight: float = 150.0, lpips_weight: float = 0.1, lpips: Mapping | None = None,
                 clamp: bool = False) -> None:
        super().__init__(clamp)
        self.mse_weight, self.lpips_weight = mse_weight, lpips_weight
        self.lpips = LPIPS(**(lpips or {}))

    def combine(self, terms: dict[str, Tensor], x_hat: Tensor, x: Tensor, lmbda: float) -> Tensor:
        terms["lpips"] = self.lpips(self.seen(x_hat), x)
        return lmbda * terms["bpp"] + self.mse_weight * terms["mse"] + self.lpips_weight * terms["lpips"]

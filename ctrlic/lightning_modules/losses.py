"""Rate–distortion(–perception) losses shared by the training modules."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ctrlic.metrics.perceptual import LPIPS
from ctrlic.metrics.quality import bits_per_pixel, ms_ssim

DISTORTIONS = ("mse", "ms-ssim", "lpips")


class RateDistortionLoss(nn.Module):
    """The losses of CompressAI and CALICE, computed in float32.

    * ``mse``: ``λ·255²·MSE + bpp``;  ``ms-ssim``: ``λ·(1 − MS-SSIM) + bpp`` (λ weighs distortion);
    * ``lpips``: ``λ·bpp + mse_weight·MSE + lpips_weight·LPIPS`` (λ weighs the rate; CALICE's
      LPIPS loss, 150·MSE + 0.1·LPIPS, with LPIPS inputs scaled to [−1, 1] — the authors' training
      passes [0, 1] unnormalised, their evaluation scales; we scale in both). β-CALICE's RDP loss is
      this with ``lpips_weight = 2β``, set per batch by ``VariableRateModule``.

    ``lpips`` holds the LPIPS options: ``net``, ``pretrained``, ``weights`` (backbone file). MS-SSIM
    and LPIPS see x̂ as the network gives it, as in the authors' losses; ``clamp=True`` clips it to
    [0, 1] first (no gradient then reaches values outside the range).
    """

    def __init__(self, distortion: str = "mse", mse_weight: float = 150.0, lpips_weight: float = 0.1,
                 lpips: Mapping | None = None, clamp: bool = False) -> None:
        super().__init__()
        if distortion not in DISTORTIONS:
            raise ValueError(f"module.distortion={distortion!r}; choose one of {', '.join(DISTORTIONS)}")
        self.distortion = distortion
        self.mse_weight, self.lpips_weight, self.clamp = mse_weight, lpips_weight, clamp
        self.lpips = LPIPS(**(lpips or {})) if distortion == "lpips" else None

    def forward(self, out: dict, x: Tensor, lmbda: float, num_pixels: int | None = None) -> dict[str, Tensor]:
        """``num_pixels`` charges the rate to other pixels than x's (the unpadded image in validation)."""
        n, _, h, w = x.shape
        bpp = bits_per_pixel(out["likelihoods"], num_pixels or n * h * w)
        x_hat, x = out["x_hat"].float(), x.float()
        mse = (x_hat - x).pow(2).mean()
        terms = {"bpp": bpp, "mse": mse}
        seen = x_hat.clamp(0, 1) if self.clamp else x_hat
        if self.distortion == "mse":
            terms["loss"] = lmbda * 255**2 * mse + bpp
        elif self.distortion == "ms-ssim":
            terms["ms_ssim"] = ms_ssim(seen, x, round8=False)
            terms["loss"] = lmbda * (1 - terms["ms_ssim"]) + bpp
        else:
            terms["lpips"] = self.lpips(seen, x)
            terms["loss"] = lmbda * bpp + self.mse_weight * mse + self.lpips_weight * terms["lpips"]
        return terms

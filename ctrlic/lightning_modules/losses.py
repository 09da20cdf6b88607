"""Rate–distortion losses shared by the training modules."""

from __future__ import annotations

from torch import Tensor, nn

from ctrlic.metrics.quality import bits_per_pixel, ms_ssim

DISTORTIONS = ("mse", "ms-ssim")


class RateDistortionLoss(nn.Module):
    """``λ·255²·MSE + bpp`` or ``λ·(1 − MS-SSIM) + bpp`` (CompressAI's recipe), all in float32."""

    def __init__(self, distortion: str = "mse") -> None:
        super().__init__()
        if distortion not in DISTORTIONS:
            raise ValueError(f"module.distortion={distortion!r}; choose one of {', '.join(DISTORTIONS)}")
        self.distortion = distortion

    def forward(self, out: dict, x: Tensor, lmbda: float, num_pixels: int | None = None) -> dict[str, Tensor]:
        """``num_pixels`` charges the rate to other pixels than x's (the unpadded image in validation)."""
        n, _, h, w = x.shape
        bpp = bits_per_pixel(out["likelihoods"], num_pixels or n * h * w)
        x_hat, x = out["x_hat"].float(), x.float()
        mse = (x_hat - x).pow(2).mean()
        terms = {"bpp": bpp, "mse": mse}
        if self.distortion == "mse":
            terms["loss"] = lmbda * 255**2 * mse + bpp
        else:
            terms["ms_ssim"] = ms_ssim(x_hat.clamp(0, 1), x, round8=False)
            terms["loss"] = lmbda * (1 - terms["ms_ssim"]) + bpp
        return terms

"""Full-reference quality metrics on images in [0, 1], measured on 8-bit rounded pixels."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from torch import Tensor

#: the standard five MS-SSIM scale weights (Wang et al. 2003)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE = 11


def to_8bit(x: Tensor) -> Tensor:
    """Round to the 8-bit grid, as a decoded PNG would be."""
    return (x.clamp(0, 1) * 255).round() / 255


def psnr(x: Tensor, y: Tensor) -> float:
    """PSNR in dB of two images in [0, 1] after 8-bit rounding (CompressAI's convention)."""
    mse = torch.mean((to_8bit(x).double() - to_8bit(y).double()) ** 2).item()
    return float("inf") if mse == 0 else -10 * math.log10(mse)


def ms_ssim(x: Tensor, y: Tensor, *, data_range: float = 1.0, round8: bool = True) -> Tensor:
    """MS-SSIM that also works on small crops: drops the coarsest scales that do not fit.

    pytorch_msssim needs the short side > (11 − 1)·2^(scales − 1); for 64×64 training crops only
    the finest scales fit, and their weights are renormalised.
    """
    if round8:
        x, y = to_8bit(x), to_8bit(y)
    side = min(x.shape[-2:])
    levels = len(MS_SSIM_WEIGHTS)
    while levels > 1 and side <= (WIN_SIZE - 1) * 2 ** (levels - 1):
        levels -= 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], device=x.device)
    weights = weights / weights.sum()
    win_size = min(WIN_SIZE, side // 2 * 2 - 1)
    win = _fspecial_gauss_1d(win_size, 1.5).repeat([x.shape[1]] + [1] * (x.dim() - 1)).to(x.device)
    x, y = x.float(), y.float()
    values = []
    for level in range(levels):
        ssim_c, cs_c = _ssim(x, y, win=win, data_range=data_range, size_average=False, K=(0.01, 0.03))
        if level < levels - 1:
            values.append(torch.relu(cs_c))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    values.append(torch.relu(ssim_c))
    stacked = torch.stack(values, dim=0)  # (levels, N, C)
    return torch.prod(stacked ** weights[:, None, None], dim=0).mean()


def bits_per_pixel(likelihoods: dict[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated rate, Σ −log₂ p over all latents, per pixel (batch summed)."""
    return sum(torch.log(lk.float()).sum() for lk in likelihoods.values()) / (-math.log(2) * num_pixels)


def bits_per_subpixel(out: Mapping, x: Tensor) -> Tensor:
    """−Σ log₂ q(x) / (N·3·H·W), from ``log_likelihoods`` when the backbone gives them (no underflow)."""
    if "log_likelihoods" in out:
        bits = -out["log_likelihoods"].float().sum() / math.log(2)
    else:
        bits = sum(-lk.float().clamp_min(1e-30).log2().sum() for lk in out["likelihoods"].values())
    return bits / x.numel()

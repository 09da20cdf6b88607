"""Control-GIC's grain masks: patch spatial entropy and the entropy-ordered fine/medium/coarse masks.

The maths the VQGAN backbone needs to code an image at given area ratios; the granularity control
scheme sets the ratios. Ratios are (fine, medium, coarse) = (r₁, r₂, r₃), area fractions summing to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ctrlic.errors import UserError

#: names of the grains in the order of the paper's ratio triples (r₁, r₂, r₃) = (fine, medium, coarse)
GRAINS = ("fine", "medium", "coarse")
#: ITU-R BT.601 luma weights used for the entropy map (as in the official code)
LUMA = (0.2989, 0.5870, 0.1140)
#: the ratio sum may be off by this much (float32 knob values in the bitstream header)
SUM_TOLERANCE = 1e-4


class GrainRatioError(UserError):
    """Granularity ratios that are not three non-negative area fractions summing to 1."""


@dataclass(frozen=True)
class EntropySettings:
    """Gaussian-kernel histogram of patch values (paper eq. 9–11): bins over [−1, 1] and σ."""

    bins: int = 32
    sigma: float = 0.01


def patch_entropy(x: Tensor, patch: int, settings: EntropySettings = EntropySettings()) -> Tensor:
    """Spatial entropy (nats) of every non-overlapping ``patch``×``patch`` block of ``x`` in [−1, 1].

    Each pixel spreads over 32 bins by a Gaussian kernel of width σ (eq. 9–10); the patch
    histogram is the mean over its pixels, normalised, and H = −Σ p ln p (eq. 11).
    Returns (B, H/patch, W/patch).
    """
    return entropy_of(pixel_kernel(x, settings), patch)


def pixel_kernel(x: Tensor, settings: EntropySettings = EntropySettings()) -> Tensor:
    """Per-pixel soft bin assignment exp(−½((v − b)/σ)²) of the luma, (B, bins, H, W)."""
    weights = x.new_tensor(LUMA).view(1, 3, 1, 1)
    gray = (x * weights).sum(1, keepdim=True)
    centres = torch.linspace(-1, 1, settings.bins, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return torch.exp(-0.5 * ((gray - centres) / settings.sigma) ** 2)


def entropy_of(kernel: Tensor, patch: int) -> Tensor:
    """Entropy of the patch histograms: the per-pixel kernel averaged over each patch."""
    pdf = F.avg_pool2d(kernel, patch)
    p = pdf / (pdf.sum(1, keepdim=True) + 1e-10)
    return -(p * torch.log(p + 1e-40)).sum(1)


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """(fine, medium, coarse) area fractions, each in [0, 1] and summing to 1."""
    if len(ratios) != 3:
        raise GrainRatioError(f"granularity ratios are three numbers (fine, medium, coarse), got {list(ratios)}")
    fine, medium, coarse = (float(r) for r in ratios)
    if min(fine, medium, coarse) < 0 or abs(fine + medium + coarse - 1) > SUM_TOLERANCE:
        raise GrainRatioError(f"granularity ratios fine={fine:g}, medium={medium:g}, coarse={coarse:g} must be "
                              "non-negative and sum to 1 (e.g. --ratios 0.5,0.4,0.1)")
    return fine, medium, coarse


def grain_masks(x: Tensor, ratios: Sequence[float], coarse_patch: int = 16,
                settings: EntropySettings = EntropySettings()) -> tuple[Tensor, Tensor, Tensor]:
    """Boolean masks (B, 1, ·, ·) of the coarse (H/16), medium (H/8) and fine (H/4) grains.

    Area fractions follow ``ratios`` (rounded to whole patches): the lowest-entropy 16×16 patches
    become coarse, then the lowest-entropy 8×8 patches outside them medium, the rest fine.
    """
    return masks_from_kernel(pixel_kernel(x, settings), ratios, coarse_patch)


def masks_from_kernel(kernel: Tensor, ratios: Sequence[float], coarse_patch: int = 16) -> tuple[Tensor, Tensor, Tensor]:
    """``grain_masks`` from a precomputed ``pixel_kernel`` (reused when only the ratios change)."""
    _, medium, coarse = check_ratios(ratios)
    e16, e8 = entropy_of(kernel, coarse_patch), entropy_of(kernel, coarse_patch // 2)
    b = kernel.shape[0]
    n16, n8 = e16[0].numel(), e8[0].numel()
    k_c, k_m = round(n16 * coarse), round(n8 * medium)
    mask_c = _lowest(e16.reshape(b, -1), k_c).view_as(e16)
    covered = mask_c.repeat_interleave(2, 1).repeat_interleave(2, 2)
    free = e8.masked_fill(covered, float("inf")).reshape(b, -1)
    k_m = min(k_m, n8 - 4 * k_c)
    mask_m = _lowest(free, k_m).view_as(e8) & ~covered
    taken = mask_m | covered
    mask_f = ~taken.repeat_interleave(2, 1).repeat_interleave(2, 2)
    return mask_c[:, None], mask_m[:, None], mask_f[:, None]


def _lowest(values: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` smallest entries per row (stable order breaks ties by position)."""
    mask = torch.zeros_like(values, dtype=torch.bool)
    if k > 0:
        order = torch.sort(values, dim=1, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask

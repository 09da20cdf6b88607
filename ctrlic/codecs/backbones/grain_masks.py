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
#: mask rules: the authors' ``TripleGrainFixedEntropyRouter`` or exact area fractions
ROUTERS = ("official", "exact")


class GrainRatioError(UserError):
    """Granularity ratios that are not three non-negative area fractions summing to 1."""


class RouterError(UserError):
    """A mask rule that does not exist."""


def check_router(router: str) -> str:
    if router not in ROUTERS:
        raise RouterError(f"router={router!r}: choose official (the authors' TripleGrainFixedEntropyRouter) "
                          "or exact (exact area fractions)")
    return router


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
                settings: EntropySettings = EntropySettings(), router: str = "official") -> tuple[Tensor, Tensor, Tensor]:
    """Boolean masks (B, 1, ·, ·) of the coarse (H/16), medium (H/8) and fine (H/4) grains.

    Low-entropy 16×16 patches become coarse, then low-entropy 8×8 patches outside them medium, the
    rest fine; ``router`` says how many (``official_masks`` or ``exact_masks``).
    """
    return masks_from_kernel(pixel_kernel(x, settings), ratios, coarse_patch, router)


def masks_from_kernel(kernel: Tensor, ratios: Sequence[float], coarse_patch: int = 16,
                      router: str = "official") -> tuple[Tensor, Tensor, Tensor]:
    """``grain_masks`` from a precomputed ``pixel_kernel`` (reused when only the ratios change)."""
    rule = {"official": official_masks, "exact": exact_masks}[check_router(router)]
    return rule(entropy_of(kernel, coarse_patch), entropy_of(kernel, coarse_patch // 2), ratios)


def exact_masks(e16: Tensor, e8: Tensor, ratios: Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
    """Exact area fractions from entropy maps (B, h, w) and (B, 2h, 2w).

    The ``round(N₁₆·r₃)`` lowest-entropy 16×16 patches are coarse, then the ``round(N₈·r₂)``
    lowest-entropy free 8×8 patches medium (stable sort: ties go by position), the rest fine;
    with fine = 0 every free 8×8 patch is medium, so no fine cell is coded.
    """
    fine, medium, coarse = check_ratios(ratios)
    b = e16.shape[0]
    n16, n8 = e16[0].numel(), e8[0].numel()
    k_c, k_m = round(n16 * coarse), round(n8 * medium)
    mask_c = _lowest(e16.reshape(b, -1), k_c).view_as(e16)
    covered = _up(mask_c, 2)
    free = e8.masked_fill(covered, float("inf")).reshape(b, -1)
    k_m = n8 - 4 * k_c if fine == 0 else min(k_m, n8 - 4 * k_c)
    mask_m = _lowest(free, k_m).view_as(e8) & ~covered
    mask_f = ~_up(mask_m | covered, 2)
    return mask_c[:, None], mask_m[:, None], mask_f[:, None]


def official_masks(e16: Tensor, e8: Tensor, ratios: Sequence[float]) -> tuple[Tensor, Tensor, Tensor]:
    """The authors' rule (Control-GIC ``TripleGrainFixedEntropyRouter``), per image.

    A grain whose ratio is 0 gets no cell and a grain alone gets every cell. Otherwise coarse =
    16×16 patches with entropy strictly below the k-th smallest, ``k = round(N₁₆·r₃)`` (so one
    patch fewer when entropies differ); with a medium grain, the 8×8 entropies are zeroed under
    coarse patches and medium = free 8×8 patches strictly below the entry at
    ``round(4·N₁₆·r₃ + N₈·r₂)`` of their sorted list; the rest is fine. Ties at a threshold fall on
    the finer grain. Their code ranks over the whole batch; we rank each image alone.
    """
    fine, medium, coarse = check_ratios(ratios)
    masks = [_official_one(a, b, fine, medium, coarse) for a, b in zip(e16, e8, strict=True)]
    return tuple(torch.stack([m[i] for m in masks])[:, None] for i in range(3))


def _official_one(e16: Tensor, e8: Tensor, fine: float, medium: float, coarse: float) -> tuple[Tensor, Tensor, Tensor]:
    """``official_masks`` of one image: entropy maps (h, w) and (2h, 2w) → masks (h, w), (2h, 2w), (4h, 4w)."""
    none_c, none_m = torch.zeros_like(e16, dtype=torch.bool), torch.zeros_like(e8, dtype=torch.bool)
    if (fine == 0) + (medium == 0) + (coarse == 0) == 2:  # one grain takes every cell
        mask_c, mask_m = none_c | (coarse > 0), none_m | (medium > 0)
    else:
        mask_c = e16 < _kth_smallest(e16, round(e16.numel() * coarse)) if coarse > 0 else none_c
        covered = _up(mask_c, 2)
        if medium == 0:
            mask_m = none_m
        elif fine == 0:
            mask_m = ~covered
        elif coarse == 0:
            mask_m = e8 < _kth_smallest(e8, round(e8.numel() * medium))
        else:
            k = round(4 * e16.numel() * coarse + e8.numel() * medium)
            mask_m = (e8 < _kth_smallest(e8 * ~covered, k)) & ~covered
    return mask_c, mask_m, ~_up(_up(mask_c, 2) | mask_m, 2)


def _kth_smallest(values: Tensor, k: int) -> Tensor:
    """The k-th smallest entry (1-based; k = 0 gives the smallest), as the official thresholds."""
    return torch.sort(values.flatten()).values[max(k - 1, 0)]


def _up(mask: Tensor, factor: int) -> Tensor:
    """A boolean mask (…, h, w) repeated ``factor``×``factor``."""
    return mask.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def _lowest(values: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` smallest entries per row (stable order breaks ties by position)."""
    mask = torch.zeros_like(values, dtype=torch.bool)
    if k > 0:
        order = torch.sort(values, dim=1, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask

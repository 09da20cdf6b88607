"""The DLPR "3P" parallel scan: inside a P×P patch, pixel (i, j) is coded at step 2i + j + 1.

Every step's group can be coded in parallel because the context masks only reach pixels of earlier
steps; a patch takes 3P − 2 steps instead of P² (DLPR ``coding_order_table7x7``, mask "3P").
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctrlic.errors import UserError


class ScanError(UserError):
    """A patch or kernel size the scan cannot use."""


def num_steps(patch: int) -> int:
    """Steps of the 3P scan of a P×P patch: 3P − 2."""
    return 3 * patch - 2


def step_table(patch: int) -> Tensor:
    """(P, P) int64 table of the step (1-based) at which each pixel is coded."""
    if patch < 1:
        raise ScanError(f"patch size must be at least 1, got {patch}")
    i = torch.arange(patch)[:, None]
    j = torch.arange(patch)[None, :]
    return 2 * i + j + 1


def group(patch: int, step: int) -> tuple[Tensor, Tensor]:
    """Rows and columns of the pixels coded at ``step`` (1-based), in increasing row order."""
    i = torch.arange(patch)
    j = step - 1 - 2 * i
    keep = (j >= 0) & (j < patch)
    return i[keep], j[keep]


def context_mask(kernel: int, include_centre: bool) -> Tensor:
    """(k, k) 0/1 mask of the taps that only reach earlier steps: dy ≤ 0 and 2·dy + dx < 0.

    The embedding excludes the centre (its pixel is not decoded yet); deeper layers include it
    (their input at the centre already depends only on earlier steps). Taps of the same step,
    such as (dy, dx) = (−1, +2), stay masked in every layer.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ScanError(f"masked kernels must have an odd size, got {kernel}")
    r = kernel // 2
    dy = torch.arange(-r, r + 1)[:, None]
    dx = torch.arange(-r, r + 1)[None, :]
    mask = (dy <= 0) & (2 * dy + dx < 0)
    if include_centre:
        mask |= (dy == 0) & (dx == 0)
    return mask.float()


def patchify(x: Tensor, patch: int, value: float = 0.0) -> tuple[Tensor, tuple[int, int, int]]:
    """(B, C, H, W) → (B·nh·nw, C, P, P), padding right/bottom with ``value`` to a multiple of P."""
    b, c, h, w = x.shape
    ph, pw = (-h) % patch, (-w) % patch
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph), value=value)
    nh, nw = x.shape[-2] // patch, x.shape[-1] // patch
    x = x.reshape(b, c, nh, patch, nw, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * nh * nw, c, patch, patch), (b, nh, nw)


def unpatchify(x: Tensor, grid: tuple[int, int, int], height: int, width: int) -> Tensor:
    """Inverse of ``patchify``, cropped back to (B, C, height, width)."""
    b, nh, nw = grid
    n, c, p, _ = x.shape
    x = x.reshape(b, nh, nw, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, nh * p, nw * p)
    return x[..., :height, :width]

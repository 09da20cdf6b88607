"""Cache-then-crop inference (CALLIC §3.3): the per-step mixture parameters of a stack of patches.

Activations entering each masked convolution are cached (zero-padded). At scan step t only the
group-t positions are computed: their k×k windows are cropped from the caches (only the taps the
mask lets through), and 1×1 layers, LayerNorms and the head run on those positions alone. Features
of a position depend only on earlier steps, so the cached values equal the full forward's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs.lossless import mixture, scan


def _taps(conv: nn.Conv2d, padded_width: int) -> tuple[Tensor, Tensor]:
    """The (row, col) taps the mask keeps, and their flat offsets from the centre in the padded cache."""
    k = conv.kernel_size[0]
    u, v = torch.nonzero(conv.mask.cpu(), as_tuple=True)
    return torch.stack([u, v]), (u - k // 2) * padded_width + (v - k // 2)


def _cpu(module: nn.Module) -> tuple[Tensor, Tensor]:
    """Weight (1×1 convolutions flattened to matrices) and bias of a layer, detached, on the CPU, float32."""
    weight = module.weight.detach().float().cpu()
    return (weight.flatten(1) if weight.dim() == 4 else weight), module.bias.detach().float().cpu()


class CachedScan:
    """Step-by-step evaluation of an MGCF over ``n`` patches; ``params(t)`` then ``write(t, pixels)``.

    Weights are copied to the CPU when the scan is created (after any per-image increments were merged).
    """

    def __init__(self, model: nn.Module, n: int) -> None:
        p = model.patch_size
        self.n, self.p = n, p
        self._groups = {t: scan.group(p, t) for t in range(1, scan.num_steps(p) + 1)}
        embed = model.embed
        self.re = embed.kernel_size[0] // 2
        self.pixels = torch.zeros(n, 3, p + 2 * self.re, p + 2 * self.re)
        (eu, ev), self.off_e = _taps(embed, p + 2 * self.re)
        weight, self.embed_b = _cpu(embed)
        self.embed_w = weight.reshape(embed.weight.shape)[:, :, eu, ev].reshape(embed.out_channels, -1)
        self.blocks = []
        for block in model.blocks:
            dw = block.mcg.dwconv
            r = dw.kernel_size[0] // 2
            (u, v), off = _taps(dw, p + 2 * r)
            dw_w, dw_b = _cpu(dw)
            layers = {name: _cpu(layer) for name, layer in (
                ("norm1", block.norm1), ("w_a", block.mcg.w_a), ("w_v", block.mcg.w_v), ("proj", block.mcg.proj),
                ("norm2", block.norm2), ("fc1", block.mlp.fc1), ("fc2", block.mlp.fc2))}
            eps = (block.norm1.eps, block.norm2.eps)
            cache = torch.zeros(n, (p + 2 * r) ** 2, dw.in_channels)  # channels last: a tap is one row
            self.blocks.append((layers, eps, r, off, dw_w.reshape(dw.weight.shape)[:, 0, u, v], dw_b, cache))
        self.head = _cpu(model.head)
        self._indexes: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    def group(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = self._groups[step]
        return rows.numpy(), cols.numpy()

    def _centres(self, step: int, r: int) -> Tensor:
        rows, cols = self._groups[step]
        return (rows + r) * (self.p + 2 * r) + (cols + r)

    def _windows(self, step: int, r: int, off: Tensor) -> tuple[Tensor, Tensor]:
        """Flat cache positions of the step's centres and of their kept taps, (G·T,) in (G, T) order."""
        key = (step, r)
        if key not in self._indexes:
            centre = self._centres(step, r)
            self._indexes[key] = centre, (centre[:, None] + off[None, :]).flatten()
        return self._indexes[key]

    @torch.no_grad()
    def params(self, step: int) -> Tensor:
        """Mixture parameters (n, G, 10K) of the positions coded at ``step``."""
        _, taps = self._windows(step, self.re, self.off_e)
        g = len(self._groups[step][0])
        win = self.pixels.view(self.n, 3, -1).index_select(2, taps).view(self.n, 3, g, -1)  # (n, 3, G, T)
        h = F.linear(win.permute(0, 2, 1, 3).flatten(2), self.embed_w, self.embed_b)
        for layers, eps, r, off, dw_w, dw_b, cache in self.blocks:
            dim = h.shape[-1]
            y = F.layer_norm(h, (dim,), *layers["norm1"], eps[0])
            a, v = F.linear(y, *layers["w_a"]), F.linear(y, *layers["w_v"])
            centre, taps = self._windows(step, r, off)
            cache.index_copy_(1, centre, a)
            win = cache.index_select(1, taps).view(self.n, g, -1, dim)  # (n, G, T, C)
            # products summed over the taps laid out last, as a convolution over (n, C, G, T) would
            conv = (win * dw_w.t()).permute(0, 3, 1, 2).contiguous().sum(-1) + dw_b[None, :, None]
            h = h + F.linear(F.silu(conv.transpose(1, 2)) * v, *layers["proj"])
            y = F.layer_norm(h, (dim,), *layers["norm2"], eps[1])
            h = h + F.linear(F.gelu(F.linear(y, *layers["fc1"])), *layers["fc2"])
        return F.linear(h, *self.head)

    def write(self, step: int, pixels: Tensor) -> None:
        """Store the coded 8-bit pixels (n, G, 3) of ``step``; −1 marks padding (normalized value 0)."""
        values = torch.where(pixels < 0, torch.zeros((), dtype=torch.float32),
                             mixture.normalize(pixels.float()))
        centre, _ = self._windows(step, self.re, self.off_e)
        self.pixels.view(self.n, 3, -1).index_copy_(2, centre, values.permute(0, 2, 1))

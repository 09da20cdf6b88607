"""MGCF coding by cache-then-crop inference as CALLIC describes it (§3.3; the authors published no code), written
plainly: the input of every masked convolution cached as an (n, C, P+2r, P+2r) map, and at each scan step the
whole k×k window around every group position cropped by advanced indexing and weighted by the masked kernel
(its zero taps included). Mixture tables and the range coder are ctrlic's, as in the coder being timed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ctrlic.codecs.backbones.mgcf import MGCF
from ctrlic.codecs.lossless import mixture, scan
from ctrlic.codecs.lossless.coder import Decoder, Encoder
from ctrlic.utils.threads import single_thread


def _matrix(conv: torch.nn.Conv2d) -> tuple[Tensor, Tensor]:
    return conv.weight.detach().flatten(1), conv.bias.detach()


class PlainScan:
    """Per-step mixture parameters of ``n`` patches from cached maps and cropped windows."""

    def __init__(self, model: MGCF, n: int) -> None:
        p = model.patch_size
        self.model, self.n, self.p = model, n, p
        embed = model.embed
        self.re = embed.kernel_size[0] // 2
        self.embed_w = (embed.weight * embed.mask).detach()
        self.pixels = torch.zeros(n, 3, p + 2 * self.re, p + 2 * self.re)
        self.caches = []
        for block in model.blocks:
            dw = block.mcg.dwconv
            r = dw.kernel_size[0] // 2
            self.caches.append((r, (dw.weight * dw.mask).detach()[:, 0], torch.zeros(n, dw.in_channels, p + 2 * r, p + 2 * r)))

    def group(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = scan.group(self.p, step)
        return rows.numpy(), cols.numpy()

    @staticmethod
    def _crop(maps: Tensor, rows: Tensor, cols: Tensor, r: int) -> Tensor:
        """(n, C, G, k, k) windows centred on (rows, cols) of maps padded by r."""
        offsets = torch.arange(2 * r + 1)
        return maps[:, :, (rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]

    @torch.no_grad()
    def params(self, step: int) -> Tensor:
        rows, cols = scan.group(self.p, step)
        win = self._crop(self.pixels, rows, cols, self.re)
        h = torch.einsum("ncgyx,ocyx->ngo", win, self.embed_w) + self.model.embed.bias
        for block, (r, kernel, cache) in zip(self.model.blocks, self.caches, strict=True):
            y = F.layer_norm(h, h.shape[-1:], block.norm1.weight, block.norm1.bias, block.norm1.eps)
            a, v = F.linear(y, *_matrix(block.mcg.w_a)), F.linear(y, *_matrix(block.mcg.w_v))
            cache[:, :, rows + r, cols + r] = a.transpose(1, 2)
            conv = (self._crop(cache, rows, cols, r) * kernel[None, :, None]).sum((-2, -1))
            conv = conv + block.mcg.dwconv.bias[None, :, None]
            h = h + F.linear(F.silu(conv.transpose(1, 2)) * v, *_matrix(block.mcg.proj))
            y = F.layer_norm(h, h.shape[-1:], block.norm2.weight, block.norm2.bias, block.norm2.eps)
            h = h + F.linear(F.gelu(F.linear(y, *_matrix(block.mlp.fc1))), *_matrix(block.mlp.fc2))
        return F.linear(h, *_matrix(self.model.head))

    def write(self, step: int, pixels: Tensor) -> None:
        rows, cols = scan.group(self.p, step)
        values = torch.where(pixels < 0, torch.zeros(()), mixture.normalize(pixels.float()))
        self.pixels[:, :, rows + self.re, cols + self.re] = values.permute(0, 2, 1)


def _plan(model: MGCF, height: int, width: int) -> tuple[PlainScan, np.ndarray]:
    valid, _ = scan.patchify(torch.ones(1, 1, height, width), model.patch_size)
    return PlainScan(model, len(valid)), valid[:, 0].bool().numpy()


@torch.no_grad()
def encode(model: MGCF, x: Tensor) -> list[bytes]:
    with single_thread():
        x_int = torch.round(x.float().clamp(0, 1) * 255)
        state, valid = _plan(model, *x.shape[-2:])
        patches, _ = scan.patchify(x_int, model.patch_size)
        pixels = patches.permute(0, 2, 3, 1).numpy().astype(np.int64)
        coder = Encoder(model.precision)
        for step in range(1, scan.num_steps(model.patch_size) + 1):
            rows, cols = state.group(step)
            params = state.params(step).double().numpy()
            keep = valid[:, rows, cols]
            symbols, p = pixels[:, rows, cols][keep], params[keep]
            for c in range(3):
                pmf = mixture.channel_pmf(p, c, symbols[:, :c], model.mixtures)
                coder.encode(symbols[:, c], mixture.integer_pmf(pmf, model.precision))
            state.write(step, torch.from_numpy(np.where(keep[..., None], pixels[:, rows, cols], -1)))
        return [coder.finish()]


@torch.no_grad()
def decode(model: MGCF, sections: list[bytes], height: int, width: int) -> Tensor:
    with single_thread():
        state, valid = _plan(model, height, width)
        n, p = valid.shape[0], model.patch_size
        pixels = np.full((n, p, p, 3), -1, dtype=np.int64)
        coder = Decoder(sections[0], model.precision)
        for step in range(1, scan.num_steps(p) + 1):
            rows, cols = state.group(step)
            params = state.params(step).double().numpy()
            keep = valid[:, rows, cols]
            pv = params[keep]
            symbols = np.zeros((len(pv), 3), dtype=np.int64)
            for c in range(3):
                pmf = mixture.channel_pmf(pv, c, symbols[:, :c], model.mixtures)
                symbols[:, c] = coder.decode(mixture.integer_pmf(pmf, model.precision))
            group = pixels[:, rows, cols]
            group[keep] = symbols
            pixels[:, rows, cols] = group
            state.write(step, torch.from_numpy(group))
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
        _, grid = scan.patchify(torch.zeros(1, 1, height, width), p)
        return scan.unpatchify(x, grid, height, width) / 255

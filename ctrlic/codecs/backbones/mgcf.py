"""MGCF, CALLIC's masked gated ConvFormer: a lossless autoregressive model on the 3P parallel scan.

A masked 3×3 embedding, ``depth`` MetaFormer blocks [LN → masked convolutional gating
swish(M⊙DWConv(W_A X)) ⊙ (W_V X) → 1×1 projection] and [LN → MLP ×4 with GELU], and a 1×1 head to a
K-component discretized logistic mixture (CALLIC Eq. 5; research notes §1.4: 574,514 parameters at
dim 128, K = 5). Patches of P×P are coded independently, all in parallel, in 3P − 2 steps; one masked
forward in training equals the sequential decode, and coding runs on cache-then-crop inference.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs.backbones.base import Backbone, fp32
from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.entropy import bit_map
from ctrlic.codecs.lossless import mixture, scan
from ctrlic.codecs.lossless.cci import CachedScan
from ctrlic.codecs.lossless.coder import Decoder, Encoder, stream_bounds
from ctrlic.utils.threads import single_thread


class MaskedConv(nn.Conv2d):
    """A convolution whose taps are limited to earlier scan steps (``scan.context_mask``): W' = M ⊙ W."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, include_centre: bool, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, padding=kernel // 2, groups=groups)
        self.register_buffer("mask", scan.context_mask(kernel, include_centre), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding, groups=self.groups)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over channels at each position (no spatial reach, so CCI may apply it per position)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MaskedConvGating(nn.Module):
    """MCG(X) = Proj(swish(M ⊙ DWConv(W_A X)) ⊙ (W_V X)) (CALLIC Eq. 5)."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.w_a = nn.Conv2d(dim, dim, 1)
        self.w_v = nn.Conv2d(dim, dim, 1)
        self.dwconv = MaskedConv(dim, dim, kernel, include_centre=True, groups=dim)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.silu(self.dwconv(self.w_a(x))) * self.w_v(x))


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, dim * ratio, 1)
        self.fc2 = nn.Conv2d(dim * ratio, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm MetaFormer block: x + MCG(LN x), then x + MLP(LN x)."""

    def __init__(self, dim: int, kernel: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(dim)
        self.mcg = MaskedConvGating(dim, kernel)
        self.norm2 = ChannelNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.mcg(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MGCF(Backbone):
    """Lossless codec: ``forward`` gives per-sub-pixel likelihoods, ``encode``/``decode`` real bits."""

    lossless = True
    capabilities = frozenset({"likelihood_rate"})
    pad_multiple = 1  # patches are padded inside; padded pixels are known to both sides and not coded

    @property
    def adaptation_tile(self) -> int:
        """CALLIC adapts on the scan's own patches."""
        return self.patch_size

    def __init__(self, dim: int = 128, depth: int = 3, kernel: int = 7, mlp_ratio: int = 4, mixtures: int = 5,
                 patch_size: int = 64, embed_kernel: int = 3, precision: int = 16) -> None:
        super().__init__()
        self.dim, self.mixtures, self.patch_size, self.precision = dim, mixtures, patch_size, precision
        self.embed = MaskedConv(3, dim, embed_kernel, include_centre=False)
        self.blocks = nn.ModuleList(Block(dim, kernel, mlp_ratio) for _ in range(depth))
        self.head = nn.Conv2d(dim, 10 * mixtures, 1)

    def mixture_params(self, patches: Tensor) -> Tensor:
        """Teacher-forced parameters of every position: (N, 3, P, P) in [−1, 1] → (N, 10K, P, P)."""
        h = self.embed(patches)
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    def forward(self, x: Tensor) -> dict:
        """x in [0, 1] (B, 3, H, W); ``log_likelihoods`` (natural log per sub-pixel) avoids underflow."""
        h, w = x.shape[-2:]
        x_int = torch.round(x.clamp(0, 1) * 255)
        patches, grid = scan.patchify(mixture.normalize(x_int), self.patch_size)
        params = self.mixture_params(patches)
        with fp32(x.device.type):  # the mixture likelihood in fp32 under bf16 autocast (as coding computes it)
            ll = mixture.log_likelihood(params.float(), torch.round((patches + 1) * 127.5), self.mixtures)
        ll = scan.unpatchify(ll, grid, h, w)
        return {"x_hat": x_int / 255, "likelihoods": {"x": ll.exp()}, "log_likelihoods": ll}

    # -- coding ----------------------------------------------------------------------------------

    def _plan(self, height: int, width: int) -> tuple[CachedScan, np.ndarray]:
        """The scan over all patches of one image, and the (N, P, P) mask of real (not padding) pixels."""
        valid, _ = scan.patchify(torch.ones(1, 1, height, width), self.patch_size)
        return CachedScan(self, len(valid)), valid[:, 0].bool().numpy()

    def encode(self, x: Tensor) -> list[bytes]:
        """All patches coded in parallel step by step; probabilities along the decoder's exact path.

        Runs on one CPU thread whatever the setting, so that encoder and decoder processes configured
        differently still compute the same floats.
        """
        with torch.no_grad(), single_thread():
            return self._on_cpu()._encode(x)

    def _on_cpu(self) -> MGCF:
        """The model coding runs: itself on the CPU, else a CPU copy — probabilities computed on a GPU
        would not match a CPU decoder's bit for bit, so coding never uses the accelerator."""
        if next(self.parameters()).device.type == "cpu":
            return self
        return copy.deepcopy(self).cpu()

    def _encode(self, x: Tensor) -> list[bytes]:
        x_int = torch.round(x.detach().float().cpu().clamp(0, 1) * 255)
        height, width = x.shape[-2:]
        state, valid = self._plan(height, width)
        patches, _ = scan.patchify(x_int, self.patch_size)
        pixels = patches.permute(0, 2, 3, 1).numpy().astype(np.int64)  # (N, P, P, 3)
        coder = Encoder(self.precision)
        for step in range(1, scan.num_steps(self.patch_size) + 1):
            rows, cols = state.group(step)
            params = state.params(step).double().numpy()  # (N, G, 10K)
            keep = valid[:, rows, cols]
            symbols, p = pixels[:, rows, cols][keep], params[keep]
            for c in range(3):
                pmf = mixture.channel_pmf(p, c, symbols[:, :c], self.mixtures)
                freq = mixture.integer_pmf(pmf, self.precision)
                coder.encode(symbols[:, c], freq)
                # bit-allocation map (no-op unless recording)
                bit_map.record_patches("x", freq, symbols[:, c], self.precision, keep, rows, cols, self.patch_size,
                                       (height, width), pmf=pmf)
            state.write(step, torch.from_numpy(np.where(keep[..., None], pixels[:, rows, cols], -1)))
        return [coder.finish()]

    def check_sections(self, sections: list[bytes], height: int, width: int) -> None:
        if len(sections) != 1:
            raise BitstreamError(f"an MGCF bitstream has one image section, this one has {len(sections)}")
        least, most = stream_bounds(3 * height * width, 256, self.precision)
        size = len(sections[0])
        if size % 4 or not least <= size <= most:
            raise BitstreamError(f"the image section is {size} bytes; a lossless {width}x{height} image takes "
                                 f"{least} to {most} bytes in whole 32-bit words: the file is corrupted or "
                                 "its declared size is wrong")

    def decode(self, sections: list[bytes], height: int, width: int) -> Tensor:
        with torch.no_grad(), single_thread():
            return self._on_cpu()._decode(sections, height, width)

    def _decode(self, sections: list[bytes], height: int, width: int) -> Tensor:
        self.check_sections(sections, height, width)
        state, valid = self._plan(height, width)
        n, p = valid.shape[0], self.patch_size
        pixels = np.full((n, p, p, 3), -1, dtype=np.int64)
        coder = Decoder(sections[0], self.precision)
        for step in range(1, scan.num_steps(p) + 1):
            rows, cols = state.group(step)
            params = state.params(step).double().numpy()
            keep = valid[:, rows, cols]
            pv = params[keep]
            symbols = np.zeros((len(pv), 3), dtype=np.int64)
            for c in range(3):
                freq = mixture.integer_pmf(mixture.channel_pmf(pv, c, symbols[:, :c], self.mixtures), self.precision)
                symbols[:, c] = coder.decode(freq)
            group = pixels[:, rows, cols]
            group[keep] = symbols
            pixels[:, rows, cols] = group
            state.write(step, torch.from_numpy(group))
        coder.check_end()
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
        _, grid = scan.patchify(torch.zeros(1, 1, height, width), p)
        return scan.unpatchify(x, grid, height, width) / 255

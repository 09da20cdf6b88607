"""STF: the Symmetrical TransFormer of Zou, Song & Zhang, "The Devil Is in the Details: Window-based
Attention for Image Compression" (CVPR 2022), with a ChARM entropy model.

Module names and shapes follow the authors' ``SymmetricalTransFormer`` (Googolxx/STF), so their
released checkpoints load strictly through :func:`ctrlic.codecs.checkpoint.load_weights`. Swin blocks
zero-pad feature maps to window multiples as the official blocks do, so any size that is a multiple
of 64 (patch 2 · three merges · hyper stride 4) is exact; at window 4 those sizes need no padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import conv3x3, subpel_conv3x3
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from ctrlic.codecs.backbones.charm import ChannelAutoregressive, slice_transforms, support_channels
from ctrlic.codecs.backbones.swin import RelativeBias, relative_position_index, window_attention, windowed


class WindowAttention(nn.Module):
    """Multi-head self-attention in a window with a learned relative-position bias table."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self._relative = RelativeBias()

    def _gather(self) -> Tensor:
        n = self.relative_position_index.shape[0]
        relative = self.relative_position_bias_table[self.relative_position_index.flatten()]
        return relative.view(n, n, self.heads).permute(2, 0, 1)

    def forward(self, windows: Tensor, mask: Tensor | None) -> Tensor:
        bias = self._relative.get(self.relative_position_bias_table, self._gather)
        return window_attention(windows, self.qkv, self.proj, self.heads, bias, mask)


class Mlp(nn.Module):
    """Transformer feed-forward: fc1 → GELU → fc2 (``fc1``/``fc2`` are where CALICE puts its LoRA)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm Swin block on (B, H, W, C): (shifted-)window attention and MLP, each residual."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.drop_path = StochasticDepth(drop_path, "row")
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(windowed(self.norm1(x), self.window, self.shift, self.attn))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2× downsampling: concatenate each 2×2 neighbourhood (4C), LayerNorm, Linear 4C → 2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchSplit(nn.Module):
    """2× upsampling, the mirror of :class:`PatchMerging`: LayerNorm, Linear C → 2C, pixel shuffle."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.reduction(self.norm(x)).permute(0, 3, 1, 2)
        return F.pixel_shuffle(x, 2).permute(0, 2, 3, 1)


class BasicLayer(nn.Module):
    """One stage: ``depth`` Swin blocks alternating plain and half-window-shifted windows, then resampling."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float,
                 drop_paths: Sequence[float], resample: type[nn.Module] | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drop_paths[i])
            for i in range(depth))
        self.downsample = resample(dim) if resample is not None else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch``×``patch`` conv embedding + LayerNorm, output channels-last."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, (0, -x.shape[3] % self.patch, 0, -x.shape[2] % self.patch))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SymmetricalTransFormer(ChannelAutoregressive):
    """STF: Swin analysis/synthesis, conv hyperprior, ChARM with ``num_slices`` slices.

    Paper size is the default (99,855,639 parameters). y has ``8·embed_dim`` channels at stride 16
    and z ``4·embed_dim`` at stride 64; the hyper transforms step their widths by ``embed_dim``
    (384 → 336 → 288 → 240 → 192 at paper size). ``charm_widths`` are the hidden widths of every
    per-slice transform. Stochastic depth rises linearly to ``drop_path_rate`` over the blocks of
    each path and is active in training only.
    """

    pad_multiple = 64
    capabilities = ChannelAutoregressive.capabilities | {"swin_prompts"}

    def __init__(self, embed_dim: int = 48, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 4, num_slices: int = 12,
                 mlp_ratio: float = 4.0, drop_path_rate: float = 0.2, max_support_slices: int | None = None,
                 charm_widths: Sequence[int] = (224, 176, 128, 64)) -> None:
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"STF has 4 stages (stride 16); got depths={list(depths)}, num_heads={list(num_heads)}")
        e = embed_dim
        M, Z = 8 * e, 4 * e
        self.M, self.num_slices = M, num_slices
        self.max_support_slices = num_slices // 2 if max_support_slices is None else max_support_slices
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()

        def stage_rates(stage_depths: Sequence[int], i: int) -> list[float]:
            start = sum(stage_depths[:i])
            return rates[start:start + stage_depths[i]]

        self.patch_embed = PatchEmbed(2, e)
        self.layers = nn.ModuleList(
            BasicLayer(e * 2 ** i, depths[i], num_heads[i], window_size, mlp_ratio, stage_rates(depths, i),
                       PatchMerging if i < 3 else None)
            for i in range(4))
        depths, num_heads = depths[::-1], num_heads[::-1]  # the synthesis mirrors the analysis
        self.syn_layers = nn.ModuleList(
            BasicLayer(e * 2 ** (3 - i), depths[i], num_heads[i], window_size, mlp_ratio, stage_rates(depths, i),
                       PatchSplit if i < 3 else None)
            for i in range(4))
        self.end_conv = nn.Sequential(nn.Conv2d(e, 4 * e, 5, padding=2), nn.PixelShuffle(2),
                                      nn.Conv2d(e, 3, 3, padding=1))

        self.h_a = nn.Sequential(
            conv3x3(M, M), nn.GELU(), conv3x3(M, M - e), nn.GELU(), conv3x3(M - e, M - 2 * e, stride=2),
            nn.GELU(), conv3x3(M - 2 * e, M - 3 * e), nn.GELU(), conv3x3(M - 3 * e, Z, stride=2))
        self.h_mean_s = self._hyper_synthesis(M, Z, e)
        self.h_scale_s = self._hyper_synthesis(M, Z, e)

        s = M // num_slices
        cc_in = support_channels(M, s, num_slices, self.max_support_slices)
        self.cc_mean_transforms = slice_transforms(cc_in, charm_widths, s)
        self.cc_scale_transforms = slice_transforms(cc_in, charm_widths, s)
        lrp_in = support_channels(M, s, num_slices, self.max_support_slices, extra=1)
        self.lrp_transforms = slice_transforms(lrp_in, charm_widths, s)
        self.entropy_bottleneck = EntropyBottleneck(Z)
        self.gaussian_conditional = GaussianConditional(None)

    @staticmethod
    def _hyper_synthesis(M: int, Z: int, e: int) -> nn.Sequential:
        return nn.Sequential(
            conv3x3(Z, Z + e), nn.GELU(), subpel_conv3x3(Z + e, Z + 2 * e, 2), nn.GELU(),
            conv3x3(Z + 2 * e, Z + 3 * e), nn.GELU(), subpel_conv3x3(Z + 3 * e, M, 2), nn.GELU(), conv3x3(M, M))

    def analysis(self, x: Tensor) -> Tensor:
        """y in (N, C, H, W), contiguous as the authors' (``.permute(0, 3, 1, 2).contiguous()``), so the
        training noise, drawn with y's memory layout, lands on the same elements for the same seed."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return x.permute(0, 3, 1, 2).contiguous()

    def synthesis(self, y_hat: Tensor) -> Tensor:
        x = y_hat.permute(0, 2, 3, 1)
        for layer in self.syn_layers:
            x = layer(x)
        return self.end_conv(x.permute(0, 3, 1, 2))

"""VQGAN building blocks (taming-transformers / MoVQ layout): ResNet blocks, attention, resampling,
and MoVQ's spatially-conditioned normalisation. Parameter names follow the Control-GIC checkpoint."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class SpatialNorm(nn.Module):
    """MoVQ: ``GN(f)·conv_y(zq) + conv_b(zq)``, zq = the quantized code resized (nearest) to f.

    Where f is an integer multiple s of zq's size, the 1×1 convolutions run on zq itself and broadcast
    over s×s blocks: a 1×1 convolution commutes with nearest upsampling, value for value.
    """

    def __init__(self, channels: int, zq_channels: int, groups: int) -> None:
        super().__init__()
        self.norm_layer = group_norm(channels, groups)
        self.conv_y = nn.Conv2d(zq_channels, channels, 1)
        self.conv_b = nn.Conv2d(zq_channels, channels, 1)

    def forward(self, f: Tensor, zq: Tensor) -> Tensor:
        (b, c, fh, fw), (zh, zw) = f.shape, zq.shape[-2:]
        s = fh // zh
        if s < 1 or fh != s * zh or fw != s * zw:
            zq = F.interpolate(zq, size=(fh, fw), mode="nearest")
            return self.norm_layer(f) * self.conv_y(zq) + self.conv_b(zq)
        norm = self.norm_layer(f)
        y, shift = (conv(zq)[:, :, :, None, :, None] for conv in (self.conv_y, self.conv_b))
        if torch.is_grad_enabled() and (norm.requires_grad or y.requires_grad):  # training: out= has no autograd
            return (norm.view(b, c, zh, s, zw, s) * y + shift).view(b, c, fh, fw)
        out = torch.empty_like(norm)  # in norm's memory format, which later kernels take their path from
        blocks = out.view(b, c, zh, s, zw, s)
        torch.mul(norm.view(b, c, zh, s, zw, s), y, out=blocks)
        blocks += shift
        return out


def make_norm(channels: int, groups: int, zq_channels: int | None) -> nn.Module:
    """Plain GroupNorm in the encoder; SpatialNorm in the decoder (``zq_channels`` given)."""
    return group_norm(channels, groups) if zq_channels is None else SpatialNorm(channels, zq_channels, groups)


def norm_apply(norm: nn.Module, h: Tensor, zq: Tensor | None) -> Tensor:
    return norm(h, zq) if isinstance(norm, SpatialNorm) else norm(h)


class ResnetBlock(nn.Module):
    """norm → swish → conv3×3, twice, with a 1×1 shortcut when the width changes."""

    def __init__(self, cin: int, cout: int, groups: int, zq_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.norm1 = make_norm(cin, groups, zq_channels)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = make_norm(cout, groups, zq_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor, zq: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(norm_apply(self.norm1, x, zq)))
        h = self.conv2(self.dropout(F.silu(norm_apply(self.norm2, h, zq))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1×1 q/k/v/proj convolutions."""

    def __init__(self, channels: int, groups: int, zq_channels: int | None = None) -> None:
        super().__init__()
        self.norm = make_norm(channels, groups, zq_channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: Tensor, zq: Tensor | None = None) -> Tensor:
        h = norm_apply(self.norm, x, zq)
        b, c, hh, ww = h.shape
        q, k, v = (conv(h).reshape(b, 1, c, hh * ww).transpose(2, 3) for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class MidBlock(nn.Module):
    """ResNet → (attention) → ResNet at the bottleneck of a branch."""

    def __init__(self, channels: int, groups: int, zq_channels: int | None, attention: bool, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups, zq_channels, dropout)
        self.attn_1 = AttnBlock(channels, groups, zq_channels) if attention else None
        self.block_2 = ResnetBlock(channels, channels, groups, zq_channels, dropout)

    def forward(self, h: Tensor, zq: Tensor | None = None) -> Tensor:
        h = self.block_1(h, zq)
        if self.attn_1 is not None:
            h = self.attn_1(h, zq)
        return self.block_2(h, zq)


class Downsample(nn.Module):
    """Stride-2 3×3 convolution after asymmetric (right/bottom) zero padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest ×2 then a 3×3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the encoder (``down.i``) or decoder (``up.i``)."""

    def __init__(self, blocks: list[ResnetBlock], attns: list[AttnBlock], resample: nn.Module | None,
                 resample_name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)
        if resample is not None:
            self.add_module(resample_name, resample)
        self.resample_name = resample_name if resample is not None else None

    def run(self, h: Tensor, zq: Tensor | None = None) -> Tensor:
        for i, block in enumerate(self.block):
            h = block(h, zq)
            if self.attn:
                h = self.attn[i](h, zq)
        return h

    def resample(self, h: Tensor) -> Tensor:
        return h if self.resample_name is None else getattr(self, self.resample_name)(h)


def swish_conv(norm: nn.Module, conv: nn.Conv2d, h: Tensor, zq: Tensor | None = None) -> Tensor:
    return conv(F.silu(norm_apply(norm, h, zq)))


def upsample_mask(mask: Tensor, factor: int) -> Tensor:
    """A float grain mask repeated ``factor``×``factor`` (nearest upsampling)."""
    return mask.float().repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

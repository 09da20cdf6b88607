"""TCM: Liu, Sun & Katto, "Learned Image Compression with Mixed Transformer-CNN Architectures"
(CVPR 2023): parallel CNN + Swin blocks in every transform, SWAtten-gated ChARM entropy model.

Module names and shapes follow the authors' ``TCM`` (jmliu206/LIC_TCM), so their released
checkpoints (N = 64 / 96 / 128) load strictly through :func:`ctrlic.codecs.checkpoint.load_weights`.
The official windows must tile the feature maps exactly; ours zero-pad when they do not (identical
when they do), and ``pad_multiple`` is the size at which they do (128 at paper size, as the authors'
``eval.py`` pads).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.layers import (
    AttentionBlock,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv1x1,
    conv3x3,
    subpel_conv3x3,
)
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from ctrlic.codecs.backbones.charm import ChannelAutoregressive, slice_transforms, support_channels
from ctrlic.codecs.backbones.swin import RelativeBias, relative_position_index, window_attention, windowed


class WMSA(nn.Module):
    """(Shifted-)window multi-head self-attention on (B, H, W, C); ``head_dim`` fixes the head count."""

    def __init__(self, dim: int, head_dim: int, window: int, shifted: bool) -> None:
        super().__init__()
        self.heads = dim // head_dim
        self.window, self.shift = window, window // 2 if shifted else 0
        self.relative_position_params = nn.Parameter(torch.zeros(self.heads, 2 * window - 1, 2 * window - 1))
        self.embedding_layer = nn.Linear(dim, 3 * dim)
        self.linear = nn.Linear(dim, dim)
        self.register_buffer("index", relative_position_index(window), persistent=False)
        nn.init.trunc_normal_(self.relative_position_params, std=0.02)
        self._relative = RelativeBias()

    def _attend(self, windows: Tensor, mask: Tensor | None) -> Tensor:
        table = self.relative_position_params
        bias = self._relative.get(table, lambda: table.flatten(1)[:, self.index])
        return window_attention(windows, self.embedding_layer, self.linear, self.heads, bias, mask)

    def forward(self, x: Tensor) -> Tensor:
        return windowed(x, self.window, self.shift, self._attend)


class Block(nn.Module):
    """Pre-norm transformer block on (B, H, W, C): window attention and a GELU MLP, each residual."""

    def __init__(self, dim: int, head_dim: int, window: int, drop_path: float, shifted: bool) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.msa = WMSA(dim, head_dim, window, shifted)
        self.drop_path = StochasticDepth(drop_path, "row")
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.msa(self.ln1(x)))
        return x + self.drop_path(self.mlp(self.ln2(x)))


class ConvTransBlock(nn.Module):
    """The TCM block: 1×1 conv, split channels into a residual CNN and a Swin branch, 1×1 conv, residual."""

    def __init__(self, dim: int, head_dim: int, window: int, drop_path: float, shifted: bool) -> None:
        super().__init__()
        self.dim = dim
        self.trans_block = Block(dim, head_dim, window, drop_path, shifted)
        self.conv1_1 = nn.Conv2d(2 * dim, 2 * dim, 1)
        self.conv1_2 = nn.Conv2d(2 * dim, 2 * dim, 1)
        self.conv_block = ResidualBlock(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        conv_x, trans_x = self.conv1_1(x).split(self.dim, dim=1)
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x + self.conv1_2(torch.cat((conv_x, trans_x), dim=1))


class SwinBlock(nn.Module):
    """A plain-window block followed by a shifted-window block, on (B, C, H, W)."""

    def __init__(self, dim: int, head_dim: int, window: int) -> None:
        super().__init__()
        self.block_1 = Block(dim, head_dim, window, 0.0, shifted=False)
        self.block_2 = Block(dim, head_dim, window, 0.0, shifted=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.block_1(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


class SWAtten(AttentionBlock):
    """Swin-based attention (SWAtten): Cheng's attention block at ``inter_dim`` channels whose mask branch
    sees a :class:`SwinBlock`, between 1×1 convs that squeeze ``dim`` → ``inter_dim`` → ``dim``."""

    def __init__(self, dim: int, head_dim: int, window: int, inter_dim: int) -> None:
        super().__init__(inter_dim)
        self.non_local_block = SwinBlock(inter_dim, head_dim, window)
        self.in_conv = conv1x1(dim, inter_dim)
        self.out_conv = conv1x1(inter_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_conv(x)
        gate = torch.sigmoid(self.conv_b(self.non_local_block(x)))
        return self.out_conv(self.conv_a(x) * gate + x)


class TCM(ChannelAutoregressive):
    """TCM with ``N`` = half the TCM-block width (64 / 96 / 128 for Small / Middle / Large), y of M channels.

    ``config`` gives the TCM blocks per group (g_a stages 1–3, then g_s stages 1–3; h_a uses
    ``config[0]`` and h_mean_s/h_scale_s ``config[3]``) and ``head_dim`` their head widths.
    ``window_size`` is used in g_a, g_s and SWAtten, ``hyper_window_size`` and ``hyper_head_dim`` in
    the hyperprior. ``z_channels``, ``atten_dim``/``atten_head_dim`` (SWAtten) and ``charm_widths``
    (hidden widths of the per-slice transforms) are fixed in the paper and exposed for small models.
    As in the official code, block k of every g_a/g_s group gets drop-path rate
    ``linspace(0, drop_path_rate, Σconfig)[k]``.
    """

    def __init__(self, config: Sequence[int] = (2, 2, 2, 2, 2, 2), head_dim: Sequence[int] = (8, 16, 32, 32, 16, 8),
                 drop_path_rate: float = 0.0, N: int = 64, M: int = 320, num_slices: int = 5,
                 max_support_slices: int = 5, window_size: int = 8, hyper_window_size: int = 4,
                 hyper_head_dim: int = 32, z_channels: int = 192, atten_dim: int = 128, atten_head_dim: int = 16,
                 charm_widths: Sequence[int] = (224, 128)) -> None:
        super().__init__()
        self.entropy_bottleneck = EntropyBottleneck(z_channels)
        self.M, self.num_slices, self.max_support_slices = M, num_slices, max_support_slices
        # windows tile g_a/g_s at stride 8, SWAtten at 16 and the hyperprior at 32; z is at stride 64
        self.pad_multiple = math.lcm(64, 16 * window_size, 32 * hyper_window_size)
        rates = torch.linspace(0, drop_path_rate, sum(config)).tolist()

        def blocks(count: int, head: int, window: int, tail: nn.Module, rated: bool = True) -> list[nn.Module]:
            return [ConvTransBlock(N, head, window, rates[i] if rated else 0.0, shifted=i % 2 == 1)
                    for i in range(count)] + [tail]

        self.g_a = nn.Sequential(
            ResidualBlockWithStride(3, 2 * N, 2),
            *blocks(config[0], head_dim[0], window_size, ResidualBlockWithStride(2 * N, 2 * N, 2)),
            *blocks(config[1], head_dim[1], window_size, ResidualBlockWithStride(2 * N, 2 * N, 2)),
            *blocks(config[2], head_dim[2], window_size, conv3x3(2 * N, M, stride=2)))
        self.g_s = nn.Sequential(
            ResidualBlockUpsample(M, 2 * N, 2),
            *blocks(config[3], head_dim[3], window_size, ResidualBlockUpsample(2 * N, 2 * N, 2)),
            *blocks(config[4], head_dim[4], window_size, ResidualBlockUpsample(2 * N, 2 * N, 2)),
            *blocks(config[5], head_dim[5], window_size, subpel_conv3x3(2 * N, 3, 2)))
        self.h_a = nn.Sequential(
            ResidualBlockWithStride(M, 2 * N, 2),
            *blocks(config[0], hyper_head_dim, hyper_window_size, conv3x3(2 * N, z_channels, stride=2), rated=False))
        self.h_mean_s = nn.Sequential(
            ResidualBlockUpsample(z_channels, 2 * N, 2),
            *blocks(config[3], hyper_head_dim, hyper_window_size, subpel_conv3x3(2 * N, M, 2), rated=False))
        self.h_scale_s = nn.Sequential(
            ResidualBlockUpsample(z_channels, 2 * N, 2),
            *blocks(config[3], hyper_head_dim, hyper_window_size, subpel_conv3x3(2 * N, M, 2), rated=False))

        s = M // num_slices
        cc_in = support_channels(M, s, num_slices, max_support_slices)
        self.atten_mean = nn.ModuleList(
            nn.Sequential(SWAtten(c, atten_head_dim, window_size, atten_dim)) for c in cc_in)
        self.atten_scale = nn.ModuleList(
            nn.Sequential(SWAtten(c, atten_head_dim, window_size, atten_dim)) for c in cc_in)
        self.cc_mean_transforms = slice_transforms(cc_in, charm_widths, s)
        self.cc_scale_transforms = slice_transforms(cc_in, charm_widths, s)
        lrp_in = support_channels(M, s, num_slices, max_support_slices, extra=1)
        self.lrp_transforms = slice_transforms(lrp_in, charm_widths, s)
        self.gaussian_conditional = GaussianConditional(None)

    parameter_modules = (*ChannelAutoregressive.parameter_modules, "atten_mean", "atten_scale")

    def mean_support(self, index: int, support: Tensor) -> Tensor:
        return self.atten_mean[index](support)

    def scale_support(self, index: int, support: Tensor) -> Tensor:
        return self.atten_scale[index](support)

    def analysis(self, x: Tensor) -> Tensor:
        return self.g_a(x)

    def synthesis(self, y_hat: Tensor) -> Tensor:
        return self.g_s(y_hat)

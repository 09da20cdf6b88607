"""STF's transforms as the authors' ``SymmetricalTransFormer`` computes them (Googolxx/STF), on ctrlic's modules.

Tokens travel as (B, H·W, C); every stage call rebuilds the shifted-window mask (nine regions, −100 between
them); every block pads, rolls and partitions in separate copies, gathers its relative-position bias and runs
explicit softmax attention. The MLPs, LayerNorms, patch merging/splitting and convolutions are ctrlic's modules
(the same computation in both codes), so α-adapters on the MLP linears run as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.reference_coders.charm_loop import Transforms
from ctrlic.codecs.backbones.stf import BasicLayer, SwinBlock, SymmetricalTransFormer, WindowAttention


def partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) → (B·nW, w, w, C), a contiguous copy."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window, window, c)


def reverse(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`partition`."""
    b = windows.shape[0] // (height * width // window // window)
    x = windows.view(b, height // window, width // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, height, width, -1)


def stage_mask(hp: int, wp: int, window: int, shift: int, device: torch.device) -> Tensor:
    """(nW, N, N): 0 inside a region, −100 across the regions the cyclic shift brings together."""
    regions = torch.zeros(1, hp, wp, 1, device=device)
    label = 0
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for rows in bands:
        for cols in bands:
            regions[:, rows, cols, :] = label
            label += 1
    flat = partition(regions, window).view(-1, window * window)
    diff = flat.unsqueeze(1) - flat.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


def attention(attn: WindowAttention, x: Tensor, mask: Tensor | None) -> Tensor:
    """Explicit window attention on (B·nW, N, C), bias gathered from the table at every call."""
    windows, n, c = x.shape
    heads = attn.heads
    qkv = attn.qkv(x).reshape(windows, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).contiguous()
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
    bias = attn.relative_position_bias_table[attn.relative_position_index.view(-1)].view(n, n, -1)
    scores = scores + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        scores = scores.view(windows // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        scores = scores.view(-1, heads, n, n)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(windows, n, c)
    return attn.proj(out)


def block(blk: SwinBlock, x: Tensor, height: int, width: int, mask: Tensor) -> Tensor:
    """One Swin block on tokens (B, H·W, C)."""
    b, _, c = x.shape
    window, shift = blk.window, blk.shift
    shortcut = x
    x = blk.norm1(x).view(b, height, width, c)
    pad_r, pad_b = (window - width % window) % window, (window - height % window) % window
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    hp, wp = x.shape[1:3]
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    windows = partition(x, window).view(-1, window * window, c)
    out = attention(blk.attn, windows, mask if shift else None).view(-1, window, window, c)
    x = reverse(out, window, hp, wp)
    if shift:
        x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
    if pad_r or pad_b:
        x = x[:, :height, :width, :].contiguous()
    x = shortcut + x.view(b, height * width, c)
    return x + blk.mlp(blk.norm2(x))


def stage(layer: BasicLayer, x: Tensor, height: int, width: int) -> tuple[Tensor, int, int]:
    """A stage on tokens: the mask, the blocks, then ctrlic's merging/splitting."""
    window = layer.blocks[0].window
    hp, wp = math.ceil(height / window) * window, math.ceil(width / window) * window
    mask = stage_mask(hp, wp, window, window // 2, x.device)
    for blk in layer.blocks:
        x = block(blk, x, height, width, mask)
    if layer.downsample is None:
        return x, height, width
    b, _, c = x.shape
    out = layer.downsample(x.view(b, height, width, c))
    return out.reshape(b, -1, out.shape[-1]), out.shape[1], out.shape[2]


def analysis(model: SymmetricalTransFormer, x: Tensor) -> Tensor:
    x = model.patch_embed(x)
    b, height, width, c = x.shape
    x = x.reshape(b, height * width, c)
    for layer in model.layers:
        x, height, width = stage(layer, x, height, width)
    return x.view(b, height, width, -1).permute(0, 3, 1, 2).contiguous()


def synthesis(model: SymmetricalTransFormer, y_hat: Tensor) -> Tensor:
    b, c, height, width = y_hat.shape
    x = y_hat.permute(0, 2, 3, 1).contiguous().view(b, height * width, c)
    for layer in model.syn_layers:
        x, height, width = stage(layer, x, height, width)
    return model.end_conv(x.view(b, height, width, -1).permute(0, 3, 1, 2).contiguous())


def transforms(model: SymmetricalTransFormer) -> Transforms:
    return Transforms(analysis=lambda x: analysis(model, x), synthesis=lambda y: synthesis(model, y),
                      hyper_analysis=model.h_a, hyper_mean=model.h_mean_s, hyper_scale=model.h_scale_s,
                      mean_support=lambda i, s: s, scale_support=lambda i, s: s)

"""TCM's transforms as the authors' ``TCM`` computes them (jmliu206/LIC_TCM), on ctrlic's modules.

Window attention the SwinIR way they use: roll, window rearrangement, q/k/v split by reshaping, einsum
similarities, the relative embedding re-indexed from a coordinate list at every call, the shift mask built as a
(h, w, p, p, p, p) boolean at every call, einsum output. ConvTransBlock and SWAtten wire their branches as the
authors do; every other layer (residual blocks, 1×1/3×3 convolutions, α-adapters) is ctrlic's module.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.reference_coders.charm_loop import Transforms
from ctrlic.codecs.backbones.tcm import TCM, WMSA, Block, ConvTransBlock, SWAtten, SwinBlock


def relative_embedding(msa: WMSA) -> Tensor:
    window = msa.window
    cord = torch.tensor(np.array([[i, j] for i in range(window) for j in range(window)]))
    relation = cord[:, None, :] - cord[None, :, :] + window - 1
    return msa.relative_position_params[:, relation[:, :, 0].long(), relation[:, :, 1].long()]


def shift_mask(h_windows: int, w_windows: int, p: int, shift: int, device: torch.device) -> Tensor:
    """(1, 1, nW, p², p²) True where a shifted window's pixels come from different regions."""
    mask = torch.zeros(h_windows, w_windows, p, p, p, p, dtype=torch.bool, device=device)
    s = p - shift
    mask[-1, :, :s, :, s:, :] = True
    mask[-1, :, s:, :, :s, :] = True
    mask[:, -1, :, :s, :, s:] = True
    mask[:, -1, :, s:, :, :s] = True
    return mask.reshape(1, 1, h_windows * w_windows, p * p, p * p)


def wmsa(msa: WMSA, x: Tensor) -> Tensor:
    """(B, H, W, C) → (B, H, W, C), (shifted) window attention."""
    p, shift = msa.window, msa.shift
    if shift:
        x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
    b, h, w, c = x.shape
    hw, ww = h // p, w // p
    x = x.view(b, hw, p, ww, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hw * ww, p * p, c)
    qkv = msa.embedding_layer(x)
    head_dim = c // msa.heads
    q, k, v = qkv.view(b, hw * ww, p * p, 3 * msa.heads, head_dim).permute(3, 0, 1, 2, 4).chunk(3, dim=0)
    sim = torch.einsum("hbwpc,hbwqc->hbwpq", q, k) * head_dim ** -0.5
    sim = sim + relative_embedding(msa)[:, None, None]
    if shift:
        sim = sim.masked_fill_(shift_mask(hw, ww, p, shift, x.device), float("-inf"))
    probs = F.softmax(sim, dim=-1)
    out = torch.einsum("hbwij,hbwjc->hbwic", probs, v)
    out = msa.linear(out.permute(1, 2, 3, 0, 4).reshape(b, hw * ww, p * p, c))
    out = out.view(b, hw, ww, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    if shift:
        out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
    return out


def transformer(blk: Block, x: Tensor) -> Tensor:
    x = x + wmsa(blk.msa, blk.ln1(x))
    return x + blk.mlp(blk.ln2(x))


def conv_trans(blk: ConvTransBlock, x: Tensor) -> Tensor:
    conv_x, trans_x = torch.split(blk.conv1_1(x), (blk.dim, blk.dim), dim=1)
    conv_x = blk.conv_block(conv_x) + conv_x
    trans_x = transformer(blk.trans_block, trans_x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return x + blk.conv1_2(torch.cat((conv_x, trans_x), dim=1))


def swin_pair(blk: SwinBlock, x: Tensor) -> Tensor:
    window = blk.block_1.msa.window
    if x.size(-1) <= window or x.size(-2) <= window:
        rows, cols = (window - x.size(-2)) // 2, (window - x.size(-1)) // 2
        x = F.pad(x, (cols, cols + 1, rows, rows + 1))
    trans_x = x.permute(0, 2, 3, 1)
    trans_x = transformer(blk.block_2, transformer(blk.block_1, trans_x))
    return trans_x.permute(0, 3, 1, 2)


def swatten(blk: SWAtten, x: Tensor) -> Tensor:
    x = blk.in_conv(x)
    identity = x
    z = swin_pair(blk.non_local_block, x)
    out = blk.conv_a(x) * torch.sigmoid(blk.conv_b(z))
    out += identity
    return blk.out_conv(out)


def run(module: nn.Module, x: Tensor) -> Tensor:
    """A Sequential of TCM layers, the blocks with attention computed the authors' way."""
    if isinstance(module, nn.Sequential):
        for layer in module:
            x = run(layer, x)
        return x
    if isinstance(module, ConvTransBlock):
        return conv_trans(module, x)
    if isinstance(module, SWAtten):
        return swatten(module, x)
    return module(x)


def transforms(model: TCM) -> Transforms:
    return Transforms(analysis=lambda x: run(model.g_a, x), synthesis=lambda y: run(model.g_s, y),
                      hyper_analysis=lambda y: run(model.h_a, y), hyper_mean=lambda z: run(model.h_mean_s, z),
                      hyper_scale=lambda z: run(model.h_scale_s, z),
                      mean_support=lambda i, s: run(model.atten_mean[i], s),
                      scale_support=lambda i, s: run(model.atten_scale[i], s))

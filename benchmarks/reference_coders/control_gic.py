"""Control-GIC's coding as the authors' code computes it (lianqi1008/Control-GIC), on ctrlic's VQGAN modules.

Per encode: both patch-entropy maps from their own unfolded patches (one Gaussian kernel pass per patch size),
the encoder (no reuse of an earlier analysis of the same image), nearest codewords from the expanded squared
distance. The networks' attention is the taming ``AttnBlock`` (explicit (HW × HW) ``bmm`` and softmax), swish is
``x·sigmoid(x)``, MoVQ's SpatialNorm resizes zq and runs its 1×1 convolutions at every call. Masks and indices
are coded with ctrlic's Huffman and mask coders (the authors write theirs to files), so the two payloads agree.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs.backbones.grain_masks import LUMA, official_masks
from ctrlic.codecs.backbones.vqgan import VQGAN, Decoder, Encoder
from ctrlic.codecs.backbones.vqgan_blocks import AttnBlock, Level, MidBlock, ResnetBlock, SpatialNorm
from ctrlic.codecs.huffman import decode_mask, encode_mask


def swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def norm(layer: nn.Module, h: Tensor, zq: Tensor | None) -> Tensor:
    if isinstance(layer, SpatialNorm):
        zq = F.interpolate(zq, size=h.shape[-2:], mode="nearest")
        return layer.norm_layer(h) * layer.conv_y(zq) + layer.conv_b(zq)
    return layer(h)


def resnet(blk: ResnetBlock, x: Tensor, zq: Tensor | None) -> Tensor:
    h = blk.conv1(swish(norm(blk.norm1, x, zq)))
    h = blk.conv2(swish(norm(blk.norm2, h, zq)))
    return (x if blk.nin_shortcut is None else blk.nin_shortcut(x)) + h


def attention(blk: AttnBlock, x: Tensor, zq: Tensor | None) -> Tensor:
    h = norm(blk.norm, x, zq)
    q, k, v = blk.q(h), blk.k(h), blk.v(h)
    b, c, height, width = q.shape
    weights = torch.bmm(q.reshape(b, c, height * width).permute(0, 2, 1), k.reshape(b, c, height * width))
    weights = F.softmax(weights * int(c) ** -0.5, dim=2)
    h = torch.bmm(v.reshape(b, c, height * width), weights.permute(0, 2, 1)).reshape(b, c, height, width)
    return x + blk.proj_out(h)


def mid(blk: MidBlock, h: Tensor, zq: Tensor | None) -> Tensor:
    h = resnet(blk.block_1, h, zq)
    if blk.attn_1 is not None:
        h = attention(blk.attn_1, h, zq)
    return resnet(blk.block_2, h, zq)


def level(lvl: Level, h: Tensor, zq: Tensor | None) -> Tensor:
    for i, blk in enumerate(lvl.block):
        h = resnet(blk, h, zq)
        if lvl.attn:
            h = attention(lvl.attn[i], h, zq)
    return h


def encoder(enc: Encoder, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    h = enc.conv_in(x)
    taps = []
    for lvl in enc.down:
        h = level(lvl, h, None)
        taps.append(h)
        h = lvl.resample(h)
    outs = []
    for suffix, tap in (("_fine", taps[-3]), ("", taps[-2]), ("_coarse", taps[-1])):
        h = mid(getattr(enc, f"mid{suffix}"), tap, None)
        outs.append(getattr(enc, f"conv_out{suffix}")(swish(getattr(enc, f"norm_out{suffix}")(h))))
    return outs[0], outs[1], outs[2]


def decoder(dec: Decoder, z: Tensor, zq: Tensor, masks: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    mask_c, mask_m, mask_f = (m.float() for m in masks)
    coarse = F.avg_pool2d(mid(dec.mid_coarse, dec.conv_in_coarse(z), zq), 4)
    medium = F.avg_pool2d(mid(dec.mid, dec.conv_in(z), zq), 2)
    fine = mid(dec.mid_fine, dec.conv_in_fine(z), zq)
    n = len(dec.up)
    h = coarse
    for i in reversed(range(n)):
        if i == n - 2:
            h = h * F.interpolate(mask_c, scale_factor=2, mode="nearest") + medium * mask_m
        elif i == n - 3:
            h = (h * F.interpolate(mask_c, scale_factor=4, mode="nearest")
                 + h * F.interpolate(mask_m, scale_factor=2, mode="nearest") + fine * mask_f)
        h = dec.up[i].resample(level(dec.up[i], h, zq))
    return dec.conv_out(swish(norm(dec.norm_out, h, zq)))


def entropy(x: Tensor, patch: int, bins: int = 32, sigma: float = 0.01) -> Tensor:
    """Patch entropy (B, H/p, W/p) from unfolded patches of the luma."""
    b, _, height, width = x.shape
    gray = LUMA[0] * x[:, 0:1] + LUMA[1] * x[:, 1:2] + LUMA[2] * x[:, 2:]
    values = F.unfold(gray, patch, stride=patch).transpose(1, 2).reshape(-1, patch * patch).unsqueeze(2)
    kernel = torch.exp(-0.5 * ((values - torch.linspace(-1, 1, bins)[None, None]) / sigma).pow(2))
    pdf = kernel.mean(1)
    pdf = pdf / (pdf.sum(1, keepdim=True) + 1e-40) + 1e-40
    return -(pdf * torch.log(pdf)).sum(1).reshape(b, height // patch, width // patch)


@torch.no_grad()
def encode(model: VQGAN, x: Tensor) -> list[bytes]:
    x_signed = x * 2 - 1
    e8, e16 = entropy(x_signed, 8), entropy(x_signed, 16)
    fine, medium, coarse = encoder(model.encoder, x_signed)
    masks = official_masks(e16, e8, model.ratios)
    mask_c, mask_m, mask_f = (m.float() for m in masks)
    h = (F.interpolate(coarse, scale_factor=4, mode="nearest") * F.interpolate(mask_c, scale_factor=4, mode="nearest")
         + F.interpolate(medium, scale_factor=2, mode="nearest") * F.interpolate(mask_m, scale_factor=2, mode="nearest")
         + fine * mask_f)
    z = model.quant_conv(h).permute(0, 2, 3, 1).contiguous()
    flat = z.view(-1, z.shape[-1])
    codebook = model.quantize.embedding.weight
    dist = (flat ** 2).sum(1, keepdim=True) + (codebook ** 2).sum(1) - 2 * torch.einsum("bd,dn->bn", flat, codebook.t())
    indices = dist.argmin(1).view(z.shape[:3])
    grid_c, grid_m = (m[0, 0].numpy() for m in masks[:2])
    covered = np.kron(grid_c, np.ones((2, 2), dtype=bool))
    streams = [encode_mask(grid_c, np.ones_like(grid_c), model.mask_coding),
               encode_mask(grid_m, ~covered, model.mask_coding)]
    for grain, factor in zip(masks, (4, 2, 1), strict=True):
        streams.append(model.huffman.encode(indices[:, ::factor, ::factor][grain[:, 0]].numpy()))
    return streams


@torch.no_grad()
def decode(model: VQGAN, sections: list[bytes], height: int, width: int) -> Tensor:
    g = model.pad_multiple
    grid_c = decode_mask(sections[0], np.ones((height // g, width // g), dtype=bool))
    covered = np.kron(grid_c, np.ones((2, 2), dtype=bool))
    grid_m = decode_mask(sections[1], ~covered)
    grid_f = ~np.kron(covered | grid_m, np.ones((2, 2), dtype=bool))
    indices = torch.zeros(height * 4 // g, width * 4 // g, dtype=torch.int64)
    for grid, section, factor in zip((grid_c, grid_m, grid_f), sections[2:], (4, 2, 1), strict=True):
        tokens = torch.from_numpy(model.huffman.decode(section, int(grid.sum())))
        level_indices = torch.zeros(grid.shape, dtype=torch.int64)
        level_indices[torch.from_numpy(grid)] = tokens
        full = level_indices.repeat_interleave(factor, 0).repeat_interleave(factor, 1)
        where = torch.from_numpy(grid).repeat_interleave(factor, 0).repeat_interleave(factor, 1)
        indices = torch.where(where, full, indices)
    masks = tuple(torch.from_numpy(m)[None, None] for m in (grid_c, grid_m, grid_f))
    z_q = model.quantize.embedding(indices[None]).permute(0, 3, 1, 2)
    return ((decoder(model.decoder, model.post_quant_conv(z_q), z_q, masks) + 1) / 2).clamp(0, 1)

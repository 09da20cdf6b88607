"""The authors' per-slice ChARM coding loop (STF: Googolxx/STF ``compress``/``decompress``; TCM and CALICE the same
loop with SWAtten on the supports), on a ctrlic ``ChannelAutoregressive`` backbone.

As they do: every slice's CDF indexes by ``GaussianConditional.build_indexes`` (one pass per table entry), symbols
and indexes appended to Python lists slice by slice, one buffered rANS stream for y, the latent residual
prediction of every slice (also those no later slice reads), and on decode one ``decode_stream`` per slice with
the index list rebuilt from a tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from torch import Tensor, nn

Transform = Callable[[Tensor], Tensor]
SupportHook = Callable[[int, Tensor], Tensor]


@dataclass
class Transforms:
    """How the reference computes each part of the network (the authors' way where it differs from ctrlic's)."""

    analysis: Transform
    synthesis: Transform
    hyper_analysis: Transform
    hyper_mean: Transform
    hyper_scale: Transform
    mean_support: SupportHook
    scale_support: SupportHook


def _slice_parameters(model: nn.Module, net: Transforms, i: int, latent_means: Tensor, latent_scales: Tensor,
                      y_hat_slices: list[Tensor], height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Slice i's mean support, means and CDF indexes from the hyper-latent and the decoded slices."""
    support = y_hat_slices[: model.max_support_slices]
    mean_support = net.mean_support(i, torch.cat([latent_means, *support], dim=1))
    mu = model.cc_mean_transforms[i](mean_support)[:, :, :height, :width]
    scale_support = net.scale_support(i, torch.cat([latent_scales, *support], dim=1))
    scale = model.cc_scale_transforms[i](scale_support)[:, :, :height, :width]
    return mean_support, mu, model.gaussian_conditional.build_indexes(scale)


@torch.no_grad()
def encode(model: nn.Module, net: Transforms, x: Tensor) -> list[bytes]:
    """[y string, z string] of a padded image, the authors' way."""
    y = net.analysis(x)
    height, width = y.shape[2:]
    z = net.hyper_analysis(y)
    z_strings = model.entropy_bottleneck.compress(z)
    z_hat = model.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
    latent_scales, latent_means = net.hyper_scale(z_hat), net.hyper_mean(z_hat)
    gc = model.gaussian_conditional
    cdf = gc.quantized_cdf.tolist()
    cdf_lengths = gc.cdf_length.reshape(-1).int().tolist()
    offsets = gc.offset.reshape(-1).int().tolist()
    encoder = BufferedRansEncoder()
    symbols: list[int] = []
    indexes: list[int] = []
    y_hat_slices: list[Tensor] = []
    for i, y_slice in enumerate(y.chunk(model.num_slices, 1)):
        mean_support, mu, index = _slice_parameters(model, net, i, latent_means, latent_scales, y_hat_slices,
                                                    height, width)
        y_q = gc.quantize(y_slice, "symbols", mu)
        y_hat_slice = y_q + mu
        symbols.extend(y_q.reshape(-1).tolist())
        indexes.extend(index.reshape(-1).tolist())
        lrp = model.lrp_transforms[i](torch.cat([mean_support, y_hat_slice], dim=1))
        y_hat_slices.append(y_hat_slice + 0.5 * torch.tanh(lrp))
    encoder.encode_with_indexes(symbols, indexes, cdf, cdf_lengths, offsets)
    return [encoder.flush(), z_strings[0]]


@torch.no_grad()
def decode(model: nn.Module, net: Transforms, sections: list[bytes], z_shape: tuple[int, int]) -> Tensor:
    """The reconstruction (1, 3, H, W) from ``encode``'s sections, the authors' way."""
    y_string, z_string = sections
    z_hat = model.entropy_bottleneck.decompress([z_string], z_shape)
    latent_scales, latent_means = net.hyper_scale(z_hat), net.hyper_mean(z_hat)
    height, width = z_hat.shape[2] * 4, z_hat.shape[3] * 4
    gc = model.gaussian_conditional
    cdf = gc.quantized_cdf.tolist()
    cdf_lengths = gc.cdf_length.reshape(-1).int().tolist()
    offsets = gc.offset.reshape(-1).int().tolist()
    decoder = RansDecoder()
    decoder.set_stream(y_string)
    y_hat_slices: list[Tensor] = []
    for i in range(model.num_slices):
        mean_support, mu, index = _slice_parameters(model, net, i, latent_means, latent_scales, y_hat_slices,
                                                    height, width)
        values = decoder.decode_stream(index.reshape(-1).tolist(), cdf, cdf_lengths, offsets)
        y_hat_slice = gc.dequantize(torch.Tensor(values).reshape(mu.shape), mu)
        lrp = model.lrp_transforms[i](torch.cat([mean_support, y_hat_slice], dim=1))
        y_hat_slices.append(y_hat_slice + 0.5 * torch.tanh(lrp))
    return net.synthesis(torch.cat(y_hat_slices, dim=1)).clamp_(0, 1)

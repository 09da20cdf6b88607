"""The mean-scale hyperprior (Minnen et al. 2018) coding path, for backbones with their own transforms.

A subclass provides ``g_a``, ``h_a``, ``h_s`` (ẑ → scales and means, 2M channels), ``g_s``,
``entropy_bottleneck`` and ``gaussian_conditional``; coding is one rANS call per latent.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ctrlic.codecs.backbones.base import GaussianCoder, fp32
from ctrlic.codecs.entropy import bit_map, rans
from ctrlic.codecs.entropy.scale_table import scale_indexes


class MeanScaleCoder(GaussianCoder):
    """Forward, encode and decode of a mean-scale hyperprior with no context model."""

    def forward(self, x: Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(y)
        with fp32(x.device.type):
            y, z = y.float(), z.float()
            z_hat, z_likelihoods = self.entropy_bottleneck(z)
            scales_hat, means_hat = self.h_s(z_hat).chunk(2, 1)
            y_hat = self.gaussian_conditional.quantize(y, "noise" if self.training else "dequantize", means_hat)
            _, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        x_hat = self.g_s(y_hat.to(x.dtype) if torch.is_autocast_enabled() else y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    @torch.no_grad()
    def encode(self, x: Tensor) -> list[bytes]:
        y = self.g_a(x)
        z = self.h_a(y)
        z_string, z_hat = self.code_z(z)
        scales, means = self.h_s(z_hat).chunk(2, 1)
        indexes = scale_indexes(self.gaussian_conditional, scales)
        y_string = rans.compress_gaussian(self.gaussian_conditional, y, indexes, means)
        bit_map.record_gaussian("y", self.gaussian_conditional, y, indexes, means, scales)
        return [y_string, z_string]


    @torch.no_grad()
    def decode(self, sections: list[bytes], height: int, width: int) -> Tensor:
        y_string, z_string = sections
        z_hat = rans.decompress_bottleneck(self.entropy_bottleneck, z_string, (height // 64, width // 64))
        scales, means = self.h_s(z_hat).chunk(2, 1)
        indexes = scale_indexes(self.gaussian_conditional, scales)
        y_hat = rans.decompress_gaussian(self.gaussian_conditional, y_string, indexes, means)
        return self.g_s(y_hat).clamp_(0, 1)

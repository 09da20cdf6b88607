"""Channel-wise autoregressive entropy model with latent residual prediction (Minnen & Singh, ICIP 2020).

y is split into equal channel slices. Slice i gets a Gaussian whose mean and scale come from the
hyper-synthesis features plus the first ``min(i, max_support_slices)`` decoded slices; after
quantisation a latent residual prediction adds ``0.5·tanh(lrp)``. STF and TCM share this
model: :class:`ChannelAutoregressive` writes the slice loop once, for training, encoding and decoding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from compressai.layers import conv3x3
from compressai.ops import quantize_ste
from torch import Tensor, nn

from ctrlic.codecs.backbones.base import GaussianCoder, fp32
from ctrlic.codecs.entropy import bit_map, rans
from ctrlic.codecs.entropy.gaussian import straight_through
from ctrlic.codecs.entropy.robust import parameter_space
from ctrlic.codecs.entropy.scale_table import scale_indexes

#: (slice index, mean, scale) -> the quantised slice before the latent residual prediction
SliceCoder = Callable[[int, Tensor, Tensor], Tensor]


def slice_transforms(in_channels: Sequence[int], hidden: Sequence[int], out_channels: int) -> nn.ModuleList:
    """One stack of 3×3 convs with GELU in between per slice: in → *hidden → out."""
    stacks = nn.ModuleList()
    for channels in in_channels:
        widths = [channels, *hidden, out_channels]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [conv3x3(c_in, c_out), nn.GELU()]
        stacks.append(nn.Sequential(*layers[:-1]))
    return stacks


def support_channels(hyper: int, slice_channels: int, num_slices: int, max_support: int, extra: int = 0) -> list[int]:
    """Input widths of the per-slice transforms: hyper features + min(i + extra, max_support + extra) slices."""
    return [hyper + slice_channels * min(i + extra, max_support + extra) for i in range(num_slices)]


class ChannelAutoregressive(GaussianCoder):
    """Backbone with a hyperprior on z and a ChARM model on y; subclasses supply the transforms.

    Subclasses set ``num_slices``, ``max_support_slices``, ``h_a``, ``h_mean_s``, ``h_scale_s``,
    ``cc_mean_transforms``, ``cc_scale_transforms``, ``lrp_transforms``, ``entropy_bottleneck`` and
    ``gaussian_conditional``, and implement :meth:`analysis` / :meth:`synthesis`. y is at stride 16
    and z at stride 64 of the (padded) image.
    """

    num_slices: int
    max_support_slices: int
    #: channels of y (all slices together)
    M: int
    #: downsampling from the image to z
    z_stride: int = 64
    #: the modules that map ẑ and decoded slices to means and scales (moved as a whole by cpu64)
    parameter_modules: tuple[str, ...] = ("h_mean_s", "h_scale_s", "cc_mean_transforms", "cc_scale_transforms",
                                          "lrp_transforms", "gaussian_conditional")

    def _parameter_space(self) -> contextlib.AbstractContextManager:
        """The entropy-parameter modules as coding uses them: as they are, or CPU float64 copies."""
        return parameter_space(self)

    def analysis(self, x: Tensor) -> Tensor:
        """Image (B, 3, H, W) → latent y (B, M, H/16, W/16)."""
        raise NotImplementedError

    def synthesis(self, y_hat: Tensor) -> Tensor:
        """Quantised latent → reconstruction (not clamped)."""
        raise NotImplementedError

    def mean_support(self, index: int, support: Tensor) -> Tensor:
        """Hook on the mean-branch support of slice ``index`` (TCM puts its SWAtten here)."""
        return support

    def scale_support(self, index: int, support: Tensor) -> Tensor:
        """Hook on the scale-branch support of slice ``index``."""
        return support

    def _slices(self, z_hat: Tensor, code: SliceCoder, reconstruct: bool = True) -> Tensor | None:
        """Run the slice loop from the quantised z; ``code`` quantises (and codes) each slice.

        Returns ŷ. With ``reconstruct=False`` (the encoder, which needs no ŷ) the latent residual
        prediction runs only on the slices later slices read as support, and None is returned.
        """
        latent_means, latent_scales = self.h_mean_s(z_hat), self.h_scale_s(z_hat)
        read = min(self.max_support_slices, self.num_slices - 1)  # slices that are support of a later one
        y_hat_slices: list[Tensor] = []
        for i in range(self.num_slices):
            support = y_hat_slices[: self.max_support_slices]
            mean_support = self.mean_support(i, torch.cat([latent_means, *support], dim=1))
            mu = self.cc_mean_transforms[i](mean_support)
            scale = self.cc_scale_transforms[i](self.scale_support(i, torch.cat([latent_scales, *support], dim=1)))
            y_hat_slice = code(i, mu, scale)
            if reconstruct or i < read:
                lrp = self.lrp_transforms[i](torch.cat([mean_support, y_hat_slice], dim=1))
                y_hat_slices.append(y_hat_slice + 0.5 * torch.tanh(lrp))
        return torch.cat(y_hat_slices, dim=1) if reconstruct else None

    def forward(self, x: Tensor) -> dict:
        y = self.analysis(x)
        z = self.h_a(y)
        with fp32(x.device.type):
            y, z = y.float(), z.float()
            _, z_likelihoods = self.entropy_bottleneck(z)
            medians = self.entropy_bottleneck._get_medians()
            z_hat = quantize_ste(z - medians) + medians
            y_slices = y.chunk(self.num_slices, dim=1)
            y_likelihoods = []

            def code(i: int, mu: Tensor, scale: Tensor) -> Tensor:
                _, likelihood = self.gaussian_conditional(y_slices[i], scale, mu)
                y_likelihoods.append(likelihood)
                return straight_through(self.gaussian_conditional, y_slices[i], mu)

            y_hat = self._slices(z_hat, code)
        x_hat = self.synthesis(y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": torch.cat(y_likelihoods, dim=1), "z": z_likelihoods}}

    @torch.no_grad()
    def encode(self, x: Tensor) -> list[bytes]:
        """Sections ``[y_string, z_string]``; all y slices share one rANS stream, slice by slice."""
        y = self.analysis(x)
        z = self.h_a(y)
        symbols, indexes = [], []
        with fp32(x.device.type), self._parameter_space():
            gc = self.gaussian_conditional
            table = gc.scale_table
            y, z = y.float(), z.float()
            z_string, z_hat = self.code_z(z)
            y_slices = y.to(table.device, table.dtype).chunk(self.num_slices, dim=1)

            def code(i: int, mu: Tensor, scale: Tensor) -> Tensor:
                q = gc.quantize(y_slices[i], "symbols", mu)
                symbols.append(q)
                indexes.append(scale_indexes(gc, scale))
                bit_map.record_rans("y", gc, q, indexes[-1], scales=scale)
                return gc.dequantize(q, mu)

            self._slices(z_hat.to(table.device, table.dtype), code, reconstruct=False)
            tables = rans.tables_of(gc)
        return [rans.encode(symbols, indexes, tables, "y"), z_string]


    @torch.no_grad()
    def decode(self, sections: list[bytes], height: int, width: int) -> Tensor:
        y_string, z_string = sections
        device = self.entropy_bottleneck.quantiles.device
        y_h, y_w = height // 16, width // 16
        decoder = rans.StreamDecoder(y_string, self.M * y_h * y_w, "y")

        def code(i: int, mu: Tensor, scale: Tensor) -> Tensor:
            values = decoder.decode(scale_indexes(gc, scale).flatten().tolist(), *tables)
            q = torch.tensor(values, dtype=torch.int32, device=mu.device).reshape(mu.shape)
            return gc.dequantize(q, mu)

        with fp32(device.type), self._parameter_space():
            gc = self.gaussian_conditional
            tables = rans.tables_of(gc)
            table = gc.scale_table
            z_hat = rans.decompress_bottleneck(self.entropy_bottleneck, z_string,
                                               (height // self.z_stride, width // self.z_stride))
            y_hat = self._slices(z_hat.to(table.device, table.dtype), code)
        decoder.check_end()
        return self.synthesis(y_hat.to(device, torch.float32)).clamp_(0, 1)

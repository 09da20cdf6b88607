"""Joint autoregressive + hyperprior coding with a 5×5 causal context, coded in wavefronts.

Shared by Cheng2020-attn (a masked-conv context) and TIC (a causal-attention context). The context of
position (h, w) reaches back one position in its row and two forward in the rows above, so every
position with the same ``3·h + w`` is independent of the others: ``3(H−1)+W`` coding steps instead of
``H·W``. A subclass provides ``g_a``, ``h_a``, ``h_s``, ``g_s``, ``entropy_bottleneck``,
``gaussian_conditional``, ``context_prediction``, ``entropy_parameters``, ``M`` and three hooks:
``_hyper`` (ẑ → hyper features), ``_context_operator`` and ``_gaussian_params`` (the context model
evaluated at one wavefront).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ctrlic.codecs.backbones.base import GaussianCoder, fp32
from ctrlic.codecs.entropy import bit_map, rans
from ctrlic.codecs.entropy.robust import coding_tensor, parameter_space
from ctrlic.codecs.entropy.scale_table import scale_indexes

KERNEL = 5
PAD = KERNEL // 2


def wavefronts(height: int, width: int, device: torch.device | str | None = None):
    """Yield (rows, cols) index tensors of the positions coded together, in coding order, on ``device``
    (where the latent being coded lives)."""
    for t in range(3 * (height - 1) + width):
        h = torch.arange(max(0, -(-(t - width + 1) // 3)), min(height - 1, t // 3) + 1, device=device)
        yield h, t - 3 * h


class WavefrontCoder(GaussianCoder):
    """Forward, encode and decode of a joint autoregressive + hyperprior model (see the module docstring)."""

    def _hyper(self, z_hat: Tensor) -> Tensor:
        """Hyper-synthesis features of ẑ, (C, h, w)."""
        raise NotImplementedError

    def _context_operator(self):
        """Whatever ``_gaussian_params`` needs about the context model, computed once per image."""
        raise NotImplementedError

    def _gaussian_params(self, y_hat: Tensor, params: Tensor, rows: Tensor, cols: Tensor, ctx) -> tuple[Tensor, Tensor]:
        """Scales and means (M, P) of the positions (rows, cols) from the decoded part of the padded ``y_hat``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> dict:
        y = self.g_a(x)
        z = self.h_a(y)
        with fp32(x.device.type):
            y, z = y.float(), z.float()
            z_hat, z_likelihoods = self.entropy_bottleneck(z)
            params = self.h_s(z_hat)
            y_hat = self.gaussian_conditional.quantize(y, "noise" if self.training else "dequantize")
            ctx_params = self.context_prediction(y_hat)
            gaussian_params = self.entropy_parameters(torch.cat((params, ctx_params), dim=1))
            scales_hat, means_hat = gaussian_params.chunk(2, 1)
            _, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        x_hat = self.g_s(y_hat.to(x.dtype) if torch.is_autocast_enabled() else y_hat)
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    @torch.no_grad()
    def encode(self, x: Tensor) -> list[bytes]:
        y = self.g_a(x)
        z = self.h_a(y)
        z_string, z_hat = self.code_z(z)
        with parameter_space(self):
            return self._encode_y(coding_tensor(self, y[0]), self._hyper(coding_tensor(self, z_hat))) + [z_string]

    def _encode_y(self, y: Tensor, params: Tensor) -> list[bytes]:
        """Code y wavefront by wavefront (on the entropy-parameter device and dtype), quantizing and
        dequantizing through the Gaussian conditional (so a QVRF regulator applies)."""
        height, width = y.shape[-2:]
        y_hat = F.pad(torch.zeros_like(y), (PAD, PAD, PAD, PAD))
        ctx = self._context_operator()
        gc = self.gaussian_conditional
        symbols, indexes = [], []
        for rows, cols in wavefronts(height, width, y.device):
            scales, means = self._gaussian_params(y_hat, params, rows, cols, ctx)
            y_q = gc.quantize(y[:, rows, cols], "symbols", means)
            y_hat[:, rows + PAD, cols + PAD] = gc.dequantize(y_q, means)
            symbols.append(y_q.flatten())
            indexes.append(scale_indexes(gc, scales).flatten())
            bit_map.record_rans("y", gc, symbols[-1], indexes[-1], (rows, cols), (height, width), scales=scales)
        return [rans.encode(symbols, indexes, rans.tables_of(gc), "y")]


    @torch.no_grad()
    def decode(self, sections: list[bytes], height: int, width: int) -> Tensor:
        y_string, z_string = sections
        z_hat = rans.decompress_bottleneck(self.entropy_bottleneck, z_string, (height // 64, width // 64))
        with parameter_space(self):
            y_hat = self._decode_y(y_string, self._hyper(coding_tensor(self, z_hat)), height // 16, width // 16)
        return self.g_s(y_hat.to(z_hat.device, z_hat.dtype)).clamp_(0, 1)

    def _decode_y(self, y_string: bytes, params: Tensor, y_h: int, y_w: int) -> Tensor:
        """Decode y wavefront by wavefront (on the entropy-parameter device and dtype); (1, M, y_h, y_w)."""
        y_hat = params.new_zeros(self.M, y_h + 2 * PAD, y_w + 2 * PAD)
        ctx = self._context_operator()
        gc = self.gaussian_conditional
        tables = rans.tables_of(gc)
        decoder = rans.StreamDecoder(y_string, self.M * y_h * y_w, "y")
        for rows, cols in wavefronts(y_h, y_w, params.device):
            scales, means = self._gaussian_params(y_hat, params, rows, cols, ctx)
            values = decoder.decode(scale_indexes(gc, scales).flatten().tolist(), *tables)
            y_q = torch.tensor(values, dtype=torch.int32, device=means.device).reshape(means.shape)
            y_hat[:, rows + PAD, cols + PAD] = gc.dequantize(y_q, means)
        decoder.check_end()
        return y_hat[None, :, PAD:-PAD, PAD:-PAD]

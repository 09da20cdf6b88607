"""Cheng2020-attn (Cheng et al., CVPR 2020, as in CompressAI) with wavefront autoregressive coding.

The network is CompressAI's ``Cheng2020Attention``, so its state dict loads the CompressAI zoo
checkpoints with ``strict=True``. The coding path is ours: the 5×5 causal context only reaches
back one position in the current row and two forward in the rows above, so all positions with the
same ``3·h + w`` are independent and are coded together — ``3(H−1)+W`` steps instead of ``H·W``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.models import Cheng2020Attention
from torch import Tensor

from ctrlic.codecs.backbones.base import Backbone, check_hyperprior_sections, fp32
from ctrlic.codecs.entropy import rans
from ctrlic.codecs.entropy.robust import coding_tensor, parameter_space

KERNEL = 5
PAD = KERNEL // 2


class Cheng2020Attn(Cheng2020Attention, Backbone):
    """Cheng2020 with attention modules; ``N`` = 128 for CompressAI qualities 1–3, 192 for 4–6."""

    pad_multiple = 64
    #: where means and scales are computed when coding: "native" or "cpu64" (see codecs/entropy/robust.py)
    entropy_path: str = "native"
    #: the modules that map ẑ and decoded latents to means and scales (moved as a whole by cpu64)
    parameter_modules: tuple[str, ...] = ("h_s", "context_prediction", "entropy_parameters", "gaussian_conditional")

    def __init__(self, N: int = 192) -> None:
        super().__init__(N=N)
        self.N = N

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

    # -- real coding -------------------------------------------------------------------------

    def _context_operator(self) -> tuple[Tensor, Tensor, Tensor]:
        """The masked 5×5 context conv as a matrix over its causal taps: (weight, bias, tap offsets)."""
        conv = self.context_prediction
        taps = conv.mask[0, 0].nonzero()  # (K, 2) offsets inside the 5×5 window
        weight = conv.weight[:, :, taps[:, 0], taps[:, 1]]  # (2M, M, K)
        return weight.reshape(weight.shape[0], -1), conv.bias, taps

    def _wavefronts(self, height: int, width: int):
        """Yield (rows, cols) index tensors of the positions coded together, in coding order."""
        for t in range(3 * (height - 1) + width):
            h = torch.arange(max(0, -(-(t - width + 1) // 3)), min(height - 1, t // 3) + 1)
            yield h, t - 3 * h

    def _gaussian_params(self, y_hat: Tensor, params: Tensor, rows: Tensor, cols: Tensor, ctx) -> tuple:
        weight, bias, taps = ctx
        taps_r = rows[None, :] + taps[:, :1]  # (K, P) in padded coordinates
        taps_c = cols[None, :] + taps[:, 1:]
        gathered = y_hat[:, taps_r, taps_c]  # (M, K, P)
        ctx_p = torch.addmm(bias[:, None], weight, gathered.reshape(-1, rows.numel()))
        feats = torch.cat((params[:, rows, cols], ctx_p), dim=0)[None, :, :, None]
        scales, means = self.entropy_parameters(feats)[0, :, :, 0].chunk(2, 0)
        return scales, means

    def _hyper(self, z_hat: Tensor) -> Tensor:
        return self.h_s(z_hat)[0]

    @torch.no_grad()
    def encode(self, x: Tensor) -> list[bytes]:
        y = self.g_a(x)
        z = self.h_a(y)
        z_string = rans.compress_bottleneck(self.entropy_bottleneck, z)
        z_hat = rans.decompress_bottleneck(self.entropy_bottleneck, z_string, z.shape[-2:])
        with parameter_space(self):
            return self._encode_y(coding_tensor(self, y[0]), self._hyper(coding_tensor(self, z_hat))) + [z_string]

    def _encode_y(self, y: Tensor, params: Tensor) -> list[bytes]:
        """Code y wavefront by wavefront (on the entropy-parameter device and dtype)."""
        height, width = y.shape[-2:]
        y_hat = F.pad(torch.zeros_like(y), (PAD, PAD, PAD, PAD))
        ctx = self._context_operator()
        symbols, indexes = [], []
        for rows, cols in self._wavefronts(height, width):
            scales, means = self._gaussian_params(y_hat, params, rows, cols, ctx)
            y_q = torch.round(y[:, rows, cols] - means)
            y_hat[:, rows + PAD, cols + PAD] = y_q + means
            symbols.append(y_q)
            indexes.append(self.gaussian_conditional.build_indexes(scales))
        return [rans.encode(symbols, indexes, rans.tables_of(self.gaussian_conditional), "y")]

    def check_sections(self, sections: list[bytes], height: int, width: int) -> None:
        check_hyperprior_sections(sections, height, width, self.M, self.entropy_bottleneck.channels)

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
        for rows, cols in self._wavefronts(y_h, y_w):
            scales, means = self._gaussian_params(y_hat, params, rows, cols, ctx)
            values = decoder.decode(gc.build_indexes(scales).flatten().tolist(), *tables)
            y_q = torch.tensor(values, dtype=means.dtype, device=means.device).reshape(means.shape)
            y_hat[:, rows + PAD, cols + PAD] = y_q + means
        decoder.check_end()
        return y_hat[None, :, PAD:-PAD, PAD:-PAD]

"""Cheng2020-attn (Cheng et al., CVPR 2020, as in CompressAI) with wavefront autoregressive coding.

The network is CompressAI's ``Cheng2020Attention``, so its state dict loads the CompressAI zoo
checkpoints with ``strict=True``. The coding path is ours (``wavefront.WavefrontCoder``): the masked
5×5 context conv is evaluated as a matrix over its causal taps at every position of a wavefront.
"""

from __future__ import annotations

import torch
from compressai.models import Cheng2020Attention
from torch import Tensor

from ctrlic.codecs.backbones.wavefront import WavefrontCoder


class Cheng2020Attn(WavefrontCoder, Cheng2020Attention):
    """Cheng2020 with attention modules; ``N`` = 128 for CompressAI qualities 1–3, 192 for 4–6."""

    pad_multiple = 64
    parameter_modules: tuple[str, ...] = ("h_s", "context_prediction", "entropy_parameters", "gaussian_conditional")

    def __init__(self, N: int = 192) -> None:
        super().__init__(N=N)
        self.N = N

    def _context_operator(self) -> tuple[Tensor, Tensor, Tensor]:
        """The masked 5×5 context conv as a matrix over its causal taps: (weight, bias, tap offsets)."""
        conv = self.context_prediction
        taps = conv.mask[0, 0].nonzero()  # (K, 2) offsets inside the 5×5 window
        weight = conv.weight[:, :, taps[:, 0], taps[:, 1]]  # (2M, M, K)
        return weight.reshape(weight.shape[0], -1), conv.bias, taps

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

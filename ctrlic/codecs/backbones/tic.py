"""TIC: the Transformer-based Image Compression of Lu, Guo, Shi, Cao & Ma (DCC 2022), and the
hyperprior-only TIC that TransTIC / LPM prompt (``TICHyperprior``).

Module names and shapes follow lumingzzz/TIC (``g_a0``…``g_a6``, ``h_a0``…, RSTB ``residual_group``,
``context_prediction``, ``entropy_parameters``), so its checkpoints load strictly. The Swin blocks are
STF's (same parameter names); the persistent ``attn_mask`` buffers of the shifted blocks keep the
official shapes (built for ``resolution``×``resolution`` crops) but the mask actually used is
recomputed for every input size. Coding of the causal-attention context model reuses Cheng2020's
wavefront loop: the context reaches the same 12 causal taps of a 5×5 window, so every position with
the same ``3h + w`` is coded together. (The official ``decompress`` reads ``self.M``, never set.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor, nn

from ctrlic.codecs.backbones.hyperprior import MeanScaleCoder
from ctrlic.codecs.backbones.stf import Mlp, SwinBlock
from ctrlic.codecs.backbones.swin import relative_position_index, shifted_window_mask
from ctrlic.codecs.backbones.wavefront import WavefrontCoder

#: side of the causal context window and how many of its raster-ordered taps precede the centre
CONTEXT_WINDOW = 5
CAUSAL_TAPS = CONTEXT_WINDOW * CONTEXT_WINDOW // 2
#: logit the official shifted-window mask adds to pairs from different regions
MASKED_LOGIT = -100.0


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride, padding=kernel // 2, output_padding=stride - 1)


class TICSwinBlock(SwinBlock):
    """STF's Swin block plus the official persistent ``attn_mask`` buffer (shifted blocks only)."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, drop_path: float,
                 resolution: int) -> None:
        super().__init__(dim, heads, window, shift, mlp_ratio, drop_path)
        if shift:
            mask = shifted_window_mask(resolution, resolution, window, shift, torch.device("cpu"))
            self.register_buffer("attn_mask", mask.float() * MASKED_LOGIT)


class SwinLayers(nn.Module):
    """The ``depth`` blocks of one stage, alternating plain and half-window-shifted windows."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float,
                 drop_paths: Sequence[float], resolution: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TICSwinBlock(dim, heads, window, window // 2 if i % 2 else 0, mlp_ratio, drop_paths[i], resolution)
            for i in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer Block on (B, C, H, W): Swin blocks with one skip around them all."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float,
                 drop_paths: Sequence[float], resolution: int) -> None:
        super().__init__()
        self.residual_group = SwinLayers(dim, depth, heads, window, mlp_ratio, drop_paths, resolution)

    def forward(self, x: Tensor) -> Tensor:
        return self.residual_group(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + x


class CausalAttentionModule(nn.Module):
    """TIC's context model: attention over the 5×5 neighbourhood of each latent, future taps zeroed.

    The 25 tokens (raster order; the last 13, centre included, set to 0) go through
    LN → MHSA with a 9×9 relative-position table (+ residual), are summed, then LN → MLP (+ residual)
    → Linear to ``out_dim``. ``tokens`` takes the gathered neighbourhoods directly (wavefront coding).
    """

    def __init__(self, dim: int, out_dim: int, heads: int = 16, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        n = CONTEXT_WINDOW * CONTEXT_WINDOW
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * CONTEXT_WINDOW - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(CONTEXT_WINDOW))
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.proj = nn.Linear(dim, out_dim)
        self.register_buffer("causal", (torch.arange(n) < CAUSAL_TAPS).float()[:, None], persistent=False)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def tokens(self, x: Tensor) -> Tensor:
        """(P, 25, C) neighbourhoods in raster order → (P, out_dim)."""
        p, n, c = x.shape
        x = x * self.causal
        q, k, v = self.qkv(self.norm1(x)).view(p, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None].to(q.dtype))
        summed = (out.transpose(1, 2).reshape(p, n, c) + x).sum(1)
        return self.proj(self.mlp(self.norm2(summed)) + summed)

    def forward(self, y_hat: Tensor) -> Tensor:
        b, c, h, w = y_hat.shape
        n = CONTEXT_WINDOW * CONTEXT_WINDOW
        cols = F.unfold(y_hat, CONTEXT_WINDOW, padding=CONTEXT_WINDOW // 2)  # (B, C·25, H·W)
        tokens = cols.view(b, c, n, h * w).permute(0, 3, 2, 1).reshape(-1, n, c)
        return self.tokens(tokens).view(b, h, w, -1).permute(0, 3, 1, 2)


def chain(model: nn.Module, prefix: str, count: int, x: Tensor) -> Tensor:
    """Run ``x`` through ``<prefix>0`` … ``<prefix>{count-1}`` (TIC's flat, numbered module names)."""
    for i in range(count):
        x = getattr(model, f"{prefix}{i}")(x)
    return x


def stage_rates(rates: Sequence[float], depths: Sequence[int], i: int) -> list[float]:
    start = sum(depths[:i])
    return list(rates[start:start + depths[i]])


class TIC(WavefrontCoder):
    """TIC with the causal attention context module; (N, M) = (128, 192) for qualities 1–4,
    (192, 320) for 5–8 (10,227,299 / 23,924,948 parameters, ``depths`` [2, 4, 6, 2, 2]).

    ``depths``/``num_heads`` list the three analysis stages then the two hyper-analysis stages; the
    synthesis mirrors them. Stochastic depth rises to ``drop_path_rate`` over each path (training only).
    """

    pad_multiple = 64
    capabilities = WavefrontCoder.capabilities | {"swin_prompts"}
    parameter_modules = ("h_s0", "h_s1", "h_s2", "h_s3", "h_s4", "context_prediction", "entropy_parameters",
                         "gaussian_conditional")

    def __init__(self, N: int = 128, M: int = 192, depths: Sequence[int] = (2, 4, 6, 2, 2),
                 num_heads: Sequence[int] = (4, 8, 16, 16, 16), window_size: int = 8, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.2, context_heads: int = 16, resolution: int = 256) -> None:
        super().__init__()
        if len(depths) != 5 or len(num_heads) != 5:
            raise ValueError(f"TIC has 3 analysis + 2 hyper stages; got depths={list(depths)}, "
                             f"num_heads={list(num_heads)}")
        self.N, self.M = N, M
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        ws, hw, r = window_size, window_size // 2, resolution

        def rstb(dim, i, window, res, stage_depths=depths, heads=num_heads):
            return RSTB(dim, stage_depths[i], heads[i], window, mlp_ratio, stage_rates(rates, stage_depths, i), res)

        self.g_a0 = conv(3, N, 5, 2)
        self.g_a1 = rstb(N, 0, ws, r // 2)
        self.g_a2 = conv(N, N, 3, 2)
        self.g_a3 = rstb(N, 1, ws, r // 4)
        self.g_a4 = conv(N, N, 3, 2)
        self.g_a5 = rstb(N, 2, ws, r // 8)
        self.g_a6 = conv(N, M, 3, 2)

        self.h_a0 = conv(M, N, 3, 1)
        self.h_a1 = rstb(N, 3, hw, r // 16)
        self.h_a2 = conv(N, N, 3, 2)
        self.h_a3 = rstb(N, 4, hw, r // 32)
        self.h_a4 = conv(N, N, 3, 2)

        rdepths, rheads = depths[::-1], num_heads[::-1]
        self.h_s0 = deconv(N, N, 3, 2)
        self.h_s1 = rstb(N, 0, hw, r // 32, rdepths, rheads)
        self.h_s2 = deconv(N, N, 3, 2)
        self.h_s3 = rstb(N, 1, hw, r // 16, rdepths, rheads)
        self.h_s4 = conv(N, 2 * M, 3, 1)

        self.g_s0 = deconv(M, N, 3, 2)
        self.g_s1 = rstb(N, 2, ws, r // 8, rdepths, rheads)
        self.g_s2 = deconv(N, N, 3, 2)
        self.g_s3 = rstb(N, 3, ws, r // 4, rdepths, rheads)
        self.g_s4 = deconv(N, N, 3, 2)
        self.g_s5 = rstb(N, 4, ws, r // 2, rdepths, rheads)
        self.g_s6 = deconv(N, 3, 5, 2)

        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        self.context_prediction = CausalAttentionModule(M, 2 * M, heads=context_heads)
        self.entropy_parameters = nn.Sequential(
            nn.Conv2d(4 * M, M * 10 // 3, 1), nn.GELU(), nn.Conv2d(M * 10 // 3, M * 8 // 3, 1), nn.GELU(),
            nn.Conv2d(M * 8 // 3, 2 * M, 1))
        self.register_buffer("_taps", torch.cartesian_prod(torch.arange(CONTEXT_WINDOW),
                                                           torch.arange(CONTEXT_WINDOW)), persistent=False)

    def g_a(self, x: Tensor) -> Tensor:
        return chain(self, "g_a", 7, x)

    def h_a(self, y: Tensor) -> Tensor:
        return chain(self, "h_a", 5, y)

    def h_s(self, z_hat: Tensor) -> Tensor:
        return chain(self, "h_s", 5, z_hat)

    def g_s(self, y_hat: Tensor) -> Tensor:
        return chain(self, "g_s", 7, y_hat)

    # -- the hooks of the wavefront coding loop ------------------------------------------------------

    def _hyper(self, z_hat: Tensor) -> Tensor:
        return self.h_s(z_hat)[0]

    def _context_operator(self) -> Tensor:
        """The window's taps where the context model computes (CPU on the ``cpu64`` path, whose float64
        copies of the entropy-parameter modules leave this backbone's own buffers where they are)."""
        return self._taps.to(next(self.context_prediction.parameters()).device)

    def _gaussian_params(self, y_hat: Tensor, params: Tensor, rows: Tensor, cols: Tensor,
                         taps: Tensor) -> tuple[Tensor, Tensor]:
        """Scales and means (M, P) of the positions (rows, cols) from the decoded part of ``y_hat``."""
        gathered = y_hat[:, rows[None, :] + taps[:, :1], cols[None, :] + taps[:, 1:]]  # (M, 25, P)
        ctx = self.context_prediction.tokens(gathered.permute(2, 1, 0))  # (P, 2M)
        feats = torch.cat((params[:, rows, cols], ctx.T), dim=0)[None, :, :, None]
        scales, means = self.entropy_parameters(feats)[0, :, :, 0].chunk(2, 0)
        return scales, means


class TICHyperprior(MeanScaleCoder):
    """The mean-scale hyperprior TIC (TransTIC's ``TIC_hp``) that LPM/TransTIC prompt: Swin stages
    [2, 4, 6, 2 | 2, 2], heads [8, 8, 8, 16 | 16, 16], MLP ratio 2, no context model (7.51M at N=128, M=192).

    g_a ends with an RSTB at M channels; the hyper path is conv s2 → RSTB → conv s2 → RSTB (z at H/64)
    and back; the synthesis mirrors g_a. Coding is one rANS call per latent (no autoregression).
    """

    pad_multiple = 64
    capabilities = MeanScaleCoder.capabilities | {"swin_prompts"}

    def __init__(self, N: int = 128, M: int = 192, depths: Sequence[int] = (2, 4, 6, 2, 2, 2),
                 num_heads: Sequence[int] = (8, 8, 8, 16, 16, 16), window_size: int = 8, mlp_ratio: float = 2.0,
                 drop_path_rate: float = 0.1, resolution: int = 256) -> None:
        super().__init__()
        if len(depths) != 6 or len(num_heads) != 6:
            raise ValueError(f"TIC-hyperprior has 4 analysis + 2 hyper stages; got depths={list(depths)}, "
                             f"num_heads={list(num_heads)}")
        self.N, self.M = N, M
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        ws, hw, r = window_size, window_size // 2, resolution
        dims = (N, N, N, M, N, N)

        def rstb(i, window, res, stage_depths=depths, heads=num_heads, dim=None):
            return RSTB(dim or dims[i], stage_depths[i], heads[i], window, mlp_ratio,
                        stage_rates(rates, stage_depths, i), res)

        self.g_a0 = conv(3, N, 5, 2)
        self.g_a1 = rstb(0, ws, r // 2)
        self.g_a2 = conv(N, N, 3, 2)
        self.g_a3 = rstb(1, ws, r // 4)
        self.g_a4 = conv(N, N, 3, 2)
        self.g_a5 = rstb(2, ws, r // 8)
        self.g_a6 = conv(N, M, 3, 2)
        self.g_a7 = rstb(3, ws, r // 16)

        self.h_a0 = conv(M, N, 3, 2)
        self.h_a1 = rstb(4, hw, r // 32)
        self.h_a2 = conv(N, N, 3, 2)
        self.h_a3 = rstb(5, hw, r // 64)

        rdepths, rheads = depths[::-1], num_heads[::-1]
        self.h_s0 = rstb(0, hw, r // 64, rdepths, rheads, N)
        self.h_s1 = deconv(N, N, 3, 2)
        self.h_s2 = rstb(1, hw, r // 32, rdepths, rheads, N)
        self.h_s3 = deconv(N, 2 * M, 3, 2)

        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)

        self.g_s0 = rstb(2, ws, r // 16, rdepths, rheads, M)
        self.g_s1 = deconv(M, N, 3, 2)
        self.g_s2 = rstb(3, ws, r // 8, rdepths, rheads, N)
        self.g_s3 = deconv(N, N, 3, 2)
        self.g_s4 = rstb(4, ws, r // 4, rdepths, rheads, N)
        self.g_s5 = deconv(N, N, 3, 2)
        self.g_s6 = rstb(5, ws, r // 2, rdepths, rheads, N)
        self.g_s7 = deconv(N, 3, 5, 2)

    def g_a(self, x: Tensor) -> Tensor:
        return chain(self, "g_a", 8, x)

    def g_s(self, y_hat: Tensor) -> Tensor:
        return chain(self, "g_s", 8, y_hat)

    def h_a(self, y: Tensor) -> Tensor:
        return chain(self, "h_a", 4, y)

    def h_s(self, z_hat: Tensor) -> Tensor:
        return chain(self, "h_s", 4, z_hat)

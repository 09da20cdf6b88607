"""Discretized logistic mixture over 8-bit RGB, channel-autoregressive as in DLPR.

The head gives 10·K channels per position: means (3K), log-scales (3K), channel coefficients (3K)
and mixture logits (K, shared by R, G and B). G's means shift by tanh(c0)·x_R and B's by
tanh(c1)·x_R + tanh(c2)·x_G (pixels normalized to [−1, 1]); edge bins take the open tails.
Training uses the torch log-likelihood; coding uses ``integer_pmf``, computed in float64 with numpy
from the same float32 parameters on both sides, then quantized to integers with a floor per symbol.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ctrlic.codecs.finite import check_finite_array

#: log-scales are clamped from below (DLPR, PixelCNN++)
LOG_SCALE_MIN = -7.0
SYMBOLS = 256
HALF_BIN = 1.0 / 255.0  # half a quantization bin in the normalized domain [−1, 1]


def normalize(x_int: Tensor | np.ndarray):
    """8-bit values → [−1, 1]."""
    return x_int / 127.5 - 1.0


def split(params: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(..., 10K) → means (..., 3, K), log-scales (..., 3, K), coefficients (..., 3, K), logits (..., K)."""
    shape = params.shape[:-1]
    means, log_scales, coeffs, logits = params.split([3 * k, 3 * k, 3 * k, k], dim=-1)
    return (means.reshape(*shape, 3, k), log_scales.reshape(*shape, 3, k).clamp_min(LOG_SCALE_MIN),
            coeffs.reshape(*shape, 3, k), logits)


def log_likelihood(params: Tensor, x_int: Tensor, k: int) -> Tensor:
    """Natural-log probability of every sub-pixel: params (N, 10K, H, W), x_int (N, 3, H, W) → (N, 3, H, W)."""
    means, log_scales, coeffs, logits = split(params.permute(0, 2, 3, 1), k)
    x = normalize(x_int.permute(0, 2, 3, 1).to(params.dtype))  # (N, H, W, 3)
    xr, xg = x[..., 0:1], x[..., 1:2]
    c = torch.tanh(coeffs)
    mu = torch.stack([means[..., 0, :], means[..., 1, :] + c[..., 0, :] * xr,
                      means[..., 2, :] + c[..., 1, :] * xr + c[..., 2, :] * xg], dim=-2)
    inv_s = torch.exp(-log_scales)
    xc = x[..., None]
    upper = (xc + HALF_BIN - mu) * inv_s
    lower = (xc - HALF_BIN - mu) * inv_s
    top, bottom = xc > 0.999, xc < -0.999
    upper = torch.where(top, torch.full_like(upper, 1e4), upper)
    lower = torch.where(bottom, torch.full_like(lower, -1e4), lower)
    # log(σ(a) − σ(b)) = log σ(a) + log σ(−b) + log(1 − e^(b − a)), stable for a > b
    log_bin = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(lower - upper).clamp_max(-1e-12))
    log_w = torch.log_softmax(logits, dim=-1)[..., None, :]
    return torch.logsumexp(log_bin + log_w, dim=-1).permute(0, 3, 1, 2)


def channel_pmf(params: np.ndarray, channel: int, previous: np.ndarray, k: int) -> np.ndarray:
    """float64 pmf (M, 256) of one channel given the decoded earlier channels ``previous`` (M, channel).

    Computed with torch in float64 on the CPU (faster than numpy's tanh); both sides call it with
    the same arrays in the same shapes, so they get the same bits.
    """
    p = torch.from_numpy(np.ascontiguousarray(params, dtype=np.float64))
    means, log_scales, coeffs, logits = p.split([3 * k, 3 * k, 3 * k, k], dim=-1)
    mu = means[:, channel * k:(channel + 1) * k]
    prev = normalize(torch.from_numpy(np.ascontiguousarray(previous, dtype=np.float64)))
    c = torch.tanh(coeffs)
    if channel == 1:
        mu = mu + c[:, 0:k] * prev[:, 0:1]
    elif channel == 2:
        mu = mu + c[:, k:2 * k] * prev[:, 0:1] + c[:, 2 * k:3 * k] * prev[:, 1:2]
    inv_s = torch.exp(-log_scales[:, channel * k:(channel + 1) * k].clamp_min(LOG_SCALE_MIN))
    w = torch.softmax(logits, dim=-1)
    edges = normalize(torch.arange(SYMBOLS - 1, dtype=torch.float64) + 0.5)  # upper edges of symbols 0..254
    cdf = torch.sigmoid((edges[None, :, None] - mu[:, None, :]) * inv_s[:, None, :]) @ w[:, :, None]
    cdf = torch.nn.functional.pad(cdf[..., 0], (1, 0), value=0.0)
    cdf = torch.nn.functional.pad(cdf, (0, 1), value=1.0)
    return torch.diff(cdf, dim=1).numpy()


def integer_pmf(pmf: np.ndarray, precision: int) -> np.ndarray:
    """Quantize float pmfs (M, S) to integer frequencies summing to 2**precision, each at least 1.

    The rounding remainder goes to each row's most probable symbol; integer arithmetic only, so
    equal float inputs give equal tables on every machine.
    """
    check_finite_array(pmf, "probabilities")
    total = 1 << precision
    n = pmf.shape[-1]
    if total < 2 * n:
        raise ValueError(f"precision {precision} is too small for {n} symbols; use at least {math.ceil(math.log2(2 * n))}")
    freq = np.floor(np.clip(pmf, 0.0, 1.0) * (total - n)).astype(np.int64) + 1
    deficit = total - freq.sum(axis=-1)
    top = np.argmax(freq, axis=-1)
    freq[np.arange(len(freq)), top] += deficit
    return freq


def discretized_logistic_pmf(values: np.ndarray, step: float, scale: float) -> np.ndarray:
    """pmf of the integers ``values`` (grid k·step) under Logistic(0, scale), tails in the end bins."""
    upper = 1.0 / (1.0 + np.exp(-(values + 0.5) * step / scale))
    lower = 1.0 / (1.0 + np.exp(-(values - 0.5) * step / scale))
    upper[-1], lower[0] = 1.0, 0.0
    return upper - lower

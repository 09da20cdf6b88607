"""Window self-attention helpers shared by the STF, TCM and TIC backbones (Swin, Liu et al., ICCV 2021),
and the prompted window attention of layer-adaptive prompts (LPM; TransTIC's mechanism).

STF and TCM name their attention parameters differently (``attn.qkv`` / ``msa.embedding_layer``, …),
so they share these functions, not modules. Feature maps are channels-last ``(B, H, W, C)``; windows
are ``(B, nW, w², C)``. Maps are zero-padded to window multiples (as STF's Swin blocks do), so any
size works; on sizes that the windows tile exactly the result is the unpadded computation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def relative_position_index(window: int) -> Tensor:
    """(w², w²) index of the relative offset (Δrow, Δcol) of two window positions, in [0, (2w−1)²)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + window - 1  # (2, w², w²), each in [0, 2w−2]
    return rel[0] * (2 * window - 1) + rel[1]


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) → (B, nW, w², C), windows in row-major order; H and W must be window multiples."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).transpose(2, 3)
    return x.reshape(b, -1, window * window, c)


def window_reverse(windows: Tensor, window: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B, nW, w², C) → (B, H, W, C)."""
    b, _, _, c = windows.shape
    x = windows.view(b, height // window, width // window, window, window, c).transpose(2, 3)
    return x.reshape(b, height, width, c)


@functools.lru_cache(maxsize=8)
def shifted_window_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> Tensor:
    """(nW, w², w²) bool, True where two positions of a window came from different image regions.

    After the cyclic roll by −shift, the last window row and column hold pixels from the opposite
    border; they must not attend to each other (Swin §3.2, "efficient batch computation"). Every
    shifted block of a stage asks for the same one, so the last few are kept; never modify it.
    """
    labels = region_labels(height, width, window, shift, device)
    return labels[:, :, None] != labels[:, None, :]


def region_labels(height: int, width: int, window: int, shift: int, device: torch.device) -> Tensor:
    """(nW, w²) label of the image region (one of 3×3 around the shift seams) of each window position."""
    labels = torch.zeros(height, width, dtype=torch.long, device=device)
    for i, rows in enumerate((slice(0, -window), slice(-window, -shift), slice(-shift, None))):
        for j, cols in enumerate((slice(0, -window), slice(-window, -shift), slice(-shift, None))):
            labels[rows, cols] = 3 * i + j
    return window_partition(labels[None, :, :, None], window)[0, :, :, 0]


def attention_bias(relative: Tensor, mask: Tensor | None) -> Tensor:
    """Relative-position bias (heads, N, N), with masked pairs set to −inf → (nW or 1, heads, N, N).

    STF adds −100 instead of −inf; the two differ by less than e^−70 after the softmax.
    """
    if mask is None:
        return relative[None]
    return relative[None].masked_fill(mask[:, None], float("-inf"))


class RelativeBias:
    """The (heads, N, N) relative-position bias of one attention module, gathered from its table once
    per change of the table rather than at every call; rebuilt at every call while gradients flow
    into the table (training), so that it stays in the graph."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._bias: Tensor | None = None

    def get(self, table: Tensor, build: Callable[[], Tensor]) -> Tensor:
        if torch.is_grad_enabled() and table.requires_grad:
            return build()
        key = (table.data_ptr(), table._version, table.dtype, table.device)
        if key != self._key:
            self._key, self._bias = key, build()
        return self._bias


def attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, mask: Tensor | None = None) -> Tensor:
    """softmax(q·kᵀ/√d + bias)·v over (…, N, d), −inf where ``mask`` (nW, N, N) is True.

    On the CPU the scale is split as √(d^−½) on q and on k and the bias added in place: bit for bit
    PyTorch's math ``scaled_dot_product_attention``, which CPU coding would run, without its guard
    for fully masked rows (a third of the attention time; no row here is fully masked, every
    position sees itself) and without materialising the (nW, heads, N, N) masked bias.
    Elsewhere the fused kernel runs.
    """
    if q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attention_bias(bias, mask).to(q.dtype))
    root = math.sqrt(1.0 / math.sqrt(q.shape[-1]))  # ATen's sqrt of the scale, in double
    scores = (q * root) @ (k * root).transpose(-2, -1)
    scores += bias.to(q.dtype)
    if mask is not None:
        scores.masked_fill_(mask[:, None], float("-inf"))
    return scores.softmax(-1) @ v


def window_attention(windows: Tensor, qkv: nn.Linear, proj: nn.Linear, heads: int, bias: Tensor,
                     mask: Tensor | None = None) -> Tensor:
    """Multi-head self-attention inside each window; ``qkv`` packs (3, heads, head_dim) on its output.

    ``bias`` broadcasts to (B, nW, heads, N, N), ``mask`` (nW, N, N) marks pairs that may not attend;
    scaling is head_dim^−½ as in both papers.
    """
    b, nw, n, c = windows.shape
    q, k, v = qkv(windows).view(b, nw, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
    out = attend(q, k, v, bias, mask)
    return proj(out.transpose(2, 3).reshape(b, nw, n, c))


@functools.lru_cache(maxsize=32)
def window_order(height: int, width: int, window: int, shift: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Flat positions of a (height, width) map in window order after the cyclic roll by −shift, and the
    inverse permutation: ``window_partition(roll(x))`` is one ``index_select`` instead of two copies."""
    grid = torch.arange(height * width, device=device).view(1, height, width, 1)
    if shift:
        grid = torch.roll(grid, (-shift, -shift), (1, 2))
    order = window_partition(grid, window).flatten()
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=device)
    return order, inverse


def windowed(x: Tensor, window: int, shift: int, attend: Callable[[Tensor, Tensor | None], Tensor]) -> Tensor:
    """Apply ``attend(windows, mask)`` to the (cyclically shifted) windows of ``x`` (B, H, W, C).

    ``x`` is zero-padded at the bottom/right to window multiples first and cropped afterwards;
    ``mask`` is None for plain windows and :func:`shifted_window_mask` for shifted ones. Rolling and
    partitioning (and their inverses) are one gather each.
    """
    b, h, w, c = x.shape
    pad_h, pad_w = -h % window, -w % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    order, inverse = window_order(hp, wp, window, shift, x.device)
    mask = shifted_window_mask(hp, wp, window, shift, x.device) if shift else None
    windows = x.reshape(b, hp * wp, c).index_select(1, order).view(b, -1, window * window, c)
    out = attend(windows, mask)
    out = out.reshape(b, hp * wp, -1).index_select(1, inverse).view(b, hp, wp, -1)
    return out[:, :h, :w] if pad_h or pad_w else out


def prompt_windows(prompt: Tensor, window: int, shift: int, down: int) -> Tensor:
    """Prompt map (B, H/down, W/down, C) → (B, nW, (w/down)², C) tokens per window of the image grid.

    Padded and cyclically shifted like the image (by shift/down), so each window's prompt tokens
    cover the same image area as its image tokens.
    """
    small, step = window // down, shift // down
    _, h, w, _ = prompt.shape
    prompt = F.pad(prompt, (0, 0, 0, -w % small, 0, -h % small))
    if step:
        prompt = torch.roll(prompt, (-step, -step), (1, 2))
    return window_partition(prompt, small)


def prompt_shift_mask(height: int, width: int, window: int, shift: int, down: int,
                      device: torch.device) -> Tensor:
    """(nW, w², (w/down)²) bool: image query and prompt key from different regions of a shifted window.

    ``height``/``width`` are the padded image-grid sizes; prompt positions take the region of the
    ``down``×``down`` image patch they summarise.
    """
    image = region_labels(height, width, window, shift, device)
    prompt = region_labels(height // down, width // down, window // down, shift // down, device)
    return image[:, :, None] != prompt[:, None, :]


def prompted_window_attention(windows: Tensor, prompts: Tensor, qkv: nn.Linear, proj: nn.Linear, heads: int,
                              bias: Tensor, prompt_mask: Tensor | None) -> Tensor:
    """Window attention with prompt tokens: queries from the image tokens only, keys and values from
    [prompts; image tokens]; only image outputs are returned.

    ``bias`` (nW or 1, heads, N, N) is the image–image bias (with shift masking); the prompt columns
    get zero relative-position bias, −inf where ``prompt_mask`` (nW, N, P) is True.
    """
    b, nw, n, c = windows.shape
    p = prompts.shape[2]
    tokens = torch.cat((prompts, windows), dim=2)
    q, k, v = qkv(tokens).view(b, nw, p + n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
    prompt_bias = torch.zeros(1, 1, n, p, dtype=bias.dtype, device=bias.device)
    if prompt_mask is not None:
        prompt_bias = prompt_bias.masked_fill(prompt_mask[:, None], float("-inf"))
    prompt_bias = prompt_bias.expand(max(bias.shape[0], prompt_bias.shape[0]), heads, n, p)
    full = torch.cat((prompt_bias, bias.expand(prompt_bias.shape[0], -1, -1, -1)), dim=-1)
    out = F.scaled_dot_product_attention(q[..., p:, :], k, v, attn_mask=full.to(q.dtype))
    return proj(out.transpose(2, 3).reshape(b, nw, n, c))

"""Bit-allocation maps: where in the image a backbone's ``encode`` spends its bits.

Backbones call the ``record_*`` hooks from inside ``encode`` with exactly what they hand to the entropy
coder (symbols, CDF indexes, tables, Huffman code lengths). Each hook turns that into the ideal code
length of every symbol — −log₂ p under the coder's own quantized tables, escapes included — and adds
it at the symbol's position. Outside a :func:`recording` block the hooks return at once, so coding is
unchanged; the recorder lives in a context variable, not on the backbone (copies of a model record too).

Where a hook also gets the model's own probabilities (the Gaussian scales, the bottleneck's density, a
lossless model's float pmfs), the recorder sums per stream the ideal code lengths under them too
(``ideals``): ``exact`` under the exact probabilities, ``table`` under the Gaussian whose scale is the
scale-table entry the coder picked (both floored at the model's likelihood bound, as ``forward`` does), and
for Gaussian streams the escaped symbols' count and bits apart. The coder's own tables give
``stream_bits``; the file gives the rest.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import numpy as np
import torch
from torch import Tensor

from ctrlic.codecs.entropy.gaussian import coding_scales

#: CompressAI's rANS: probabilities in 1/2**16; out-of-table values escape to raw 4-bit bypass groups
RANS_PRECISION = 16
BYPASS_PRECISION = 4
MAX_BYPASS = (1 << BYPASS_PRECISION) - 1


class BitRecorder:
    """Bits per cell of every coded stream, on that stream's own grid over the padded image.

    A stream's grid (h, w) covers the ``height`` × ``width`` image with cells of (height/h) × (width/w)
    pixels; ``bits_map`` spreads each cell's bits evenly over its pixels and sums the streams.
    """

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.streams: dict[str, np.ndarray] = {}
        self.overlays: dict[str, list[np.ndarray]] = {}
        self.notes: dict[str, float] = {}
        #: per stream, ideal bits under the model's probabilities: {"exact": …, "table": …}
        self.ideals: dict[str, dict[str, float]] = {}

    def add_ideals(self, stream: str, **bits: float) -> None:
        totals = self.ideals.setdefault(stream, {})
        for kind, value in bits.items():
            totals[kind] = totals.get(kind, 0.0) + float(value)

    def grid(self, stream: str, shape: Sequence[int]) -> np.ndarray:
        """The (h, w) float64 accumulator of ``stream`` (created on first use)."""
        shape = (int(shape[0]), int(shape[1]))
        if stream not in self.streams:
            if self.height % shape[0] or self.width % shape[1]:
                raise ValueError(f"stream {stream!r}: a {shape[0]}x{shape[1]} grid does not tile the "
                                 f"{self.height}x{self.width} image")
            self.streams[stream] = np.zeros(shape)
        grid = self.streams[stream]
        if grid.shape != shape:
            raise ValueError(f"stream {stream!r} was recorded on a {grid.shape} grid, now on {shape}")
        return grid

    def total_bits(self) -> float:
        return float(sum(g.sum() for g in self.streams.values()))

    def stream_bits(self) -> dict[str, float]:
        return {name: float(g.sum()) for name, g in self.streams.items()}

    def bits_map(self) -> np.ndarray:
        """(height, width) bits per pixel, all streams; its sum is ``total_bits``."""
        out = np.zeros((self.height, self.width))
        for grid in self.streams.values():
            sh, sw = self.height // grid.shape[0], self.width // grid.shape[1]
            out += np.kron(grid / (sh * sw), np.ones((sh, sw)))
        return out


_ACTIVE: ContextVar[BitRecorder | None] = ContextVar("ctrlic_bit_recorder", default=None)


@contextlib.contextmanager
def recording(height: int, width: int) -> Iterator[BitRecorder]:
    """Record the bits of every ``encode`` inside the block, for a padded image of this size."""
    recorder = BitRecorder(height, width)
    token = _ACTIVE.set(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)


def active() -> BitRecorder | None:
    return _ACTIVE.get()


# -- code lengths -----------------------------------------------------------------------------------


def escaped(symbols: Tensor, indexes: Tensor, cdf_length: Tensor, offset: Tensor) -> Tensor:
    """Which symbols fall outside their table's range and are coded as the escape symbol plus bypass bits."""
    idx = indexes.reshape(-1).long().cpu()
    value = symbols.reshape(-1).long().cpu() - offset.long().cpu()[idx]
    return ((value < 0) | (value >= cdf_length.long().cpu()[idx] - 2)).reshape(symbols.shape)


def rans_bits(symbols: Tensor, indexes: Tensor, cdf: Tensor, cdf_length: Tensor, offset: Tensor) -> Tensor:
    """Code length (bits, float64) of each symbol under CompressAI's rANS with these quantized CDFs.

    Mirrors ``rans_interface.cpp``: a value outside [0, cdf_length − 2) codes the table's last symbol,
    then the count of 4-bit bypass groups (in 4-bit groups itself) and the groups.
    """
    idx = indexes.reshape(-1).long().cpu()
    cdf, cdf_length, offset = cdf.long().cpu(), cdf_length.long().cpu(), offset.long().cpu()
    max_value = cdf_length[idx] - 2
    value = symbols.reshape(-1).long().cpu() - offset[idx]
    raw = torch.where(value < 0, -2 * value - 1, 2 * (value - max_value))
    escape = escaped(symbols, indexes, cdf_length, offset).reshape(-1)
    value = torch.where(escape, max_value, value)
    freq = cdf[idx, value + 1] - cdf[idx, value]
    bits = RANS_PRECISION - torch.log2(freq.double())
    raw = torch.where(escape, raw, torch.zeros_like(raw))
    groups = torch.where(raw > 0, torch.floor(torch.log2(raw.clamp_min(1).double())).long() // BYPASS_PRECISION + 1,
                         torch.zeros_like(raw))
    bypass = groups // MAX_BYPASS + 1 + groups
    return (bits + escape.double() * BYPASS_PRECISION * bypass.double()).reshape(symbols.shape)


def gaussian_bits(symbols: Tensor, scales: Tensor, floor: float = 0.0) -> Tensor:
    """−log₂ P(symbol) (float64) under a zero-mean Gaussian of these scales integrated over each integer's bin,
    P at least ``floor`` (the model's likelihood lower bound, as its ``forward`` applies it)."""
    v = symbols.double().abs()
    s = scales.double()

    def cdf(t: Tensor) -> Tensor:
        return 0.5 * torch.erfc(-t / math.sqrt(2))

    return -torch.log2((cdf((0.5 - v) / s) - cdf((-0.5 - v) / s)).clamp_min(max(floor, 1e-300)))


def likelihood_floor(conditional) -> float:
    """The smallest likelihood a ``GaussianConditional``'s ``forward`` returns (CompressAI: 1e-9), 0 if unbounded."""
    return float(conditional.likelihood_lower_bound.bound) if conditional.use_likelihood_bound else 0.0


def gaussian_ideals(conditional, symbols: Tensor, indexes: Tensor, scales: Tensor, coded: Tensor,
                    escape: Tensor) -> dict[str, float]:
    """Ideal bits of symbols coded by a ``GaussianConditional``: under the exact (lower-bounded) scales and
    under the scale-table entries the coder picked (``indexes``), both with the model's likelihood floor; and,
    apart, the escaped symbols' share of the coded, table and exact bits and their count."""
    floor, flat = likelihood_floor(conditional), symbols.reshape(-1).cpu()
    scales = conditional.lower_bound_scale(coding_scales(conditional, scales.detach()))  # QVRF: σ·a
    exact = gaussian_bits(flat, scales.reshape(-1).cpu(), floor)
    table = gaussian_bits(flat, conditional.scale_table.double().cpu()[indexes.reshape(-1).long().cpu()], floor)
    esc = escape.reshape(-1)
    return {"exact": float(exact.sum()), "table": float(table.sum()), "escapes": float(esc.sum()),
            "coded_escaped": float(coded.reshape(-1)[esc].sum()), "table_escaped": float(table[esc].sum()),
            "exact_escaped": float(exact[esc].sum())}


def _tables(model) -> tuple[Tensor, Tensor, Tensor]:
    """The quantized CDF tables a CompressAI entropy model codes with."""
    return model._quantized_cdf, model._cdf_length, model._offset


# -- hooks the backbones call from ``encode`` ---------------------------------------------------------


def record_rans(stream: str, model, symbols: Tensor, indexes: Tensor,
                at: tuple[Tensor, Tensor] | None = None, grid: Sequence[int] | None = None,
                scales: Tensor | None = None) -> None:
    """Symbols coded with ``model``'s tables: (1, C, h, w) on an h×w grid, or C×P (flat or not) at
    positions ``at`` = (rows, cols) of ``grid``. ``scales`` (a ``GaussianConditional``'s, one per symbol)
    adds the stream's ideal bits under the exact and the table scales."""
    recorder = _ACTIVE.get()
    if recorder is None:
        return
    tables = _tables(model)
    bits = rans_bits(symbols, indexes, *tables)
    if scales is not None:
        recorder.add_ideals(stream, **gaussian_ideals(model, symbols, indexes, scales, bits,
                                                      escaped(symbols, indexes, *tables[1:])))
    if at is None:
        recorder.grid(stream, bits.shape[-2:])[...] += bits.reshape(-1, *bits.shape[-2:]).sum(0).numpy()
        return
    rows, cols = (t.reshape(-1).long().cpu().numpy() for t in at)
    np.add.at(recorder.grid(stream, grid), (rows, cols), bits.reshape(-1, len(rows)).sum(0).numpy())


def record_bottleneck(stream: str, bottleneck, z: Tensor) -> None:
    """What ``EntropyBottleneck.compress(z)`` codes: round(z − median) under each channel's table."""
    if _ACTIVE.get() is None:
        return
    medians = bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    symbols = bottleneck.quantize(z, "symbols", medians)
    record_rans(stream, bottleneck, symbols, bottleneck._build_indexes(z.size()))
    values = (symbols.to(medians.dtype) + medians).permute(1, 0, 2, 3).reshape(z.shape[1], 1, -1)
    _, lower, upper = bottleneck._likelihood(values)
    sign = -torch.sign(lower + upper).double()
    p = (torch.sigmoid(sign * upper.double()) - torch.sigmoid(sign * lower.double())).abs()
    bits = float(-torch.log2(p.clamp_min(1e-300)).sum())
    _ACTIVE.get().add_ideals(stream, exact=bits, table=bits)  # one density per channel: no scale table


def record_gaussian(stream: str, conditional, y: Tensor, indexes: Tensor, means: Tensor | None = None,
                    scales: Tensor | None = None) -> None:
    """What ``GaussianConditional.compress(y, indexes, means)`` codes."""
    if _ACTIVE.get() is None:
        return
    record_rans(stream, conditional, conditional.quantize(y, "symbols", means), indexes, scales=scales)


def record_cells(stream: str, bits: np.ndarray, mask: np.ndarray) -> None:
    """Bits of the symbols coded at the true cells of ``mask`` (row-major order), on the mask's grid."""
    recorder = _ACTIVE.get()
    if recorder is None:
        return
    mask = np.asarray(mask, dtype=bool)
    recorder.grid(stream, mask.shape)[mask] += np.asarray(bits, dtype=np.float64)


def record_spread(stream: str, bits: float, cells: np.ndarray) -> None:
    """A section's ``bits`` spread evenly over the true cells of ``cells`` (all cells when none is true)."""
    recorder = _ACTIVE.get()
    if recorder is None:
        return
    cells = np.asarray(cells, dtype=bool)
    where = cells if cells.any() else np.ones_like(cells)
    recorder.grid(stream, cells.shape)[where] += bits / where.sum()


def record_patches(stream: str, freq: np.ndarray, symbols: np.ndarray, precision: int, keep: np.ndarray,
                   rows: Tensor, cols: Tensor, patch: int, size: Sequence[int], pmf: np.ndarray | None = None) -> None:
    """Sub-pixels coded under integer tables ``freq`` (M, S) summing to 2**precision, one per true entry
    of ``keep`` (N patches × G positions (rows, cols) of the step), patches in raster order over ``size``.
    ``pmf`` (M, S), the model's float probabilities the tables quantize, adds the stream's exact ideal."""
    recorder = _ACTIVE.get()
    if recorder is None:
        return
    bits = precision - np.log2(freq[np.arange(len(symbols)), symbols].astype(np.float64))
    if pmf is not None:
        exact = float(-np.log2(np.maximum(pmf[np.arange(len(symbols)), symbols], 1e-300)).sum())
        recorder.add_ideals(stream, exact=exact, table=exact)
    n, g = np.nonzero(keep)
    per_row = -(-int(size[1]) // patch)
    r = (n // per_row) * patch + np.asarray(rows)[g]
    c = (n % per_row) * patch + np.asarray(cols)[g]
    np.add.at(recorder.grid(stream, size), (r, c), bits)
    recorder.notes["patch_size"] = patch


def record_overlay(name: str, layers: Sequence[np.ndarray]) -> None:
    """Masks drawn over the map (e.g. Control-GIC's coarse / medium / fine grains)."""
    recorder = _ACTIVE.get()
    if recorder is not None:
        recorder.overlays[name] = [np.asarray(layer, dtype=bool).copy() for layer in layers]

"""Range coding of symbols under integer frequency tables, with ``constriction``'s queue coder.

Tables come from ``mixture.integer_pmf``; they are exact multiples of 2**-precision, so handing
them to constriction as float64 probabilities loses nothing, and encoder and decoder see the same.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from ctrlic.codecs.bitstream import BitstreamError

_FAMILY = constriction.stream.model.Categorical(perfect=False)
#: what constriction raises on compressed data that no encoder wrote under these tables
CONSTRICTION_ERRORS = (AssertionError, ValueError, RuntimeError, OverflowError)


def _probabilities(freq: np.ndarray, precision: int) -> np.ndarray:
    return np.ascontiguousarray(freq, dtype=np.float64) / float(1 << precision)


class Encoder:
    """Appends symbols, each under its own integer table, to one range-coded stream."""

    def __init__(self, precision: int) -> None:
        self.precision = precision
        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbols: np.ndarray, freq: np.ndarray) -> None:
        """``symbols`` (M,) int, ``freq`` (M, S) integer tables."""
        if len(symbols):
            self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), _FAMILY,
                               _probabilities(freq, self.precision))

    def finish(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Reads back what ``Encoder`` wrote, given the same tables in the same order."""

    def __init__(self, data: bytes, precision: int) -> None:
        if len(data) % 4:
            raise BitstreamError(f"range-coded section of {len(data)} bytes is not whole 32-bit words; "
                                 "the bitstream is truncated or corrupted")
        self.precision = precision
        self._coder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))

    def decode(self, freq: np.ndarray) -> np.ndarray:
        if not len(freq):
            return np.zeros(0, dtype=np.int64)
        try:
            return self._coder.decode(_FAMILY, _probabilities(freq, self.precision)).astype(np.int64)
        except CONSTRICTION_ERRORS as exc:
            raise BitstreamError(f"a range-coded section cannot be decoded ({exc}); the bitstream is corrupted "
                                 "or its declared size is wrong") from None

    def check_end(self) -> None:
        """Refuse a stream with data left after the last symbol (cut short or altered, or another size)."""
        if not self._coder.maybe_exhausted():
            raise BitstreamError("a range-coded section does not end after the symbols it should hold: "
                                 "the bitstream is corrupted or its declared size is wrong")


def stream_bounds(symbols: int, alphabet: int, precision: int) -> tuple[int, int]:
    """Least and most bytes a stream of ``symbols`` symbols can take under ``integer_pmf`` tables: every
    symbol costs at least −log2(1 − (alphabet − 1)/2**precision) bits (each other symbol has frequency
    >= 1) and at most ``precision`` bits, in whole 32-bit words."""
    least_bits = symbols * -math.log2(1 - (alphabet - 1) / (1 << precision))
    return 4 * math.floor(least_bits / 32), 4 * (math.ceil(symbols * precision / 32) + 2)

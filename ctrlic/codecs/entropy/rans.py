"""CompressAI's rANS coder behind checks: what it encodes is finite and in range, what it decodes stays in its buffer.

CompressAI's C++ coder trusts its input. A NaN or huge latent becomes INT_MIN, whose bypass loop in
``encode_with_indexes`` never ends (Ctrl-C is not seen inside it). Its decoder reads 32-bit words with
no bounds check, so a stream holding fewer symbols than the header asks for is read past its end
(a segmentation fault for a large declared size). Here encoding refuses symbols that are not finite or
beyond ±``SYMBOL_LIMIT``; decoding hands the decoder a copy padded beyond the most it can read, checks
every decoded value, and after the last symbol checks that the stream ended exactly at its last word
(four probes under a 16-bit identity table: the rANS state is back near its initial 2**31 — low 16 bits
zero, below 2**47 — and the next words read are the padding's sentinels), so a section that does not hold
exactly the declared latent is refused instead of decoded into garbage.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import torch
from compressai.ans import RansDecoder, RansEncoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import Tensor

from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.finite import CodingRangeError

#: largest |symbol| coded (quantised latent minus its mean); trained latents stay in the hundreds, and
#: CompressAI's bypass arithmetic overflows beyond 2**30
SYMBOL_LIMIT = 1 << 20
#: bytes of the rANS state a stream starts with (CompressAI flushes the 64-bit state)
STATE_BYTES = 8
#: 32-bit words a symbol may take in a stream CompressAI wrote: one renormalisation plus at most
#: 1 + 6 bypass words for |symbol| <= SYMBOL_LIMIT (4-bit bypass chunks of 2·|s| + 1)
MAX_WORDS_PER_SYMBOL = 8
#: words the decoder may read past the data: one per symbol, plus 15 bypass chunks for every 4-bit
#: chunk of 0xF in the data (8 per word), plus the chunks of the 64-bit initial state. Checked
#: against a model of the decoder on random and all-ones streams (never more than n + 120·W + 2).
_OVERREAD_PER_DATA_WORD, _OVERREAD_SLACK = 128, 1024
#: the first padding words: where a stream that ended exactly resumes reading
_SENTINELS = (0x12345678, 0x3C5A9E71)
_PROBE_TABLE = [list(range((1 << 16) + 1))]  # 16-bit identity table: each probe reveals 16 bits of state
_PROBE_EXPECTED = [0, _SENTINELS[0] & 0xFFFF, _SENTINELS[0] >> 16, _SENTINELS[1] & 0xFFFF]


def check_symbols(values: Tensor, what: str) -> None:
    """Refuse quantised values (float or int) that are not finite or beyond ±SYMBOL_LIMIT, before coding."""
    if values.numel() == 0:
        return
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        raise CodingRangeError(f"the latent {what} holds NaN or infinite values: the model's weights or "
                               "activations overflow; use a model whose training did not diverge")
    peak = float(values.double().abs().max())  # double: an int32 NaN cast (INT_MIN) has no int32 abs
    if peak > SYMBOL_LIMIT:
        raise CodingRangeError(f"the latent {what} reaches {peak:.3g}, beyond the ±{SYMBOL_LIMIT} the entropy "
                               "coder takes: the model's weights are damaged (far too large)")


def encode(symbols: Sequence[Tensor], indexes: Sequence[Tensor], tables: tuple[list, list, list],
           what: str) -> bytes:
    """One rANS stream of the (rounded) ``symbols`` under the CDF tables ``indexes`` name; checked first."""
    flat = torch.cat([s.flatten() for s in symbols])
    check_symbols(flat, what)
    idx = torch.cat([i.flatten() for i in indexes])
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(tables[1])):
        raise CodingRangeError(f"CDF indexes of {what} fall outside the model's {len(tables[1])} tables")
    return RansEncoder().encode_with_indexes(flat.int().tolist(), idx.int().tolist(), *tables)


def tables_of(model: EntropyBottleneck | GaussianConditional) -> tuple[list, list, list]:
    """The CDF tables, their lengths and offsets of a CompressAI entropy model, as the coder takes them."""
    return (model.quantized_cdf.tolist(), model.cdf_length.reshape(-1).int().tolist(),
            model.offset.reshape(-1).int().tolist())


def compress_bottleneck(eb: EntropyBottleneck, z: Tensor, what: str = "z") -> bytes:
    """``eb.compress`` of one latent (1, C, h, w), its symbols checked first."""
    medians = eb._get_medians().detach().reshape(-1, 1, 1)
    check_symbols(torch.round(z[0] - medians), what)
    return eb.compress(z)[0]


def compress_gaussian(gc: GaussianConditional, y: Tensor, indexes: Tensor, means: Tensor, what: str = "y") -> bytes:
    """``gc.compress`` of one latent (1, C, h, w) with its means, its symbols checked first."""
    check_symbols(torch.round(y - means), what)
    return gc.compress(y, indexes, means=means)[0]


def check_stream(data: bytes, symbols: int, what: str) -> None:
    """Refuse a section that cannot be a CompressAI rANS stream of ``symbols`` symbols (before decoding)."""
    most = STATE_BYTES + 4 * MAX_WORDS_PER_SYMBOL * symbols
    if len(data) < STATE_BYTES or len(data) % 4 or len(data) > most:
        raise BitstreamError(f"section {what} is {len(data)} bytes; an rANS stream of {symbols} symbols is "
                             f"whole 32-bit words, {STATE_BYTES} to {most} bytes: the file is corrupted or "
                             "its declared image size is wrong")


class StreamDecoder:
    """CompressAI's ``RansDecoder`` over one section: at most ``symbols`` symbols, checked as they come."""

    def __init__(self, data: bytes, symbols: int, what: str) -> None:
        check_stream(data, symbols, what)
        self.what, self.left = what, symbols
        words = symbols + _OVERREAD_PER_DATA_WORD * (len(data) // 4) + _OVERREAD_SLACK
        padding = struct.pack("<2I", *_SENTINELS) + bytes(4 * words)
        self._decoder = RansDecoder()
        self._decoder.set_stream(bytes(data) + padding)

    def decode(self, indexes: list[int], cdf: list, cdf_length: list[int], offsets: list[int]) -> list[int]:
        """The next ``len(indexes)`` symbols; refuses values no encoder writes."""
        if len(indexes) > self.left:
            raise RuntimeError(f"decoding more symbols of {self.what} than the stream was opened for")
        self.left -= len(indexes)
        values = self._decoder.decode_stream(indexes, cdf, cdf_length, offsets)
        if values and max(-min(values), max(values)) > SYMBOL_LIMIT:
            raise BitstreamError(f"section {self.what} decodes to values beyond ±{SYMBOL_LIMIT}: "
                                 "the file is corrupted or its declared image size is wrong")
        return values

    def check_end(self) -> None:
        """Refuse a stream that did not end exactly after the declared symbols (too short, too long, altered)."""
        if self.left:
            raise RuntimeError(f"{self.left} symbols of {self.what} were not decoded")
        probe = self._decoder.decode_stream([0] * len(_PROBE_EXPECTED), _PROBE_TABLE, [len(_PROBE_TABLE[0])], [0])
        if probe != _PROBE_EXPECTED:
            raise BitstreamError(f"section {self.what} does not hold exactly the latent the header declares "
                                 "(it ends early or late): the file is corrupted or its declared size is wrong")


def decompress_bottleneck(eb: EntropyBottleneck, data: bytes, size: tuple[int, int], what: str = "z") -> Tensor:
    """``eb.decompress([data], size)`` through a checked decoder; returns (1, C, h, w)."""
    indexes = eb._build_indexes((1, eb._quantized_cdf.size(0), *size)).to(eb._quantized_cdf.device)
    medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
    return _decompress(eb, data, indexes, medians, what)


def decompress_gaussian(gc: GaussianConditional, data: bytes, indexes: Tensor, means: Tensor,
                        what: str = "y") -> Tensor:
    """``gc.decompress([data], indexes, means=means)`` through a checked decoder."""
    return _decompress(gc, data, indexes, means, what)


def _decompress(model: EntropyBottleneck | GaussianConditional, data: bytes, indexes: Tensor, means: Tensor,
                what: str) -> Tensor:
    decoder = StreamDecoder(data, indexes.numel(), what)
    values = decoder.decode(indexes.reshape(-1).int().tolist(), *tables_of(model))
    decoder.check_end()
    symbols = torch.tensor(values, dtype=model._quantized_cdf.dtype, device=indexes.device).reshape(indexes.shape)
    return model.dequantize(symbols, means)

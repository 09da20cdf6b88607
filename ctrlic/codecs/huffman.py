"""Statistical coding for Control-GIC: static Huffman codes from codebook usage counts, and mask coding.

The index table is built once from the counts gathered in training (so encoder and decoder share
it through the weights); grain masks are written either as raw bits or with an adaptive binary
range coder (2-neighbour context, Krichevsky–Trofimov counts), whichever is shorter for the image.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import constriction
import numpy as np

from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.lossless.coder import CONSTRICTION_ERRORS


class HuffmanError(BitstreamError):
    """A code table or stream that cannot be used (no symbols, truncated or corrupt stream)."""


def huffman_lengths(counts: Sequence[float] | np.ndarray) -> np.ndarray:
    """Code length of every symbol for frequencies ``counts`` (+1 each, so every symbol gets a code)."""
    weights = np.asarray(counts, dtype=np.float64).reshape(-1) + 1.0
    n = weights.size
    if n < 2:
        raise HuffmanError(f"a Huffman code needs at least two symbols, got {n}")
    heap = [(w, i) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    parent = list(range(n))  # node -> parent node; leaves are 0..n-1, merged nodes follow
    next_id = n
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = next_id
        parent.append(next_id)
        heapq.heappush(heap, (w1 + w2, next_id))
        next_id += 1
    root = next_id - 1
    depth = [0] * next_id
    for node in range(root - 1, -1, -1):  # parents have larger ids: one pass from the root down
        depth[node] = depth[parent[node]] + 1
    return np.asarray(depth[:n], dtype=np.int64)


class HuffmanCode:
    """A canonical Huffman code over symbols 0..n-1 (code words assigned by (length, symbol))."""

    def __init__(self, lengths: np.ndarray) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        order = np.lexsort((np.arange(self.lengths.size), self.lengths))
        self.sorted_symbols = order.tolist()
        self.words: list[str] = [""] * self.lengths.size
        max_len = int(self.lengths.max())
        self.first_code = [0] * (max_len + 2)
        self.first_index = [0] * (max_len + 2)
        self.count = [0] * (max_len + 2)
        code, prev = 0, int(self.lengths[order[0]])
        for i, sym in enumerate(self.sorted_symbols):
            length = int(self.lengths[sym])
            code <<= length - prev
            prev = length
            if self.count[length] == 0:
                self.first_code[length], self.first_index[length] = code, i
            self.count[length] += 1
            self.words[sym] = format(code, f"0{length}b")
            code += 1

    @classmethod
    def from_counts(cls, counts: Sequence[float] | np.ndarray) -> HuffmanCode:
        return cls(huffman_lengths(counts))

    @classmethod
    def uniform(cls, n: int) -> HuffmanCode:
        """The code built from equal frequencies (the baseline the paper compares against)."""
        return cls.from_counts(np.zeros(n))

    def mean_length(self, counts: Sequence[float] | np.ndarray) -> float:
        """Expected code length in bits under the distribution ``counts`` (L of eq. 12–13)."""
        p = np.asarray(counts, dtype=np.float64).reshape(-1) + 1.0
        return float((p / p.sum() * self.lengths).sum())

    def bits(self, symbols: np.ndarray) -> int:
        return int(self.lengths[np.asarray(symbols, dtype=np.int64)].sum())

    def encode(self, symbols: np.ndarray) -> bytes:
        """Concatenated code words, zero-padded to whole bytes."""
        stream = "".join(self.words[s] for s in np.asarray(symbols, dtype=np.int64).tolist())
        return _bits_to_bytes(stream)

    def decode(self, data: bytes, n: int) -> np.ndarray:
        """The first ``n`` symbols of ``data``."""
        out = np.empty(n, dtype=np.int64)
        stream = _bytes_to_bits(data)
        code = length = k = 0
        first_code, first_index, count, symbols = self.first_code, self.first_index, self.count, self.sorted_symbols
        top = len(count) - 1
        for bit in stream:
            if k == n:
                break
            code = 2 * code + (bit == "1")
            length += 1
            if length > top:
                raise HuffmanError("corrupt Huffman stream: no code word matches")
            offset = code - first_code[length]
            if count[length] and 0 <= offset < count[length]:
                out[k] = symbols[first_index[length] + offset]
                k += 1
                code = length = 0
        if k < n:
            raise HuffmanError(f"truncated Huffman stream: {k} of {n} symbols decoded")
        return out


def _bits_to_bytes(stream: str) -> bytes:
    if not stream:
        return b""
    stream += "0" * (-len(stream) % 8)
    return int(stream, 2).to_bytes(len(stream) // 8, "big")


def _bytes_to_bits(data: bytes) -> str:
    return format(int.from_bytes(data, "big"), f"0{8 * len(data)}b") if data else ""


# -- grain masks ---------------------------------------------------------------------------------

RAW, ADAPTIVE, ALL_ZERO, ALL_ONE = 0, 1, 2, 3
METHOD_NAMES = {RAW: "raw", ADAPTIVE: "adaptive", ALL_ZERO: "zeros", ALL_ONE: "ones"}


def _bernoulli() -> constriction.stream.model.Bernoulli:
    return constriction.stream.model.Bernoulli(perfect=False)


def _context_of(decoded: np.ndarray, row: int, col: int) -> int:
    """Context 0..3 from the left and top neighbours (already coded in raster order)."""
    left = decoded[row, col - 1] if col else 0
    top = decoded[row - 1, col] if row else 0
    return int(left) + 2 * int(top)


def _encode_adaptive(mask: np.ndarray, valid: np.ndarray) -> bytes:
    width = mask.shape[1]
    mask = mask & valid  # cells outside ``valid`` read as 0 on both sides
    positions = np.flatnonzero(valid.reshape(-1))
    bits = mask.reshape(-1)[positions].astype(np.int32)
    ones, total = np.full(4, 0.5), np.ones(4)
    probs = np.empty(bits.size)
    for i, pos in enumerate(positions.tolist()):
        ctx = _context_of(mask, pos // width, pos % width)
        probs[i] = ones[ctx] / total[ctx]
        ones[ctx] += bits[i]
        total[ctx] += 1
    encoder = constriction.stream.queue.RangeEncoder()
    if bits.size:
        encoder.encode(bits, _bernoulli(), probs)
    return encoder.get_compressed().tobytes()


def _decode_adaptive(data: bytes, valid: np.ndarray) -> np.ndarray:
    if len(data) % 4:
        raise HuffmanError("corrupt mask stream: the adaptive coder writes whole 32-bit words")
    mask = np.zeros(valid.shape, dtype=bool)
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype=np.uint32).copy())
    model = _bernoulli()
    ones, total = np.full(4, 0.5), np.ones(4)
    width = valid.shape[1]
    for pos in np.flatnonzero(valid.reshape(-1)).tolist():
        row, col = pos // width, pos % width
        ctx = _context_of(mask, row, col)
        try:
            bit = int(decoder.decode(model, np.array([ones[ctx] / total[ctx]]))[0])
        except CONSTRICTION_ERRORS as exc:
            raise HuffmanError(f"corrupt mask stream ({exc})") from None
        mask[row, col] = bool(bit)
        ones[ctx] += bit
        total[ctx] += 1
    if not decoder.maybe_exhausted():
        raise HuffmanError("corrupt mask stream: data left after the last cell")
    return mask


def encode_mask(mask: np.ndarray, valid: np.ndarray, method: str = "best") -> bytes:
    """Code the cells of a 2-D boolean ``mask`` where ``valid`` is true; one method byte first.

    ``method``: ``raw`` (1 bit per cell), ``adaptive`` (context range coder) or ``best`` (the
    shorter of the two, or the method byte alone when every coded cell has the same value).
    """
    mask, valid = np.asarray(mask, dtype=bool), np.asarray(valid, dtype=bool)
    if method not in ("raw", "adaptive", "best"):
        raise HuffmanError(f"mask coding method {method!r}; choose raw, adaptive or best")
    coded = mask[valid]
    if method == "best" and not coded.any():
        return bytes([ALL_ZERO])  # e.g. no coarse grain: the official code omits such a mask too
    if method == "best" and coded.all():
        return bytes([ALL_ONE])
    candidates = {}
    if method in ("raw", "best"):
        candidates[RAW] = _bits_to_bytes("".join("1" if b else "0" for b in coded.tolist()))
    if method in ("adaptive", "best"):
        candidates[ADAPTIVE] = _encode_adaptive(mask, valid)
    tag = min(candidates, key=lambda t: (len(candidates[t]), t))
    return bytes([tag]) + candidates[tag]


def decode_mask(data: bytes, valid: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_mask`` given the same ``valid`` cells; returns the boolean mask."""
    valid = np.asarray(valid, dtype=bool)
    if not data:
        raise HuffmanError("empty mask stream")
    tag, body = data[0], data[1:]
    if tag == RAW:
        n = int(valid.sum())
        if len(body) != -(-n // 8):
            raise HuffmanError(f"raw mask stream of {len(body)} bytes for {n} cells (expected {-(-n // 8)})")
        stream = _bytes_to_bits(body)
        mask = np.zeros(valid.shape, dtype=bool)
        mask[valid] = np.frombuffer(stream[:n].encode(), dtype=np.uint8) == ord("1")
        return mask
    if tag == ADAPTIVE:
        return _decode_adaptive(body, valid)
    if tag in (ALL_ZERO, ALL_ONE):
        if body:
            raise HuffmanError(f"constant mask stream with {len(body)} bytes after its tag")
        return valid & (tag == ALL_ONE)
    raise HuffmanError(f"unknown mask coding method {tag} in the bitstream")


def check_mask_section(data: bytes, cells: int, what: str) -> None:
    """Refuse, before decoding, a mask section that cannot code at most ``cells`` cells."""
    if not data or data[0] not in METHOD_NAMES:
        raise HuffmanError(f"{what} mask section is empty or names no known coding method")
    most = {RAW: 1 + -(-cells // 8), ADAPTIVE: 1 + 4 * (cells + 2), ALL_ZERO: 1, ALL_ONE: 1}[data[0]]
    if len(data) > most or (data[0] == ADAPTIVE and (len(data) - 1) % 4):
        raise HuffmanError(f"{what} mask section of {len(data)} bytes cannot code {cells} cells "
                           f"({METHOD_NAMES[data[0]]}, at most {most} bytes)")


def mask_method(data: bytes) -> str:
    """Which coder a mask section used (for reports)."""
    return METHOD_NAMES.get(data[0], "unknown")

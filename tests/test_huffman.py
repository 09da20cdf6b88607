"""Static Huffman codes from usage counts and the grain-mask coders: exact round trips, real savings."""

from __future__ import annotations

import numpy as np
import pytest

from ctrlic.codecs.huffman import (
    HuffmanCode,
    HuffmanError,
    decode_mask,
    encode_mask,
    huffman_lengths,
    mask_method,
)


def skewed_counts(n: int = 1024, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).zipf(1.6, n).astype(np.float64)


def test_lengths_form_a_complete_prefix_code():
    lengths = huffman_lengths(skewed_counts())
    assert np.isclose(np.sum(2.0 ** -lengths.astype(float)), 1.0)  # Kraft equality: no wasted code space


def test_uniform_code_of_1024_symbols_is_10_bits():
    assert set(HuffmanCode.uniform(1024).lengths.tolist()) == {10}


def test_round_trip_is_exact_and_rate_matches_lengths():
    counts = skewed_counts()
    code = HuffmanCode.from_counts(counts)
    rng = np.random.default_rng(1)
    symbols = rng.choice(counts.size, 3000, p=(counts + 1) / (counts + 1).sum())
    data = code.encode(symbols)
    assert np.array_equal(code.decode(data, symbols.size), symbols)
    assert len(data) == -(-code.bits(symbols) // 8)


def test_statistical_code_beats_uniform_on_skewed_usage():
    counts = skewed_counts()
    code = HuffmanCode.from_counts(counts)
    assert code.mean_length(counts) < 0.8 * HuffmanCode.uniform(counts.size).mean_length(counts)
    entropy = -np.sum((p := (counts + 1) / (counts + 1).sum()) * np.log2(p))
    assert entropy <= code.mean_length(counts) < entropy + 1  # Huffman's optimality bound


def test_truncated_stream_raises():
    code = HuffmanCode.from_counts(skewed_counts())
    data = code.encode(np.arange(200))
    with pytest.raises(HuffmanError, match="truncated"):
        code.decode(data[: len(data) // 2], 200)


@pytest.mark.parametrize("method", ["raw", "adaptive", "best"])
def test_mask_round_trip_on_valid_cells(method):
    rng = np.random.default_rng(2)
    mask = np.zeros((24, 40), dtype=bool)
    mask[:10] = True
    mask |= rng.random(mask.shape) < 0.05
    valid = rng.random(mask.shape) < 0.7
    data = encode_mask(mask, valid, method)
    assert np.array_equal(decode_mask(data, valid), mask & valid)


def test_adaptive_mask_coder_wins_on_structured_masks_and_best_keeps_it():
    mask = np.zeros((32, 48), dtype=bool)
    mask[:, :20] = True  # one large region, as entropy ordering produces
    valid = np.ones_like(mask)
    raw, adaptive, best = (encode_mask(mask, valid, m) for m in ("raw", "adaptive", "best"))
    assert len(adaptive) < len(raw)
    assert best == adaptive and mask_method(best) == "adaptive"


def test_constant_mask_costs_one_byte():
    valid = np.ones((8, 8), dtype=bool)
    for mask in (np.zeros_like(valid), valid.copy()):
        data = encode_mask(mask, valid, "best")
        assert len(data) == 1 and np.array_equal(decode_mask(data, valid), mask)


def test_unknown_mask_method_raises():
    with pytest.raises(HuffmanError, match="choose raw, adaptive or best"):
        encode_mask(np.zeros((2, 2), bool), np.ones((2, 2), bool), "arith")

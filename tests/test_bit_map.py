"""Bit-allocation maps: −log₂ of the coder's own probabilities, placed where each symbol lives, add up to the
real payload for every backbone; recording changes nothing in the bitstream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compressai.ans import RansEncoder
from omegaconf import OmegaConf

from ctrlic.codecs.bit_allocation import BitMapUnavailable, bit_allocation
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.entropy import bit_map
from tests.conftest import ROOT, tiny_stf_with_adapters
from tests.helpers_control_gic import tiny_configs
from tests.helpers_lossless import kodak_crop, tiny_callic


def test_rans_code_lengths_match_compressais_encoder_escapes_included():
    torch.manual_seed(0)
    # two tables over 9 and 5 symbols (offsets -4 and -2); a third of the values escape the tables
    pmfs = [torch.tensor([1, 2, 6, 12, 20, 12, 6, 2, 1.0]), torch.tensor([3, 10, 30, 10, 3.0])]
    cdf = torch.zeros(2, 11, dtype=torch.int32)
    for i, p in enumerate(pmfs):
        freq = torch.floor(p / p.sum() * (2**16 - 2 * len(p))).int() + 1  # +1 slot for the escape symbol
        freq = torch.cat([freq, torch.tensor([2**16 - int(freq.sum())], dtype=torch.int32)])
        cdf[i, 1:len(freq) + 1] = torch.cumsum(freq, 0)
    lengths = torch.tensor([len(p) + 2 for p in pmfs], dtype=torch.int32)
    offsets = torch.tensor([-4, -2], dtype=torch.int32)
    indexes = torch.randint(0, 2, (20000,), dtype=torch.int32)
    symbols = torch.round(torch.randn(20000) * 3).int()
    symbols[::7] *= 40  # far outside: several 4-bit bypass groups
    data = RansEncoder().encode_with_indexes(symbols.tolist(), indexes.tolist(), cdf.tolist(), lengths.tolist(),
                                             offsets.tolist())
    ideal = bit_map.rans_bits(symbols, indexes, cdf, lengths, offsets).sum().item()
    escapes = bit_map.escaped(symbols, indexes, lengths, offsets)
    far = symbols[::7] != 0
    assert escapes.float().mean() > 0.2 and escapes[::7][far].all()  # the far ones escape whatever their table
    assert not escapes[(symbols == 0)].any()  # 0 lies inside both tables
    # rANS spends the ideal lengths plus its final state (64 bits) and word alignment
    assert 0 <= 8 * len(data) - ideal <= 96


def backbone(name: str) -> dict:
    return {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "backbone" / f"{name}.yaml")), "size": "tiny"}


def codecs():
    b, c = tiny_stf_with_adapters()
    yield "stf_alpha", lambda: build_codec(b, c), {"alpha": 0.5}, (128, 192)
    for name, size in (("tcm", (128, 192)), ("cheng2020_attn", (256, 256)), ("tic", (128, 192)),
                       ("tic_hyperprior", (128, 192))):
        yield name, lambda name=name: build_codec(backbone(name), None), None, size
    yield "callic", tiny_callic, {"steps": 2}, (64, 96)
    vb, vc = tiny_configs()
    yield "control_gic", lambda: build_codec(vb, vc), None, (128, 192)


@pytest.mark.parametrize(("name", "make", "knobs", "size"), list(codecs()), ids=[c[0] for c in codecs()])
def test_map_sums_to_the_image_payload_and_recording_changes_no_bit(name, make, knobs, size):
    torch.manual_seed(0)
    codec = make()
    codec.prepare()
    x = kodak_crop(*size)
    allocation = bit_allocation(codec, x, knobs)
    image_bits = allocation.payload_bits - allocation.side_bits
    assert allocation.map_bits == pytest.approx(image_bits, rel=0.03)
    assert allocation.map_bits <= image_bits + 8 * len(allocation.streams)  # Huffman/rANS never beat −log₂ p
    assert allocation.bits.shape == size and (allocation.bits >= 0).all()
    assert allocation.bits_outside == 0  # these sizes need no padding
    assert sum(allocation.streams.values()) == pytest.approx(allocation.map_bits)
    assert codec.compress(x, knobs) == allocation.data  # the recorded coding is the coding
    if name == "callic":
        assert allocation.side_bits > 0  # the adapted weights are side information, outside the map
        assert allocation.notes["patch_size"] == 8
    if name == "control_gic":
        coarse, medium, fine = allocation.overlays["granularity"]
        assert coarse.shape[0] * 4 == medium.shape[0] * 2 == fine.shape[0] == size[0] // 4


def test_map_puts_the_bits_where_the_symbols_are():
    """MGCF codes every sub-pixel at its own position: the map matches, pixel by pixel, the bits of the
    teacher-forced likelihoods (the coder's integer tables differ from them by rounding only)."""
    torch.manual_seed(0)
    codec = tiny_callic()
    codec.prepare()
    x = kodak_crop(24, 40)
    with torch.no_grad():
        expected = (-codec.backbone(x)["log_likelihoods"][0].sum(0) / np.log(2)).numpy()
    bits = bit_allocation(codec, x, {"steps": 0}).bits
    assert np.abs(bits - expected).max() < 0.03
    assert np.abs(bits - np.roll(expected, 1, axis=1)).max() > 0.3  # one pixel off would show


def test_tiled_images_get_no_map():
    b, c = tiny_stf_with_adapters()
    codec = build_codec(b, c)
    codec.set_options(tile=64)
    with pytest.raises(BitMapUnavailable, match="tiles"):
        bit_allocation(codec, kodak_crop(128, 128), {"alpha": 1.0})


def test_hooks_do_nothing_outside_a_recording():
    assert bit_map.active() is None
    bit_map.record_cells("x", np.ones(4), np.ones((2, 2), dtype=bool))  # no recorder: no error, no state
    with bit_map.recording(4, 4) as recorder:
        bit_map.record_cells("x", np.arange(4.0), np.ones((2, 2), dtype=bool))
    assert bit_map.active() is None
    assert recorder.bits_map().tolist()[0] == [0, 0, 0.25, 0.25]


def test_wavefront_symbols_land_on_their_rows_and_columns():
    """``record_rans`` with positions (the wavefront coders): symbol k of channel c goes to (rows[k], cols[k])."""

    class Tables:  # one table over {0, 1}: P(0) = 3/4, P(1) = 1/4 (and a tiny escape slot)
        _quantized_cdf = torch.tensor([[0, 49151, 65535, 65536]])
        _cdf_length = torch.tensor([4])
        _offset = torch.tensor([0])

    rows, cols = torch.tensor([0, 1, 2]), torch.tensor([2, 0, 1])
    symbols = torch.tensor([[1, 0, 0], [1, 1, 0]])  # (C=2, P=3)
    with bit_map.recording(48, 48) as recorder:
        bit_map.record_rans("y", Tables, symbols.flatten(), torch.zeros(6, dtype=torch.int32), (rows, cols), (3, 3))
    grid = recorder.streams["y"]
    one, zero = 16 - np.log2(65535 - 49151), 16 - np.log2(49151)
    assert grid[0, 2] == pytest.approx(2 * one) and grid[1, 0] == pytest.approx(one + zero)
    assert grid[2, 1] == pytest.approx(2 * zero) and grid.sum() == pytest.approx(3 * one + 3 * zero)
    assert recorder.bits_map()[0:16, 32:48].sum() == pytest.approx(2 * one)  # 16×16 pixels per cell

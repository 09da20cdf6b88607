"""The guards around the entropy coders and the container: rANS streams must end exactly where the declared
latent ends, coders take only finite in-range values, weights must be finite, headers stay within limits."""

from __future__ import annotations

import random

import pytest
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from ctrlic.codecs import bitstream
from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.entropy import rans
from ctrlic.codecs.finite import CodingRangeError, check_weights
from ctrlic.codecs.layout import read_layout
from ctrlic.codecs.tiling import PixelLimitError
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def gaussian() -> GaussianConditional:
    gc = GaussianConditional(None)
    gc.update_scale_table(torch.exp(torch.linspace(torch.log(torch.tensor(0.11)), torch.log(torch.tensor(256.)), 64)))
    return gc


def _stream(gc: GaussianConditional, n: int = 500, seed: int = 0) -> tuple[bytes, list[int]]:
    gen = torch.Generator().manual_seed(seed)
    scales = torch.rand(n, generator=gen) * 20 + 0.2
    symbols = torch.round(torch.randn(n, generator=gen) * scales)
    symbols[::97] = 300.0  # some far outside the tables: the bypass path
    indexes = gc.build_indexes(scales)
    return rans.encode([symbols], [indexes], rans.tables_of(gc), "y"), indexes.tolist()


def _decode(gc: GaussianConditional, data: bytes, indexes: list[int], symbols: int | None = None) -> list[int]:
    decoder = rans.StreamDecoder(data, len(indexes) if symbols is None else symbols, "y")
    values = decoder.decode(indexes, *rans.tables_of(gc))
    decoder.check_end()
    return values


def test_a_stream_decodes_and_ends_exactly(gaussian):
    data, indexes = _stream(gaussian)
    values = _decode(gaussian, data, indexes)
    assert values[::97] == [300] * len(values[::97])


@pytest.mark.parametrize("change", ["one symbol fewer", "one symbol more", "a word cut", "a word added",
                                    "a byte flipped", "random words"])
def test_a_stream_that_does_not_hold_the_declared_latent_is_refused(gaussian, change):
    data, indexes = _stream(gaussian)
    if change == "one symbol fewer":
        indexes = indexes[:-1]
    elif change == "one symbol more":
        indexes = [*indexes, indexes[-1]]
    elif change == "a word cut":
        data = data[:-4]
    elif change == "a word added":
        data += b"\x01\x02\x03\x04"
    elif change == "a byte flipped":
        data = data[:10] + bytes([data[10] ^ 0x40]) + data[11:]
    else:
        data = random.Random(0).randbytes(len(data))
    with pytest.raises(BitstreamError):
        _decode(gaussian, data, indexes)


def test_a_tiny_stream_read_for_many_symbols_stays_in_its_buffer(gaussian):
    """8 bytes declared to hold a million symbols: the decoder runs off the data into the guard's padding
    (CompressAI's decoder has no bounds check), and the end check refuses it."""
    indexes = [0] * 1_000_000
    with pytest.raises(BitstreamError):
        _decode(gaussian, b"\xff" * 8, indexes, symbols=len(indexes))


@pytest.mark.parametrize("size", [0, 4, 10])
def test_streams_that_cannot_be_rans_are_refused_before_decoding(size):
    with pytest.raises(BitstreamError, match="whole 32-bit words"):
        rans.check_stream(bytes(size), 100, "z")
    with pytest.raises(BitstreamError, match="whole 32-bit words"):
        rans.check_stream(bytes(4 * 1000), 10, "z")  # far longer than 10 symbols can take


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2.0 ** 21])
def test_non_finite_or_huge_symbols_never_reach_the_coder(gaussian, bad):
    symbols = torch.zeros(10)
    symbols[3] = bad
    with pytest.raises(CodingRangeError):
        rans.encode([symbols], [torch.zeros(10, dtype=torch.int32)], rans.tables_of(gaussian), "y")


def test_cdf_indexes_out_of_the_tables_are_refused(gaussian):
    with pytest.raises(CodingRangeError, match="outside"):
        rans.encode([torch.zeros(3)], [torch.tensor([0, 1, 64])], rans.tables_of(gaussian), "y")


def test_bottleneck_symbols_are_checked_before_compress():
    eb = EntropyBottleneck(4)
    eb.update(force=True)
    z = torch.zeros(1, 4, 2, 2)
    z[0, 1, 1, 1] = float("nan")
    with pytest.raises(CodingRangeError, match="latent z"):
        rans.compress_bottleneck(eb, z)


def _tiny_codec(name: str):
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    cfg = {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "backbone" / f"{name}.yaml")), "size": "tiny"}
    return build_codec(cfg)


def test_weights_must_be_finite_and_tables_bounded():
    codec = _tiny_codec("cheng2020_attn")
    check_weights(codec.backbone)
    with torch.no_grad():
        codec.backbone.g_s[-1][0].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(CodingRangeError, match=r"g_s\.\d+\.0\.weight"):
        codec.prepare()
    codec = _tiny_codec("cheng2020_attn")
    with torch.no_grad():
        codec.backbone.entropy_bottleneck.quantiles.mul_(1e6)
    with pytest.raises(CodingRangeError, match="spans"):
        codec.prepare()


def test_the_pixel_limit_bounds_encoder_and_decoder():
    codec = _tiny_codec("cheng2020_attn")
    x = torch.rand(1, 3, 64, 64)
    data = codec.compress(x)
    codec.set_options(max_pixels=64 * 63)
    with pytest.raises(PixelLimitError):
        codec.compress(x)
    with pytest.raises(BitstreamError, match="more than the limit"):
        codec.decompress(data)


@pytest.mark.parametrize(("extras", "match"), [
    ({"side": "1"}, "not an integer"), ({"side": 3}, "side sections"), ({"tile": [64]}, "tile size"),
    ({"tile": [64, 2.0]}, "not an integer"), ({"tile": [63, 2]}, "multiple of 64"), ({"tile": [64, 5]}, "expected"),
    ({"ep": ["cpu64"]}, "entropy path"), ({"new": 1}, "does not know"),
])
def test_header_extras_are_checked_for_type_and_arithmetic(extras, match):
    header = bitstream.Header(codec="x", config_hash=bytes(4), fingerprint=bytes(8), knobs={}, height=64,
                              width=128, extras=extras)
    with pytest.raises(BitstreamError, match=match):
        read_layout(header, 2, 64)


def test_a_valid_tiled_layout_is_read():
    header = bitstream.Header(codec="x", config_hash=bytes(4), fingerprint=bytes(8), knobs={}, height=64,
                              width=128, extras={"tile": [64, 2], "side": 1, "ep": "cpu64"})
    layout = read_layout(header, 5, 64)
    assert (layout.side, layout.tile, layout.per_tile, layout.entropy_path) == (1, 64, 2, "cpu64")
    assert layout.padding.spec == "replicate:64"  # none recorded: ours, to the backbone's multiple
    assert layout.scale_levels == 64  # none recorded: CompressAI's table

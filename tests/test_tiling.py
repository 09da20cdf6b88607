"""Tiling: large images coded in independent tiles, the grid recorded in the container, the decoder following it."""

from __future__ import annotations

import pytest
import torch

from ctrlic.codecs import bitstream
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.codec import TILE
from ctrlic.codecs.tiling import TilingError, tile_grid
from tests.conftest import tiny_stf_with_adapters


@pytest.fixture(scope="module")
def codec():
    torch.manual_seed(0)
    backbone_cfg, control_cfg = tiny_stf_with_adapters()
    codec = build_codec(backbone_cfg, control_cfg)
    codec.prepare()
    return codec


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(1, 3, 150, 200)


def compress_tiled(codec, image, tile: int, knobs=None) -> bytes:
    """Compress with tiles of ``tile`` pixels, leaving the codec untiled afterwards."""
    codec.set_options(tile=tile)
    try:
        return codec.compress(image, knobs)
    finally:
        codec.set_options(tile=None)


@pytest.mark.parametrize(("height", "width", "tile"), [(150, 200, 64), (64, 64, 64), (1, 1, 64), (130, 65, 128)])
def test_tile_grid_covers_every_pixel_once(height, width, tile):
    count = torch.zeros(height, width, dtype=torch.int32)
    for t in tile_grid(height, width, tile):
        assert 1 <= t.height <= tile and 1 <= t.width <= tile
        t.crop(count).add_(1)
    assert torch.equal(count, torch.ones_like(count))


def test_tiled_bitstream_records_grid_and_decodes_tile_by_tile(codec, image):
    data = compress_tiled(codec, image, 64, {"alpha": 0.3})
    header, sections = bitstream.unpack(data)
    assert header.extras[TILE] == [64, 2]
    assert len(sections) == 2 * len(tile_grid(150, 200, 64)) == 24
    x_hat = codec.decompress(data)  # the decoder follows the header, whatever its own tile setting
    assert x_hat.shape == image.shape
    # each tile is the same as coding that tile alone
    tile = tile_grid(150, 200, 64)[5]
    alone = codec.decompress(codec.compress(tile.crop(image), {"alpha": 0.3}))
    assert torch.equal(tile.crop(x_hat), alone)


def test_images_within_one_tile_are_not_tiled(codec, image):
    data = compress_tiled(codec, image, 256)
    assert TILE not in bitstream.read_header(data).extras
    assert data == codec.compress(image)


def test_tile_size_must_be_a_multiple_of_the_padding(codec):
    with pytest.raises(TilingError, match="multiple of 64"):
        codec.set_options(tile=100)


def test_tiled_bitstream_with_missing_tile_sections_is_refused(codec, image):
    data = compress_tiled(codec, image, 64)
    header, sections = bitstream.unpack(data)
    forged = bitstream.pack(header, sections[:-2])  # a valid container that lost its last tile
    with pytest.raises(bitstream.BitstreamError, match="expected 2 for each of 12 tiles"):
        codec.decompress(forged)

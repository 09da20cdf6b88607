"""Tiles for large images: each tile is coded on its own, so memory stays bounded by the tile size.

The grid is a pure function of (height, width, tile), so the container only records ``tile`` and the
number of sections each tile wrote; the decoder rebuilds the same grid and pastes the tiles back.
Whole images are bounded by a pixel limit, to code and to decode (what a header may declare).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from ctrlic.errors import UserError

#: most pixels of an image the codecs code or decode by default: 8192² (67 M; a 61 MP camera's photo
#: fits), about 0.8 GB as float RGB; a header may declare no more. ``CodingOptions.max_pixels`` / ``--max-pixels``.
DEFAULT_MAX_PIXELS = 1 << 26


class TilingError(UserError):
    """A tile size the codec cannot use; the message says which sizes work."""


class PixelLimitError(UserError):
    """An image larger than the configured pixel limit."""


def check_pixels(height: int, width: int, limit: int, what: str = "the image") -> None:
    """Refuse an image of more than ``limit`` pixels (the message says how to allow it)."""
    if height * width > limit:
        raise PixelLimitError(f"{what} is {width}x{height} = {height * width:,} pixels, more than the limit of "
                              f"{limit:,}; raise the limit (ctrlic --max-pixels N) if this machine has the memory")


@dataclass(frozen=True)
class Tile:
    """One rectangle of the image, in pixels of the original (unpadded) image."""

    top: int
    left: int
    height: int
    width: int

    def crop(self, x):
        """The tile's pixels of a (..., H, W) tensor."""
        return x[..., self.top : self.top + self.height, self.left : self.left + self.width]


def check_tile(tile: int, multiple: int) -> int:
    """Validate a tile size: a positive multiple of the backbone's padding multiple."""
    if not isinstance(tile, int) or tile < multiple or tile % multiple:
        raise TilingError(f"tile size {tile!r} must be a positive multiple of {multiple} pixels for this codec "
                          f"(e.g. {4 * multiple}); use --tile 0 to code the image whole")
    return tile


def needs_tiling(height: int, width: int, tile: int | None) -> bool:
    """True when a tile size is set and the image is larger than one tile."""
    return bool(tile) and (height > tile or width > tile)


def tile_grid(height: int, width: int, tile: int) -> list[Tile]:
    """Row-major tiles of at most ``tile``×``tile`` pixels covering the image; edge tiles are smaller."""
    if tile < 1:
        raise TilingError(f"tile size must be positive, got {tile}")
    return [Tile(top, left, min(tile, height - top), min(tile, width - left))
            for top in range(0, height, tile) for left in range(0, width, tile)]


def encode_tiles(encode: Callable[[Tensor], list[bytes]], x: Tensor, tile: int) -> tuple[list[bytes], int]:
    """Code each tile of ``x`` (1, 3, H, W) with ``encode``; returns (all sections, sections per tile)."""
    tiles = [encode(t.crop(x)) for t in tile_grid(*x.shape[-2:], tile)]
    return [s for sections in tiles for s in sections], len(tiles[0])


def decode_tiles(decode: Callable[[list[bytes], int, int], Tensor], sections: list[bytes], height: int,
                 width: int, tile: int, per_tile: int, out: Tensor) -> Tensor:
    """Fill ``out`` (1, 3, H, W) tile by tile; ``decode(sections, h, w)`` returns one tile's pixels.

    The section count was checked against the grid before anything was decoded (``layout.check_layout``).
    """
    for i, t in enumerate(tile_grid(height, width, tile)):
        t.crop(out)[...] = decode(sections[i * per_tile : (i + 1) * per_tile], t.height, t.width)
    return out

"""What a bitstream may declare, checked against what it holds before anything is decoded or allocated.

The container's CRC only says the bytes arrived as written; a crafted or damaged file can still declare
any image size, tile grid or side-section count. ``check_layout`` refuses every header field the codec's
own arithmetic does not allow — a size above the pixel limit, extras of the wrong type, a tile grid or
section count that does not add up — and asks the backbone whether each tile's sections can hold the
latent of that tile (``Backbone.check_sections``). Larger images are coded in tiles, each within the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ctrlic.codecs import bitstream
from ctrlic.codecs import padding as pad
from ctrlic.codecs.bitstream import BitstreamError, Header
from ctrlic.codecs.entropy import robust, scale_table, tables
from ctrlic.codecs.tiling import PixelLimitError, TilingError, check_pixels, check_tile, tile_grid

if TYPE_CHECKING:
    from ctrlic.codecs.codec import Codec

#: the header extras a codec writes: side-section count, [tile, sections per tile], entropy path,
#: padding (when not ours), the digest of the checkpoint's own entropy tables (when coded with them),
#: the Gaussian scale-table size (when not CompressAI's 64)
SIDE, TILE = "side", "tile"
KNOWN_EXTRAS = (SIDE, TILE, robust.EXTRAS_KEY, pad.EXTRAS_KEY, tables.EXTRAS_KEY, scale_table.EXTRAS_KEY)


@dataclass(frozen=True)
class Layout:
    """How the sections of a checked bitstream are laid out."""

    side: int
    tile: int | None
    per_tile: int
    entropy_path: str
    padding: pad.Padding
    scale_levels: int


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BitstreamError(f"header field {what} is {value!r}, not an integer: the file is corrupted")
    return value


def read_padding(header: Header, backbone_multiple: int) -> pad.Padding:
    """The padding the header records (absent: ours), checked for this backbone (multiple at most
    ``padding.MAX_MULTIPLE``, so the padded image stays bounded)."""
    spec = header.extras.get(pad.EXTRAS_KEY)
    if spec is not None and not isinstance(spec, str):
        raise BitstreamError(f"the bitstream asks for padding {spec!r}, which is not a padding: the file is corrupted")
    try:
        return pad.Padding.parse(spec).resolved(backbone_multiple)
    except pad.PaddingError as exc:
        raise BitstreamError(f"the bitstream asks for padding {spec!r}: {exc}") from None


def read_layout(header: Header, n_sections: int, multiple: int) -> Layout:
    """Parse and check the extras a codec wrote: types, ranges, and the section count they imply."""
    extras = header.extras
    unknown = sorted(set(extras) - set(KNOWN_EXTRAS))
    if unknown:
        raise BitstreamError(f"the header has fields this ctrlic does not know ({', '.join(unknown)}): the file "
                             "was written by a newer ctrlic or is corrupted")
    side = _int(extras.get(SIDE, 0), SIDE)
    if not 0 <= side <= n_sections:
        raise BitstreamError(f"the header declares {side} side sections, the file has {n_sections} sections")
    path = extras.get(robust.EXTRAS_KEY, "native")
    if path not in robust.ENTROPY_PATHS:
        raise BitstreamError(f"the header asks for entropy path {path!r}; this ctrlic knows "
                             f"{', '.join(robust.ENTROPY_PATHS)}")
    padding = read_padding(header, multiple)
    levels = _int(extras.get(scale_table.EXTRAS_KEY, scale_table.LEVELS), "scale-table size")
    images = n_sections - side
    if TILE not in extras:
        return Layout(side, None, images, path, padding, levels)
    value = extras[TILE]
    if not isinstance(value, list) or len(value) != 2:
        raise BitstreamError(f"header field {TILE} is {value!r}, not [tile size, sections per tile]")
    tile, per_tile = _int(value[0], "tile size"), _int(value[1], "sections per tile")
    try:
        check_tile(tile, padding.multiple)
    except TilingError as exc:
        raise BitstreamError(f"the header's {exc}") from None
    tiles = math.ceil(header.height / tile) * math.ceil(header.width / tile)  # before any grid is built
    if per_tile < 1 or per_tile * tiles != images:
        raise BitstreamError(f"tiled bitstream has {images} image sections, expected {per_tile} for each of "
                             f"{tiles} tiles; the file is corrupted")
    return Layout(side, tile, per_tile, path, padding, levels)


def check_layout(codec: Codec, header: Header, sections: list[bytes]) -> Layout:
    """Everything ``Codec.decompress`` will rely on, checked before it decodes or allocates anything."""
    try:
        check_pixels(header.height, header.width, codec.options.max_pixels, "the declared image")
    except PixelLimitError as exc:
        raise BitstreamError(str(exc)) from None
    if header.channels != 3:
        raise BitstreamError(f"the header declares {header.channels} channels; ctrlic codes RGB (3)")
    layout = read_layout(header, len(sections), codec.backbone.pad_multiple)
    try:
        scale_table.check_levels(layout.scale_levels, codec.backbone)
    except scale_table.ScaleTableError as exc:
        raise BitstreamError(f"the bitstream asks for a {layout.scale_levels}-scale table: {exc}") from None
    m = layout.padding.multiple
    images = sections[layout.side:]
    if layout.tile is None:
        codec.backbone.check_sections(images, _padded(header.height, m), _padded(header.width, m))
        return layout
    for i, t in enumerate(tile_grid(header.height, header.width, layout.tile)):
        part = images[i * layout.per_tile : (i + 1) * layout.per_tile]
        codec.backbone.check_sections(part, _padded(t.height, m), _padded(t.width, m))
    return layout


def check_decoded(x_hat: Tensor) -> Tensor:
    """Refuse a decoded image with NaN or infinite pixels (damaged weights or a file decoded into garbage)."""
    if not bool(torch.isfinite(x_hat).all()):
        raise BitstreamError("the decoded image holds NaN or infinite values: the file or the model is damaged")
    return x_hat


def _padded(size: int, multiple: int) -> int:
    return size + (-size) % multiple


def check_bitstream(codec: Codec, header: Header, sections: list[bytes]) -> Layout:
    """Everything ``codec.decompress`` checks before decoding a parsed bitstream: its origin and layout."""
    bitstream.check_origin(header, expect_codec=codec.name, expect_config_hash=codec.config_hash,
                           expect_fingerprint=codec.fingerprint)
    return check_layout(codec, header, sections)

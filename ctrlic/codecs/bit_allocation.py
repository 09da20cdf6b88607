"""Where a codec spends its bits on one image: a real ``compress`` under a bit-map recorder.

The map comes from the coder's own probabilities (see ``codecs/entropy/bit_map.py``); the bitstream
it returns is the one the recorded coding wrote, so map and file describe the same coding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from ctrlic.codecs import bitstream
from ctrlic.codecs.codec import SIDE, Codec
from ctrlic.codecs.entropy import bit_map
from ctrlic.codecs.tiling import needs_tiling
from ctrlic.errors import UserError


@dataclass
class BitAllocation:
    """Bits per pixel of one coded image, with the sizes to check them against."""

    data: bytes  # the bitstream
    bits: np.ndarray  # (H, W) bits per pixel of the image sections, cropped to the image
    bits_outside: float  # bits the map puts on the padding beyond the image (right/bottom)
    streams: dict[str, float]  # bits per coded stream (y, z, x, indices_4, ...)
    cell: int  # side in pixels of the finest stream's cells (16 for y of the Gaussian backbones)
    padded_size: tuple[int, int]  # (H, W) the backbone coded: the image padded to ``pad_multiple``
    payload_bits: int  # 8 × the bytes of all sections (no container header)
    side_bits: int  # 8 × the bytes of the control scheme's side-information sections
    overlays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    notes: dict[str, float] = field(default_factory=dict)

    @property
    def map_bits(self) -> float:
        """All bits of the map, padding included: compare with ``payload_bits − side_bits``."""
        return float(self.bits.sum()) + self.bits_outside


class BitMapUnavailable(UserError):
    """This image cannot get a map (it is coded in tiles), or the backbone records no bits."""


def bit_allocation(codec: Codec, x: Tensor, knobs: Mapping[str, float] | None = None) -> BitAllocation:
    """Compress ``x`` (1, 3, H, W) at ``knobs`` while recording the code length of every symbol."""
    h, w = x.shape[-2:]
    tile = codec.options.tile
    if needs_tiling(h, w, tile):
        raise BitMapUnavailable(f"a {w}x{h} image is coded in {tile}-pixel tiles; bit maps cover whole images")
    m = codec.backbone.pad_multiple
    with bit_map.recording(h + (-h) % m, w + (-w) % m) as recorder:
        data = codec.compress(x, knobs)
    if not recorder.streams:
        raise BitMapUnavailable(f"backbone {type(codec.backbone).__name__} records no bits (no bit_map hooks)")
    header, sections = bitstream.unpack(data)
    n_side = int(header.extras.get(SIDE, 0))
    full = recorder.bits_map()
    return BitAllocation(
        data=data,
        bits=full[:h, :w].copy(),
        bits_outside=float(full.sum() - full[:h, :w].sum()),
        streams=recorder.stream_bits(),
        cell=min(recorder.height // g.shape[0] for g in recorder.streams.values()),
        padded_size=(recorder.height, recorder.width),
        payload_bits=8 * sum(len(s) for s in sections),
        side_bits=8 * sum(len(s) for s in sections[:n_side]),
        overlays=recorder.overlays,
        notes=recorder.notes,
    )

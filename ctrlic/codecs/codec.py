"""The byte-level codec: backbone + control scheme + the one container format."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs import bitstream
from ctrlic.codecs.backbones.base import Backbone
from ctrlic.codecs.control.base import ControlScheme, FixedRate
from ctrlic.codecs.entropy import robust, scale_table
from ctrlic.codecs.tiling import check_tile, decode_tiles, encode_tiles, needs_tiling

#: entropy-model tables rebuilt by ``update()``; excluded from the weights fingerprint
CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")
#: header extras key: how many leading sections are the control scheme's side information
SIDE = "side"
#: header extras key: [tile size, sections per tile] of a tiled bitstream
TILE = "tile"


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad right and bottom to a multiple (cheaper in bits than zeros)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


@dataclass(frozen=True)
class CodingOptions:
    """How ``compress`` codes (the decoder reads what it needs from the header)."""

    tile: int | None = None  # code images larger than this many pixels per side in independent tiles
    entropy_path: str = "native"  # where encoding computes means and scales: "native" or "cpu64"
    scale_levels: int = scale_table.LEVELS  # Gaussian scale-table size (64: CompressAI's; finer costs fewer bits)

    def checked(self, backbone: Backbone) -> CodingOptions:
        """These options, validated for ``backbone``."""
        robust.check_path(self.entropy_path, backbone.robust_entropy)
        scale_table.check_levels(self.scale_levels, backbone)
        return replace(self, tile=check_tile(self.tile, backbone.pad_multiple) if self.tile else None)


class Encoded(bytes):
    """A bitstream (``bytes``) that also says which knob values ``compress`` applied (``.knobs``)."""

    knobs: dict[str, float]

    def __new__(cls, data: bytes, knobs: Mapping[str, float]) -> Encoded:
        encoded = super().__new__(cls, data)
        encoded.knobs = dict(knobs)
        return encoded


class Codec(nn.Module):
    """``forward`` for training; ``compress(x) -> bytes`` and ``decompress(bytes)`` for real coding."""

    def __init__(self, backbone: Backbone, control: ControlScheme | None = None, *, name: str,
                 arch: Mapping | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.control = control or FixedRate()
        self.control.attach(backbone)
        self.name = name
        self.arch = dict(arch or {})
        self._fingerprint: bytes | None = None
        self.options = CodingOptions()

    def set_options(self, **changes: object) -> CodingOptions:
        """Change coding options (``tile``, ``entropy_path``, ``scale_levels``), validated for this backbone."""
        self.options = replace(self.options, **changes).checked(self.backbone)
        return self.options

    @property
    def knobs(self):
        return self.control.knobs

    @property
    def lossless(self) -> bool:
        """True for codecs whose decoded image equals the input exactly (no rate knob to search)."""
        return self.backbone.lossless

    @property
    def config_hash(self) -> bytes:
        return bitstream.config_hash(self.arch)

    def forward(self, x: Tensor) -> dict:
        return self.backbone(x)

    def set_knobs(self, values: Mapping[str, float] | None = None) -> dict[str, float]:
        """Validate, fill defaults and apply knob values; returns what was applied."""
        resolved = self.control.resolve(values)
        self.control.apply(resolved)
        return resolved

    def train(self, mode: bool = True) -> Codec:
        if mode:
            self._fingerprint = None  # weights will change: tables and fingerprint go stale
        return super().train(mode)

    def prepare(self) -> None:
        """Build the CDF tables and fingerprint the learned weights; done once before a batch of coding."""
        self.eval()
        self.backbone.update(force=True)
        state = {k: v for k, v in self.backbone.state_dict().items() if not k.endswith(CDF_BUFFERS)}
        self._fingerprint = bitstream.weights_fingerprint(state)

    @property
    def fingerprint(self) -> bytes:
        if self._fingerprint is None:
            self.prepare()
        return self._fingerprint

    @torch.no_grad()
    def compress(self, x: Tensor, knobs: Mapping[str, float] | None = None) -> Encoded:
        """Code one image (3, H, W) or (1, 3, H, W) in [0, 1] into a self-describing bitstream."""
        fingerprint = self.fingerprint
        if x.dim() == 3:
            x = x[None]
        if x.dim() != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"compress takes one RGB image (3, H, W), got shape {tuple(x.shape)}")
        values = self.set_knobs(knobs)
        h, w = x.shape[-2:]
        m, tile, path = self.backbone.pad_multiple, self.options.tile, self.options.entropy_path
        levels = self.options.scale_levels
        x = x.to(next(self.backbone.parameters()).device)
        extras = {}
        side = self.control.encode_side(pad_to_multiple(x, m), values)
        try:
            with robust.entropy_path(self.backbone, path), scale_table.levels_of(self.backbone, levels):
                if needs_tiling(h, w, tile):
                    sections, per_tile = encode_tiles(lambda t: self.backbone.encode(pad_to_multiple(t, m)), x, tile)
                    extras[TILE] = [tile, per_tile]
                else:
                    sections = self.backbone.encode(pad_to_multiple(x, m))
        finally:
            self.control.release()
        if side:
            extras[SIDE] = len(side)
        if path != "native":
            extras[robust.EXTRAS_KEY] = path
        if levels != scale_table.LEVELS:
            extras[scale_table.EXTRAS_KEY] = levels
        header = bitstream.Header(codec=self.name, config_hash=self.config_hash, fingerprint=fingerprint,
                                  knobs=values, height=h, width=w, extras=extras)
        return Encoded(bitstream.pack(header, [*side, *sections]), values)

    @torch.no_grad()
    def decompress(self, data: bytes | tuple[bitstream.Header, list[bytes]]) -> Tensor:
        """Decode a bitstream (bytes, or ``bitstream.parse``'s result) written by this codec with these
        weights; returns (1, 3, H, W)."""
        header, sections = bitstream.parse(data) if isinstance(data, bytes | bytearray) else data
        bitstream.check_origin(header, expect_codec=self.name, expect_config_hash=self.config_hash,
                               expect_fingerprint=self.fingerprint)
        values = self.set_knobs(header.knobs)
        n_side = int(header.extras.get(SIDE, 0))
        path = str(header.extras.get(robust.EXTRAS_KEY, "native"))
        try:
            robust.check_path(path, self.backbone.robust_entropy)
        except robust.EntropyPathError as exc:
            raise bitstream.BitstreamError(f"the bitstream asks for entropy path {path!r}: {exc}") from None
        levels = header.extras.get(scale_table.EXTRAS_KEY, scale_table.LEVELS)
        try:
            if type(levels) is not int:
                raise scale_table.ScaleTableError("the size is not a whole number")
            scale_table.check_levels(levels, self.backbone)
        except scale_table.ScaleTableError as exc:
            raise bitstream.BitstreamError(f"the bitstream asks for a {levels!r}-scale table: {exc}") from None
        self.control.decode_side(sections[:n_side], values)
        try:
            with robust.entropy_path(self.backbone, path), scale_table.levels_of(self.backbone, levels):
                return self._decode_image(sections[n_side:], header)
        finally:
            self.control.release()

    def _decode_image(self, sections: list[bytes], header: bitstream.Header) -> Tensor:
        """Decode the image sections, whole or tile by tile as the header says."""
        h, w, m = header.height, header.width, self.backbone.pad_multiple

        def decode(part: list[bytes], th: int, tw: int) -> Tensor:
            return self.backbone.decode(part, th + (-th) % m, tw + (-tw) % m)[..., :th, :tw]

        if TILE not in header.extras:
            return decode(sections, h, w)
        tile, per_tile = (int(v) for v in header.extras[TILE])
        out = torch.empty(1, 3, h, w, device=next(self.backbone.parameters()).device)
        return decode_tiles(decode, sections, h, w, tile, per_tile, out)

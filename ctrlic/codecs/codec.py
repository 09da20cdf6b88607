"""The byte-level codec: backbone + control scheme + the one container format."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs import bitstream
from ctrlic.codecs.backbones.base import Backbone
from ctrlic.codecs.control.base import ControlScheme, FixedRate
from ctrlic.codecs.entropy import robust, scale_table, tables
from ctrlic.codecs.finite import check_weights
from ctrlic.codecs.layout import SIDE, TILE, Layout, check_bitstream, check_decoded
from ctrlic.codecs.padding import EXTRAS_KEY as PAD
from ctrlic.codecs.padding import Padding
from ctrlic.codecs.tiling import (
    DEFAULT_MAX_PIXELS,
    check_pixels,
    check_tile,
    decode_tiles,
    encode_tiles,
    needs_tiling,
)

log = logging.getLogger("ctrlic")


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad right and bottom to a multiple (cheaper in bits than zeros): training and validation."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


@dataclass(frozen=True)
class CodingOptions:
    """How ``compress`` codes (the decoder reads what it needs from the header)."""

    tile: int | None = None  # code images larger than this many pixels per side in independent tiles
    entropy_path: str = "native"  # where encoding computes means and scales: "native" or "cpu64"
    max_pixels: int = DEFAULT_MAX_PIXELS  # most pixels of an image to code or decode (a header may declare no more)
    #: entropy tables the encoder codes with: "checkpoint" (the checkpoint's own when complete and built
    #: from these weights, else rebuilt) or "rebuild" (always this CompressAI's); the decoder follows the header
    tables: str = "checkpoint"
    #: where and how images are padded before coding (``codecs/padding.py``; text such as "centre-zero:128")
    padding: Padding | str | None = None
    scale_levels: int = scale_table.LEVELS  # Gaussian scale-table size (64: CompressAI's; finer costs fewer bits)

    def plain(self) -> dict:
        """These options as plain data (JSON-able; ``Codec.set_options(**plain)`` takes them back)."""
        padding = None if self.padding is None else Padding.parse(self.padding).spec
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "padding": padding}

    def checked(self, backbone: Backbone) -> CodingOptions:
        """These options, validated for ``backbone`` (the padding parsed, its multiple resolved)."""
        robust.check_path(self.entropy_path, backbone.robust_entropy)
        tables.check_choice(self.tables)
        scale_table.check_levels(self.scale_levels, backbone)
        padding = Padding.parse(self.padding).resolved(backbone.pad_multiple)
        return replace(self, tile=check_tile(self.tile, padding.multiple) if self.tile else None, padding=padding)


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
        self._tables: tables.EntropyTables | None = None
        self._stored_installed = False  # which set the entropy models hold: the checkpoint's or the rebuilt
        # the tables held now came with these entropy-model weights (a checkpoint's), until shown otherwise
        self._held, self._held_source = tables.snapshot(backbone), tables.source_digest(backbone)
        self._discard_tables = False
        self.options = CodingOptions().checked(backbone)

    def set_options(self, **changes: object) -> CodingOptions:
        """Change coding options (``tile``, ``entropy_path``, ``tables``, ``padding``, ``scale_levels``), validated
        for this backbone; returns them."""
        self.options = replace(self.options, **changes).checked(self.backbone)
        return self.options

    def pad(self, x: Tensor) -> Tensor:
        """``x`` padded as ``compress`` pads it (``options.padding``)."""
        return self.options.padding.pad(x)

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
        """Build the CDF tables and fingerprint the learned weights; done once before a batch of coding.

        Tables the checkpoint brought are kept beside the rebuilt ones when they are complete and built
        from these weights (``entropy/tables.py``); once the entropy models train, only rebuilt ones remain.
        """
        self.eval()
        check_weights(self.backbone)
        current, source = tables.snapshot(self.backbone), tables.source_digest(self.backbone)
        if self._discard_tables:
            candidate = None
        elif self._loaded_since(current):
            candidate = current  # loaded with their weights since the last prepare (or construction)
        elif source != self._held_source:
            candidate = None  # the entropy models trained since: the checkpoint's tables are stale
        else:
            candidate = self._tables.stored if self._tables is not None else current
        self._tables = tables.build(self.backbone, candidate)
        self._stored_installed, self._held_source, self._discard_tables = False, source, False
        self._use_tables(self.options.tables == "checkpoint" and self._tables.stored is not None)
        if self._tables.note:
            log.info("%s: %s", self.name, self._tables.note)
        state = {k: v for k, v in self.backbone.state_dict().items() if not k.endswith(tables.TABLE_BUFFERS)}
        self._fingerprint = bitstream.weights_fingerprint(state)

    @property
    def fingerprint(self) -> bytes:
        if self._fingerprint is None:
            self.prepare()
        return self._fingerprint

    @property
    def entropy_tables(self) -> str:
        """Which tables ``compress`` codes with: ``checkpoint <digest>`` or ``rebuilt``."""
        if self._tables is None:
            self.prepare()
        if self.options.tables == "checkpoint" and self._tables.stored is not None:
            return f"checkpoint {self._tables.stored_digest}"
        return "rebuilt"

    @property
    def tables_fit(self) -> bool:
        """Whether the tables the entropy models hold now were built for, or came with, their current
        weights (recorded in training checkpoints: a checkpoint saved while they trained has stale ones)."""
        if self._discard_tables:
            return False
        return (self._loaded_since(tables.snapshot(self.backbone))
                or tables.source_digest(self.backbone) == self._held_source)

    def discard_checkpoint_tables(self) -> None:
        """The tables held now are stale (saved while the entropy models trained): the next ``prepare``
        rebuilds them whatever they look like."""
        self._discard_tables = True
        self._fingerprint = None

    def _loaded_since(self, current: tables.Tables) -> bool:
        """True when ``current`` is none of the sets this codec built or started with (new weights were loaded)."""
        known = [self._tables.built, self._tables.stored] if self._tables is not None else [self._held]
        return not any(k is not None and tables.equal(current, k) for k in known)

    def _use_tables(self, stored: bool) -> None:
        """Install the checkpoint's tables (``stored``) or the rebuilt ones, if not already installed."""
        if stored != self._stored_installed:
            tables.install(self.backbone, self._tables.stored if stored else self._tables.built)
            self._stored_installed = stored

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
        check_pixels(h, w, self.options.max_pixels)
        padding, tile, path = self.options.padding, self.options.tile, self.options.entropy_path
        levels = self.options.scale_levels
        x = x.to(next(self.backbone.parameters()).device)
        extras = {}
        if not padding.is_ours(self.backbone.pad_multiple):
            extras[PAD] = padding.spec
        keep = self.options.tables == "checkpoint" and self._tables.stored is not None
        self._use_tables(keep)
        if keep:
            extras[tables.EXTRAS_KEY] = self._tables.stored_digest
        side = self.control.encode_side(padding.pad(x), values)
        try:
            with robust.entropy_path(self.backbone, path), scale_table.levels_of(self.backbone, levels):
                if needs_tiling(h, w, tile):
                    sections, per_tile = encode_tiles(lambda t: self.backbone.encode(padding.pad(t)), x, tile)
                    extras[TILE] = [tile, per_tile]
                else:
                    sections = self.backbone.encode(padding.pad(x))
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
        layout = check_bitstream(self, header, sections)
        values = self.set_knobs(header.knobs)
        path = layout.entropy_path
        try:
            robust.check_path(path, self.backbone.robust_entropy)
        except robust.EntropyPathError as exc:
            raise bitstream.BitstreamError(f"the bitstream asks for entropy path {path!r}: {exc}") from None
        self._use_tables(self._tables_for(header))
        self.control.decode_side(sections[:layout.side], values)
        try:
            with robust.entropy_path(self.backbone, path), scale_table.levels_of(self.backbone, layout.scale_levels):
                return check_decoded(self._decode_image(sections[layout.side:], header, layout))
        finally:
            self.control.release()

    def _tables_for(self, header: bitstream.Header) -> bool:
        """Whether the bitstream was coded with the checkpoint's own tables, which this codec must hold."""
        want = header.extras.get(tables.EXTRAS_KEY)
        if want is None:
            return False
        if want != self._tables.stored_digest:
            holds = (f"its checkpoint's tables are {self._tables.stored_digest}" if self._tables.stored is not None
                     else "it holds only tables rebuilt from the weights")
            raise bitstream.BitstreamError(
                f"coded with the entropy tables of its checkpoint (digest {want}), which this model does not "
                f"hold ({holds}); decode it with the checkpoint file that coded it")
        return True

    def _decode_image(self, sections: list[bytes], header: bitstream.Header, layout: Layout) -> Tensor:
        """Decode the image sections, whole or tile by tile as the checked layout says, and crop the padding."""
        h, w, padding = header.height, header.width, layout.padding

        def decode(part: list[bytes], th: int, tw: int) -> Tensor:
            return padding.crop(self.backbone.decode(part, *padding.padded_size(th, tw)), th, tw)

        if layout.tile is None:
            return decode(sections, h, w)
        out = torch.empty(1, 3, h, w, device=next(self.backbone.parameters()).device)
        return decode_tiles(decode, sections, h, w, layout.tile, layout.per_tile, out)

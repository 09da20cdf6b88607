"""The byte-level codec: backbone + control scheme + the one container format."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs import bitstream
from ctrlic.codecs.backbones.base import Backbone
from ctrlic.codecs.control.base import ControlScheme, FixedRate
from ctrlic.codecs.entropy import robust
from ctrlic.codecs.finite import check_weights
from ctrlic.codecs.layout import SIDE, TILE, check_decoded, check_layout
from ctrlic.codecs.tiling import DEFAULT_MAX_PIXELS, check_pixels, check_tile, needs_tiling, tile_grid

#: entropy-model tables rebuilt by ``update()``; excluded from the weights fingerprint
CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad right and bottom to a multiple (cheaper in bits than zeros)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


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
        #: code images larger than this many pixels per side in independent tiles (None: whole)
        self.tile: int | None = None
        #: entropy-parameter path for encoding ("native" or "cpu64"); decoding follows the header
        self.entropy_path = "native"
        #: most pixels of an image to code or decode (a header may declare no more)
        self.max_pixels = DEFAULT_MAX_PIXELS

    @property
    def robust_entropy_supported(self) -> bool:
        """True when the backbone can compute its entropy parameters on the CPU in float64."""
        return hasattr(self.backbone, "parameter_modules")

    def set_tile(self, tile: int | None) -> None:
        """Tile images larger than ``tile`` pixels per side (a multiple of ``pad_multiple``); None/0: never."""
        self.tile = check_tile(tile, self.backbone.pad_multiple) if tile else None

    def set_entropy_path(self, path: str) -> None:
        """Choose where encoding computes means and scales: "native" or the device-robust "cpu64"."""
        self.entropy_path = robust.check_path(path, self.robust_entropy_supported)

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
        """Build the CDF tables and fingerprint the weights; done once before a batch of coding."""
        self.eval()
        check_weights(self.backbone)
        self.backbone.update(force=True)
        self._fingerprint = self.weights_fingerprint()

    def weights_fingerprint(self) -> bytes:
        state = {k: v for k, v in self.backbone.state_dict().items() if not k.endswith(CDF_BUFFERS)}
        return bitstream.weights_fingerprint(state)

    @property
    def fingerprint(self) -> bytes:
        if self._fingerprint is None:
            self.prepare()
        return self._fingerprint

    @torch.no_grad()
    def compress(self, x: Tensor, knobs: Mapping[str, float] | None = None) -> bytes:
        """Code one image (3, H, W) or (1, 3, H, W) in [0, 1] into a self-describing bitstream."""
        fingerprint = self.fingerprint
        if x.dim() == 3:
            x = x[None]
        if x.dim() != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"compress takes one RGB image (3, H, W), got shape {tuple(x.shape)}")
        values = self.set_knobs(knobs)
        h, w = x.shape[-2:]
        check_pixels(h, w, self.max_pixels)
        device = next(self.backbone.parameters()).device
        m = self.backbone.pad_multiple
        x = x.to(device)
        extras = {}
        side = self.control.encode_side(self.backbone, pad_to_multiple(x, m), values)
        try:
            with self._entropy_path(self.entropy_path):
                if needs_tiling(h, w, self.tile):
                    tiles = [self.backbone.encode(pad_to_multiple(t.crop(x), m)) for t in tile_grid(h, w, self.tile)]
                    extras[TILE] = [self.tile, len(tiles[0])]
                    sections = [s for tile in tiles for s in tile]
                else:
                    sections = self.backbone.encode(pad_to_multiple(x, m))
        finally:
            self.control.release(self.backbone)
        if side:
            extras[SIDE] = len(side)
        if self.entropy_path != "native":
            extras[robust.EXTRAS_KEY] = self.entropy_path
        header = bitstream.Header(codec=self.name, config_hash=self.config_hash, fingerprint=fingerprint,
                                  knobs=values, height=h, width=w, extras=extras)
        return bitstream.pack(header, [*side, *sections])

    def _entropy_path(self, path: str) -> contextlib.AbstractContextManager:
        """Context: the backbone computes its entropy parameters on ``path`` inside the block."""
        robust.check_path(path, self.robust_entropy_supported)
        if not self.robust_entropy_supported:
            return contextlib.nullcontext()
        return _attribute(self.backbone, "entropy_path", path)

    @torch.no_grad()
    def decompress(self, data: bytes) -> Tensor:
        """Decode a bitstream written by this codec with these weights; returns (1, 3, H, W)."""
        header, sections = bitstream.unpack(data, expect_codec=self.name,
                                            expect_config_hash=self.config_hash,
                                            expect_fingerprint=self.fingerprint)
        check_layout(self, header, sections)
        values = self.set_knobs(header.knobs)
        n_side = int(header.extras.get(SIDE, 0))
        path = str(header.extras.get(robust.EXTRAS_KEY, "native"))
        try:
            robust.check_path(path, self.robust_entropy_supported)
        except robust.EntropyPathError as exc:
            raise bitstream.BitstreamError(f"the bitstream asks for entropy path {path!r}: {exc}") from None
        self.control.decode_side(self.backbone, sections[:n_side], values)
        try:
            with self._entropy_path(path):
                return check_decoded(self._decode_image(sections[n_side:], header))
        finally:
            self.control.release(self.backbone)

    def _decode_image(self, sections: list[bytes], header: bitstream.Header) -> Tensor:
        """Decode the image sections, whole or tile by tile as the header says."""
        h, w, m = header.height, header.width, self.backbone.pad_multiple
        if TILE not in header.extras:
            return self.backbone.decode(sections, h + (-h) % m, w + (-w) % m)[..., :h, :w]
        tile, per_tile = (int(v) for v in header.extras[TILE])
        grid = tile_grid(h, w, tile)
        if per_tile < 1 or len(sections) != per_tile * len(grid):
            raise bitstream.BitstreamError(f"tiled bitstream has {len(sections)} image sections, expected "
                                           f"{per_tile} for each of {len(grid)} tiles; the file is corrupted")
        out = torch.empty(1, 3, h, w, device=next(self.backbone.parameters()).device)
        for i, t in enumerate(grid):
            part = sections[i * per_tile : (i + 1) * per_tile]
            th, tw = t.height + (-t.height) % m, t.width + (-t.width) % m
            t.crop(out)[...] = self.backbone.decode(part, th, tw)[..., : t.height, : t.width]
        return out


@contextlib.contextmanager
def _attribute(obj: object, name: str, value: object) -> Iterator[None]:
    """Set ``obj.name = value`` for the duration of the block."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)

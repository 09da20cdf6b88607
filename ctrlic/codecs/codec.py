"""The byte-level codec: backbone + control scheme + the one container format."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctrlic.codecs import bitstream
from ctrlic.codecs.backbones.base import Backbone
from ctrlic.codecs.control.base import ControlScheme, FixedRate

#: entropy-model tables rebuilt by ``update()``; excluded from the weights fingerprint
CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")
#: header extras key: how many leading sections are the control scheme's side information
SIDE = "side"


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
        device = next(self.backbone.parameters()).device
        x = pad_to_multiple(x.to(device), self.backbone.pad_multiple)
        side = self.control.encode_side(self.backbone, x, values)
        try:
            sections = self.backbone.encode(x)
        finally:
            self.control.release(self.backbone)
        header = bitstream.Header(codec=self.name, config_hash=self.config_hash, fingerprint=fingerprint,
                                  knobs=values, height=h, width=w, extras={SIDE: len(side)} if side else {})
        return bitstream.pack(header, [*side, *sections])

    @torch.no_grad()
    def decompress(self, data: bytes) -> Tensor:
        """Decode a bitstream written by this codec with these weights; returns (1, 3, H, W)."""
        header, sections = bitstream.unpack(data, expect_codec=self.name,
                                            expect_config_hash=self.config_hash,
                                            expect_fingerprint=self.fingerprint)
        values = self.set_knobs(header.knobs)
        m = self.backbone.pad_multiple
        ph, pw = header.height + (-header.height) % m, header.width + (-header.width) % m
        n_side = int(header.extras.get(SIDE, 0))
        self.control.decode_side(self.backbone, sections[:n_side], values)
        try:
            x_hat = self.backbone.decode(sections[n_side:], ph, pw)
        finally:
            self.control.release(self.backbone)
        return x_hat[..., : header.height, : header.width]

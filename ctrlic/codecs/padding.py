"""How an image is padded to a multiple of the backbone's downsampling before coding, and cropped after.

Ours by default: right and bottom, replicating the border (cheaper in bits than zeros), to the
backbone's ``pad_multiple``. The authors' evaluation scripts pad centred with zeros, some to a larger
multiple than their network needs (``docs/fidelity.md``); a ``Padding`` names any of these. As text
(config, command line, header): ``[centre-]{replicate|zero}[:MULTIPLE]``, e.g. ``replicate`` (ours),
``centre-zero:128`` (CALICE's ``eval_continuous.py``). The container records it unless it is ours.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch.nn.functional as F
from torch import Tensor

from ctrlic.errors import UserError

FILLS = ("replicate", "zero")
CENTRE = "centre"
#: container extras key of a padding other than ours (absent: right/bottom replicate to pad_multiple)
EXTRAS_KEY = "pad"
#: the largest multiple accepted (a decoder allocates the padded image; 1024 covers every protocol)
MAX_MULTIPLE = 1024


class PaddingError(UserError):
    """A padding that cannot be parsed or does not suit the backbone; the message shows the form."""


@dataclass(frozen=True)
class Padding:
    """Where the padding goes (``centre`` or right/bottom), what fills it, to which multiple."""

    centre: bool = False
    fill: str = "replicate"  # "replicate" or "zero"
    multiple: int | None = None  # None: the backbone's pad_multiple

    @classmethod
    def parse(cls, spec: str | Padding | None) -> Padding:
        """A ``Padding`` from its text form ``[centre-]{replicate|zero}[:MULTIPLE]`` (None: ours)."""
        if spec is None or isinstance(spec, Padding):
            return spec or cls()
        text = str(spec).strip().lower()
        body, _, multiple = text.partition(":")
        centre = body.startswith((f"{CENTRE}-", "center-"))
        fill = body.split("-", 1)[1] if centre else body
        if fill not in FILLS or (multiple and not multiple.isdigit()):
            raise PaddingError(f"padding {spec!r}: write [centre-]{{replicate|zero}}[:MULTIPLE], e.g. replicate "
                               "(ours), centre-zero:128 (the authors' evaluation scripts)")
        return cls(centre, fill, int(multiple) if multiple else None)

    @property
    def spec(self) -> str:
        """The text form (``parse(p.spec) == p``)."""
        return f"{CENTRE + '-' if self.centre else ''}{self.fill}{f':{self.multiple}' if self.multiple else ''}"

    def resolved(self, backbone_multiple: int) -> Padding:
        """This padding with its multiple filled in and checked against the backbone's."""
        multiple = self.multiple or backbone_multiple
        if multiple < 1 or multiple % backbone_multiple or multiple > MAX_MULTIPLE:
            raise PaddingError(f"padding multiple {multiple} must be a multiple of this backbone's "
                               f"{backbone_multiple} pixels, at most {MAX_MULTIPLE}")
        return replace(self, multiple=multiple)

    def is_ours(self, backbone_multiple: int) -> bool:
        """True for right/bottom replicate padding to the backbone's multiple (not recorded in headers)."""
        return not self.centre and self.fill == "replicate" and self.multiple in (None, backbone_multiple)

    def amounts(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) pixels added to an image of this size (``resolved`` first)."""
        m = self.multiple
        ph, pw = (-height) % m, (-width) % m
        if not self.centre:
            return 0, pw, 0, ph
        return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        left, right, top, bottom = self.amounts(height, width)
        return height + top + bottom, width + left + right

    def pad(self, x: Tensor) -> Tensor:
        """``x`` (…, H, W) padded as this padding says (``resolved`` first)."""
        amounts = self.amounts(*x.shape[-2:])
        if not any(amounts):
            return x
        if self.fill == "zero":
            return F.pad(x, amounts, mode="constant", value=0.0)
        return F.pad(x, amounts, mode="replicate")

    def crop(self, x: Tensor, height: int, width: int) -> Tensor:
        """The original ``height`` × ``width`` pixels of a padded (…, H', W') image."""
        left, _, top, _ = self.amounts(height, width)
        return x[..., top:top + height, left:left + width]

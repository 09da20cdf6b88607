"""What every backbone offers the platform: a compressai-style network plus byte-level coding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from compressai.layers import MaskedConv2d
from compressai.models import CompressionModel
from torch import Tensor

from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.entropy import rans


@contextlib.contextmanager
def fp32(device_type: str) -> Iterator[None]:
    """Disable autocast so likelihoods and entropy parameters stay in float32 under bf16 training."""
    with torch.autocast(device_type=device_type, enabled=False):
        yield


class Backbone(CompressionModel):
    """A learned codec network.

    ``forward(x)`` returns ``{"x_hat", "likelihoods"}`` for training; ``encode`` / ``decode`` turn a
    padded image into byte sections and back. Padding, headers and knobs are the ``Codec``'s job.
    """

    #: spatial multiple the input must have (the total downsampling of the analysis transform)
    pad_multiple: int = 64
    #: lossless backbones decode the 8-bit input exactly; rate targets make no sense for them
    lossless: bool = False

    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Build the CDF tables; also zero the masked taps of masked convolutions.

        CompressAI's ``MaskedConv2d`` zeroes them in place on its first forward, which would
        change the weights fingerprint between two compressions; doing it here makes it stable.
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, MaskedConv2d):
                    module.weight.mul_(module.mask)
        return super().update(scale_table=scale_table, force=force, update_quantiles=update_quantiles)

    def encode(self, x: Tensor) -> list[bytes]:
        """Entropy-code one padded image of shape (1, 3, H, W) into byte sections."""
        raise NotImplementedError

    def decode(self, sections: list[bytes], height: int, width: int) -> Tensor:
        """Decode the sections of a padded image of the given size; returns (1, 3, H, W)."""
        raise NotImplementedError

    def check_sections(self, sections: Sequence[bytes], height: int, width: int) -> None:
        """Refuse (BitstreamError), before anything is decoded, sections that cannot be this backbone's
        code of a padded image of this size: their number, and each length against the latent it must hold."""
        raise NotImplementedError


def check_hyperprior_sections(sections: Sequence[bytes], height: int, width: int, y_channels: int,
                              z_channels: int) -> None:
    """The hyperprior layout: ``[y, z]``, rANS streams of y at stride 16 and z at stride 64."""
    if len(sections) != 2:
        raise BitstreamError(f"this codec writes 2 image sections (y, z), the file has {len(sections)}; "
                             "it is corrupted or from another codec")
    rans.check_stream(sections[0], y_channels * (height // 16) * (width // 16), "y")
    rans.check_stream(sections[1], z_channels * (height // 64) * (width // 64), "z")

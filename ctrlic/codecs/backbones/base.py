"""What every backbone offers the platform: a compressai-style network plus byte-level coding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from compressai.entropy_models import EntropyModel
from compressai.layers import MaskedConv2d
from compressai.models import CompressionModel
from torch import Tensor


@contextlib.contextmanager
def fp32(device_type: str) -> Iterator[None]:
    """Disable autocast so likelihoods and entropy parameters stay in float32 under bf16 training."""
    with torch.autocast(device_type=device_type, enabled=False):
        yield


@contextlib.contextmanager
def entropy_models_on_cpu(model: torch.nn.Module) -> Iterator[None]:
    """Move the entropy models to the CPU for the block, then back to where each was.

    Their CDF tables are then built by the CPU's arithmetic wherever the model lives: a table built on a
    GPU can differ from the CPU decoder's in a rounded entry, and one such entry desynchronises the stream.
    """
    moved = [(m, m._quantized_cdf.device) for m in model.modules()
             if isinstance(m, EntropyModel) and m._quantized_cdf.device.type != "cpu"]
    for module, _ in moved:
        module.cpu()
    try:
        yield
    finally:
        for module, device in moved:
            module.to(device)


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
        """Build the CDF tables (on the CPU, see ``entropy_models_on_cpu``); also zero the masked taps of
        masked convolutions.

        CompressAI's ``MaskedConv2d`` zeroes them in place on its first forward, which would
        change the weights fingerprint between two compressions; doing it here makes it stable.
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, MaskedConv2d):
                    module.weight.mul_(module.mask)
        with entropy_models_on_cpu(self):
            return super().update(scale_table=scale_table, force=force, update_quantiles=update_quantiles)

    def encode(self, x: Tensor) -> list[bytes]:
        """Entropy-code one padded image of shape (1, 3, H, W) into byte sections."""
        raise NotImplementedError

    def decode(self, sections: list[bytes], height: int, width: int) -> Tensor:
        """Decode the sections of a padded image of the given size; returns (1, 3, H, W)."""
        raise NotImplementedError

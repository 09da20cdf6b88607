"""What every backbone offers the platform: a compressai-style network plus byte-level coding.

Optional capabilities are declared here, with defaults, so nothing needs to probe a backbone:
``parameter_modules`` (the device-robust cpu64 entropy path), ``checkpoint_key_map`` (the authors'
checkpoint layout), ``lossless``, ``adaptation_tile`` (per-image adaptation) and ``capabilities``
(what a control scheme may need from it, see :data:`CAPABILITIES`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import torch
from compressai.entropy_models import EntropyModel
from compressai.layers import MaskedConv2d
from compressai.models import CompressionModel
from torch import Tensor

from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.entropy import bit_map, rans

#: what a backbone can offer a control scheme; ``Backbone.capabilities`` declares which it has and
#: ``ControlScheme.requires`` which a scheme needs (checked when the scheme attaches)
CAPABILITIES = {
    "gaussian_latent": "a latent y coded under a Gaussian conditional (gaussian_conditional) given a "
                       "hyper-latent z coded by an entropy bottleneck",
    "rate_distortion": "a lossy codec trained on λ·D + R, so that training for other λs moves its rate",
    "likelihood_rate": "a training forward whose likelihoods are differentiable in the weights "
                       "(a rate that encode-time fitting can lower)",
    "swin_prompts": "STF-style Swin window-attention blocks (stf.SwinBlock) that take prompt tokens",
    "grain_masks": "Control-GIC grain masks set by (fine, medium, coarse) area ratios (the vqgan backbone)",
}


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
    padded image into byte sections and back (``compress`` / ``decompress`` are the same coder in
    CompressAI's calling convention). Padding, headers and knobs are the ``Codec``'s job.
    """

    #: spatial multiple the input must have (the total downsampling of the analysis transform)
    pad_multiple: int = 64
    #: lossless backbones decode the 8-bit input exactly; rate targets make no sense for them
    lossless: bool = False
    #: the modules that turn ẑ (and decoded latents) into means and scales; naming them offers the
    #: device-robust ``cpu64`` entropy path (``codecs/entropy/robust.py``)
    parameter_modules: tuple[str, ...] = ()
    #: where coding computes the entropy parameters: "native" or "cpu64" (the Codec sets it around coding)
    entropy_path: str = "native"
    #: tile size per-image adaptation fits on (CALLIC's rate-guided patches)
    adaptation_tile: int = 64
    #: the :data:`CAPABILITIES` this backbone has
    capabilities: frozenset[str] = frozenset()

    @property
    def robust_entropy(self) -> bool:
        """True when the entropy parameters can be computed on the CPU in float64 (``cpu64``)."""
        return bool(self.parameter_modules)

    def checkpoint_key_map(self, state: Mapping[str, Tensor], variant: str | None = None) -> dict[str, Tensor]:
        """Map the authors' checkpoint layout onto this module's keys (``variant``: e.g. raw or EMA weights)."""
        if variant:
            raise ValueError(f"{type(self).__name__} has no weight variants; drop backbone.weights={variant}")
        return dict(state)

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

    def compress(self, x: Tensor) -> dict:
        """``encode`` in CompressAI's convention; ``shape`` is the padded image's (H, W), not a latent's."""
        return {"strings": [[s] for s in self.encode(x)], "shape": tuple(x.shape[-2:])}

    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict:
        """``decode`` in CompressAI's convention (see ``compress``)."""
        return {"x_hat": self.decode([s[0] for s in strings], *shape)}

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

class GaussianCoder(Backbone):
    """A backbone whose latent y (``M`` channels) is coded under ``gaussian_conditional`` given a
    hyper-latent z coded by ``entropy_bottleneck``: the base of the shared coders (wavefront,
    mean-scale, channel-autoregressive), and what gain units and QVRF attach to."""

    capabilities = frozenset({"gaussian_latent", "rate_distortion", "likelihood_rate"})
    #: channels of y (set by every subclass)
    M: int

    @property
    def latent_channels(self) -> dict[str, int]:
        """Channels of y and of z: the widths of per-channel gain vectors."""
        return {"y": int(self.M), "z": int(self.entropy_bottleneck.channels)}

    def code_z(self, z: Tensor) -> tuple[bytes, Tensor]:
        """The hyper-latent's section and ẑ as the decoder will see it (added to a bit map when one records)."""
        z_string = rans.compress_bottleneck(self.entropy_bottleneck, z)
        bit_map.record_bottleneck("z", self.entropy_bottleneck, z)
        return z_string, rans.decompress_bottleneck(self.entropy_bottleneck, z_string, z.shape[-2:])

    def check_sections(self, sections: Sequence[bytes], height: int, width: int) -> None:
        check_hyperprior_sections(sections, height, width, self.M, self.entropy_bottleneck.channels)

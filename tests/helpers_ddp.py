"""For the DDP equivalence test: training quantization without random draws.

One process of batch 2b and two processes of batch b draw different uniform noise (each rank's
generator restarts the same sequence), so their runs differ by construction. Rounding with a
straight-through gradient in place of the noise leaves only the DDP arithmetic to compare.
"""

from __future__ import annotations

import lightning as L
from compressai.entropy_models.entropy_models import EntropyModel

_noisy_quantize = EntropyModel.quantize


def _rounding_quantize(self, inputs, mode, means=None):
    if mode == "noise":
        return inputs + (inputs.round() - inputs).detach()
    return _noisy_quantize(self, inputs, mode, means)


class RoundInsteadOfNoise(L.Callback):
    """Installs straight-through rounding for every entropy model of the process (all ranks)."""

    def setup(self, trainer, pl_module, stage) -> None:
        EntropyModel.quantize = _rounding_quantize

"""For the DDP tests: training quantization without random draws, and a record of every rank's batches.

One process of batch 2b and two processes of batch b draw different uniform noise (each rank's
generator restarts the same sequence), so their runs differ by construction. Rounding with a
straight-through gradient in place of the noise leaves only the DDP arithmetic to compare.
"""

from __future__ import annotations

import json
from pathlib import Path

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


class RecordBatches(L.Callback):
    """Writes ``batches_rank<r>.json``: per optimizer step, this rank's batch as per-image pixel sums."""

    def __init__(self) -> None:
        self.steps: dict[int, list[float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps[trainer.global_step] = [float(x.double().sum()) for x in batch]

    def on_train_end(self, trainer, pl_module) -> None:
        path = Path(trainer.default_root_dir) / f"batches_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.steps))

"""Training a scheme with one level per λ (gain units, QVRF): a level drawn per batch, its λ in the loss.

As in the authors' code (GainedVAE ``trainGain.py``, QRAF ``train.py``, CompressAI-Trainer's GVAE
runner) the level is uniform over the levels, here seeded by (seed, global step) like CALICE's α, so
DDP ranks agree and a resumed run continues the same sequence. Validation codes at every level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from ctrlic.codecs.codec import Codec
from ctrlic.codecs.control.levels import LevelScheme
from ctrlic.errors import UserError
from ctrlic.lightning_modules.rd import RDModule
from ctrlic.lightning_modules.variable_rate import draw_alpha


class MultiLambdaError(UserError):
    """A multi-λ training config that does not fit the codec (no levels, unknown level)."""


class MultiLambdaModule(RDModule):
    """Train on ``λ_s·D + R`` with level s drawn per batch from ``levels`` (None: every level).

    The scheme's level s gives the knobs and trainable parameters (``LevelScheme.train_level``);
    validation averages over ``val_levels`` (None: every level) at their current knob values.
    """

    def __init__(self, codec: Codec, levels: Sequence[int] | None = None, val_levels: Sequence[int] | None = None,
                 seed: int = 0, **kwargs) -> None:
        scheme = codec.control
        if not isinstance(scheme, LevelScheme):
            raise MultiLambdaError(f"module=multi_lambda trains schemes with one level per λ (gain_units, qvrf); "
                                   f"control is {type(scheme).__name__}")
        every = list(range(scheme.levels))
        self.levels = [int(s) for s in (levels if levels is not None else every)]
        self.val_levels = [int(s) for s in (val_levels if val_levels is not None else every)]
        unknown = sorted(set(self.levels + self.val_levels) - set(every))
        if unknown or not self.levels or not self.val_levels:
            raise MultiLambdaError(f"module.levels={self.levels} / module.val_levels={self.val_levels}: the levels "
                                   f"are {every} (λ = {list(scheme.lambdas)})")
        super().__init__(codec, lmbda=scheme.lambdas[-1], **kwargs)
        self.seed = seed
        self.level = self.levels[-1]

    @property
    def scheme(self) -> LevelScheme:
        return self.codec.control

    def training_knobs(self) -> dict[str, float]:
        self.level = draw_alpha(self.levels, self.seed, self.global_step)
        return self.scheme.level_knobs(self.level)

    def training_step(self, x: Tensor, batch_idx: int) -> Tensor | None:
        knobs = self.codec.set_knobs(self.training_knobs())
        self.scheme.train_level(self.level)
        self.log("train/level", float(self.level))
        return self.rd_step(x, knobs, batch_idx)

    def lmbda_for(self, knobs: Mapping[str, float]) -> float:
        return self.scheme.lmbda(knobs)

    def validation_knobs(self) -> list[dict[str, float]]:
        return [self.scheme.level_knobs(s) for s in self.val_levels]

"""CALICE training: one frozen anchor, adapters trained over a range of λ by sampling α per batch."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ctrlic.codecs.codec import Codec
from ctrlic.lightning_modules.rd import RDModule

#: α values drawn per batch in CALICE (``--alpha-perc``); α = 0 is never trained (it is the anchor)
TRAIN_ALPHAS = (1.0, 0.95, 0.9, 0.8, 0.6, 0.4, 0.2)
VAL_ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def interpolate_lambda(alpha: float, lmbda_min: float, lmbda_max: float, inverse: bool = False) -> float:
    """CALICE's log-linear λ(α): λ_max at α = 0 (the anchor), λ_min at α = 1.

    With ``inverse`` the λ weighs the rate instead of the distortion (LPIPS/RDP losses), so it runs
    the other way: λ_min at α = 0 and λ_max at α = 1.
    """
    lo, hi = math.log(lmbda_min), math.log(lmbda_max)
    if inverse:
        return math.exp((1 - alpha) * lo + alpha * hi)
    return math.exp((1 - alpha) * hi + alpha * lo)


def draw_alpha(alphas: Sequence[float], seed: int, step: int) -> float:
    """The α of one training step: a function of (seed, step) only, so DDP ranks and resumes agree."""
    return alphas[int(np.random.default_rng([seed, step]).integers(len(alphas)))]


class VariableRateModule(RDModule):
    """Train the control scheme's parameters with α drawn per batch and λ = λ(α).

    The draw is seeded by (seed, global step), so every DDP rank uses the same α and a resumed run
    continues the same sequence. Validation averages the loss over ``val_alphas``.
    """

    def __init__(self, codec: Codec, lmbda_min: float = 0.0018, lmbda_max: float = 0.0483,
                 alphas: Sequence[float] = TRAIN_ALPHAS, val_alphas: Sequence[float] = VAL_ALPHAS,
                 inverse: bool = False, knob: str = "alpha", seed: int = 0, **kwargs) -> None:
        super().__init__(codec, lmbda=lmbda_max, val_knobs=[{knob: float(a)} for a in val_alphas], **kwargs)
        if not alphas:
            raise ValueError("module.alphas is empty: give the α values to train on")
        self.lmbda_min, self.lmbda_max, self.inverse = lmbda_min, lmbda_max, inverse
        self.alphas = [float(a) for a in alphas]
        self.knob, self.seed = knob, seed

    def training_knobs(self) -> dict[str, float]:
        return {self.knob: draw_alpha(self.alphas, self.seed, self.global_step)}

    def lmbda_for(self, knobs: Mapping[str, float]) -> float:
        return interpolate_lambda(knobs[self.knob], self.lmbda_min, self.lmbda_max, self.inverse)

"""CALICE training: one frozen anchor, adapters trained over a range of λ by sampling α per batch.

With ``betas`` (β-CALICE) a second knob β is drawn per batch too and the LPIPS term is weighted by
``perception_weight · β``: ``λ_rate(α)·bpp + 150·MSE + 2β·LPIPS``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ctrlic.codecs.codec import Codec
from ctrlic.lightning_modules.losses import LPIPSRateLoss
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


def draw_alpha(alphas: Sequence[float], seed: int, step: int, stream: int = 0) -> float:
    """The α of one training step: a function of (seed, step) only, so DDP ranks and resumes agree.

    ``stream`` > 0 gives an independent draw from the same step (β-CALICE's β uses stream 1).
    """
    key = [seed, step] if stream == 0 else [seed, step, stream]
    return alphas[int(np.random.default_rng(key).integers(len(alphas)))]


class VariableRateModule(RDModule):
    """Train the control scheme's parameters with α drawn per batch and λ = λ(α).

    The draw is seeded by (seed, global step), so every DDP rank uses the same α and a resumed run
    continues the same sequence. Validation averages the loss over ``val_alphas`` (× ``val_betas``).

    β-CALICE: with ``betas``, β is drawn independently per batch (knob ``beta_knob``) and the loss's
    LPIPS weight is ``perception_weight · β`` (needs ``module/loss=lpips``). Without ``betas`` the
    module is CALICE's, unchanged.
    """

    def __init__(self, codec: Codec, lmbda_min: float = 0.0018, lmbda_max: float = 0.0483,
                 alphas: Sequence[float] = TRAIN_ALPHAS, val_alphas: Sequence[float] = VAL_ALPHAS,
                 inverse: bool = False, knob: str = "alpha", seed: int = 0,
                 betas: Sequence[float] | None = None, val_betas: Sequence[float] = (0.0, 1.0),
                 beta_knob: str = "beta", perception_weight: float = 2.0, **kwargs) -> None:
        val_knobs = [{knob: float(a)} for a in val_alphas]
        if betas:
            val_knobs = [{**k, beta_knob: float(b)} for k in val_knobs for b in val_betas]
        super().__init__(codec, lmbda=lmbda_max, val_knobs=val_knobs, **kwargs)
        if not alphas:
            raise ValueError("module.alphas is empty: give the α values to train on")
        if betas and not isinstance(self.criterion, LPIPSRateLoss):
            raise ValueError(f"module.betas needs module/loss=lpips (the β-weighted LPIPS term); "
                             f"got {type(self.criterion).__name__}")
        self.lmbda_min, self.lmbda_max, self.inverse = lmbda_min, lmbda_max, inverse
        self.alphas = [float(a) for a in alphas]
        self.betas = [float(b) for b in betas] if betas else None
        self.knob, self.seed = knob, seed
        self.beta_knob, self.perception_weight = beta_knob, perception_weight

    def training_knobs(self) -> dict[str, float]:
        knobs = {self.knob: draw_alpha(self.alphas, self.seed, self.global_step)}
        if self.betas:
            knobs[self.beta_knob] = draw_alpha(self.betas, self.seed, self.global_step, stream=1)
        return knobs

    def lmbda_for(self, knobs: Mapping[str, float]) -> float:
        """λ(α); with β, also sets the criterion's LPIPS weight to ``perception_weight · β``.

        RDModule hands the criterion only λ, and it asks for λ right before every loss (training and
        each validation knob setting), so the β-dependent weight is set here.
        """
        if self.betas:
            self.criterion.lpips_weight = self.perception_weight * knobs[self.beta_knob]
        return interpolate_lambda(knobs[self.knob], self.lmbda_min, self.lmbda_max, self.inverse)

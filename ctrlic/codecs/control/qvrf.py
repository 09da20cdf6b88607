"""QVRF (Tong et al., "QVRF: A Quantization-error-aware Variable Rate Framework for Learned Image
Compression", ICIP 2023; bytedance/QRAF, VincentChandelier/STF-QVRF): one scalar quantization
regulator a per training λ, applied to y only.

The scheme registers the regulators as the backbone parameter ``Gain`` (L,) — the authors' key, so
their checkpoints' extra parameter loads — initialised to ``sqrt(λ_i/λ_0)``, and replaces the
backbone's ``gaussian_conditional`` with a :class:`ScaledGaussianConditional` (same keys, same
tables): symbols ``round((y − μ)·a)``, indexes from ``σ·a``, ``ŷ = symbols/a + μ``; z is not scaled.
Training draws a level per batch and uses ``max(Gain[s], 1e-4) + 1e-9`` (level 0: ``Gain[0]``
detached), with the training proxy ``noise`` (QRAF stage 2) or ``ste`` (stage 3). At inference the
knob ``a`` is continuous over [a_min, a_max] (QRAF's ``--factor``); the RD sweep codes at the trained
levels |Gain[s]| unless ``sweep`` lists values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ctrlic.codecs.control.base import Knob
from ctrlic.codecs.control.levels import LevelConfigError, LevelScheme, as_float32, check_lambdas
from ctrlic.codecs.entropy.gaussian import PROXIES, ScaledGaussianConditional

#: the backbone parameter holding the regulators (QRAF's and STF-QVRF's name)
GAIN = "Gain"
#: what QRAF adds to the clamped regulator in training (``eps``)
EPS = 1e-9


class QVRF(LevelScheme):
    """Knob ``a`` ∈ [a_min, a_max]: the quantization regulator (step 1/a); rate rises with a.

    ``gains`` are the initial regulators (None: sqrt(λ_i/λ_0)); ``proxy`` one of
    ``entropy.gaussian.PROXIES``; ``floor`` the lower clamp of a trained regulator;
    ``train_backbone``: train everything (the authors' stages 2 and 3) or the regulators alone.
    """

    requires = frozenset({"gaussian_latent"})

    def __init__(self, lambdas: Sequence[float], gains: Sequence[float] | None = None, a_min: float = 0.5,
                 a_max: float = 12.0, default: float = 1.0, sweep: Sequence[float] | None = None,
                 proxy: str = "noise", floor: float = 1e-4, train_backbone: bool = True) -> None:
        self.lambdas = check_lambdas(lambdas, "qvrf")
        initial = [math.sqrt(v / self.lambdas[0]) for v in self.lambdas] if gains is None else [float(g) for g in gains]
        if len(initial) != self.levels or any(g <= 0 for g in initial):
            raise LevelConfigError(f"qvrf.gains={initial}: give one positive regulator per λ ({self.levels})")
        if not 0 < a_min <= min(initial) or max(initial) > a_max:
            raise LevelConfigError(f"qvrf: the knob range [a_min={a_min:g}, a_max={a_max:g}] must be positive and "
                                   f"hold every initial regulator ({min(initial):g} … {max(initial):g})")
        if proxy not in PROXIES:
            raise LevelConfigError(f"qvrf.proxy={proxy!r}; choose one of {', '.join(PROXIES)}")
        self.initial, self.proxy, self.floor = tuple(initial), proxy, float(floor)
        self.sweep = None if sweep is None else tuple(float(v) for v in sweep)
        self.train_backbone = bool(train_backbone)
        self.knobs = (Knob("a", float(a_min), float(a_max), default=float(default), sweep=self.sweep or self.initial),)

    @property
    def conditional(self) -> ScaledGaussianConditional:
        return self.backbone.gaussian_conditional

    @property
    def gain(self) -> nn.Parameter:
        return getattr(self.backbone, GAIN)

    def attach(self, backbone: nn.Module) -> None:
        """Register ``Gain`` (taking over one already there) and scale the Gaussian conditional."""
        super().attach(backbone)
        current = backbone._parameters.get(GAIN)
        if current is None or tuple(current.shape) != (self.levels,):
            like = next(backbone.parameters())
            backbone.register_parameter(GAIN, nn.Parameter(torch.tensor(self.initial, dtype=like.dtype,
                                                                        device=like.device)))
        conditional = backbone.gaussian_conditional
        if not isinstance(conditional, ScaledGaussianConditional):
            conditional = ScaledGaussianConditional.replacing(conditional, self.proxy)
            backbone.gaussian_conditional = conditional
        conditional.proxy = self.proxy

    # -- knobs -----------------------------------------------------------------------------------

    def apply(self, values: Mapping[str, float]) -> None:
        """a as the container stores it (float32), so encoder and decoder scale by the same number."""
        self.conditional.regulator = torch.tensor(as_float32(values["a"]))

    def train_level(self, level: int) -> None:
        """QRAF's training regulator: ``max(Gain[s], floor) + 1e-9``, level 0 fixed at its value."""
        gain = self.gain
        self.conditional.regulator = gain[0].detach() if level == 0 else torch.clamp_min(gain[level], self.floor) + EPS

    def trained(self) -> list[float]:
        """|Gain[s]| of every level as a knob value (float32, clamped into the knob's range)."""
        knob = self.knobs[0]
        return [min(max(as_float32(abs(g)), knob.low), knob.high) for g in self.gain.detach().cpu().tolist()]

    def level_knobs(self, level: int) -> dict[str, float]:
        return {"a": self.trained()[level]}

    def lmbda(self, knobs: Mapping[str, float]) -> float:
        """λ log-linear in log a between the trained levels (exact at each level; clamped at the ends)."""
        order = np.argsort(self.trained(), kind="stable")
        logs_a = np.log(np.asarray(self.trained())[order])
        logs_l = np.log(np.asarray(self.lambdas)[order])
        return float(np.exp(np.interp(math.log(float(knobs["a"])), logs_a, logs_l)))

    def sweep_points(self) -> list[dict[str, float]]:
        """The configured ``sweep``, else the trained levels in order of rising a (QRAF's ``--s`` sweep)."""
        values = self.sweep if self.sweep is not None else sorted(self.trained())
        return [{"a": float(v)} for v in values]

    # -- parameters ------------------------------------------------------------------------------

    def attached_parameters(self) -> list[nn.Parameter]:
        return [self.gain]

    def trainable_parameters(self) -> list[nn.Parameter] | None:
        return None if self.train_backbone else [self.gain]

    def parameter_groups(self) -> dict[str, int]:
        """One regulator per level (for ``task=info``)."""
        return {f"level {s} (λ={lmbda:g})": 1 for s, lmbda in enumerate(self.lambdas)}

    def describe(self) -> dict:
        trained = {"trained_regulators": self.trained()} if self.backbone is not None else {}
        return {**super().describe(), "proxy": self.proxy, **trained}

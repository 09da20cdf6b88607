"""Schemes with one trained level per λ (gain units, QVRF): what the level-per-batch training needs.

Training draws a level per batch and trains at its λ (``lightning_modules.multi_lambda``); at
inference a continuous knob moves the rate over and between the levels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from ctrlic.codecs.control.base import ControlScheme
from ctrlic.errors import UserError


class LevelConfigError(UserError):
    """A level list that cannot work (fewer than two λs, not rising, not positive)."""


def check_lambdas(lambdas: Sequence[float], scheme: str) -> tuple[float, ...]:
    """The training λs as floats, checked: at least two, positive, strictly rising (level 0 = lowest rate)."""
    values = tuple(float(v) for v in lambdas)
    if len(values) < 2 or any(v <= 0 for v in values) or any(b <= a for a, b in itertools.pairwise(values)):
        raise LevelConfigError(f"{scheme}.lambdas={list(values)}: give at least two positive λs in rising "
                               "order (level 0 is the lowest rate)")
    return values


def as_float32(value: float) -> float:
    """``value`` as the container stores knobs (float32): encoder and decoder then compute with the same number."""
    return float(np.float32(value))


def interpolate_log(position: float, points: Sequence[float], values: Sequence[float]) -> float:
    """``exp`` of the piecewise-linear interpolation of ``log values`` at ``position`` (clamped at the ends)."""
    return math.exp(float(np.interp(position, points, np.log(values))))


class LevelScheme(ControlScheme):
    """A control scheme with one trained level per λ in ``lambdas`` (rising)."""

    lambdas: tuple[float, ...] = ()

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    def level_knobs(self, level: int) -> dict[str, float]:
        """The knob values at which the scheme codes at trained level ``level``."""
        raise NotImplementedError

    def train_level(self, level: int) -> None:
        """Code with the trainable parameters of ``level`` until the next ``apply`` (training steps)."""
        self.apply(self.level_knobs(level))

    def lmbda(self, knobs: Mapping[str, float]) -> float:
        """The λ a knob setting is trained for (log-linear between the levels' λs)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {**super().describe(), "lambdas": list(self.lambdas)}

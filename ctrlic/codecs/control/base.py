"""Control schemes: what moves a codec along its rate curve, declared so every tool can drive it."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn


class KnobError(ValueError):
    """A knob value the codec cannot take (unknown name, out of range)."""


@dataclass(frozen=True)
class Knob:
    """One inference-time control: its range, default, sweep values and direction of rate."""

    name: str
    low: float
    high: float
    default: float
    sweep: tuple[float, ...]
    rate_increases: bool = True  # False when rate falls as the knob rises (CALICE's α)
    discrete: bool = False

    def check(self, value: float) -> float:
        value = float(value)
        if not self.low <= value <= self.high:
            raise KnobError(f"{self.name}={value:g} is out of range [{self.low:g}, {self.high:g}]")
        if self.discrete and value != round(value):
            raise KnobError(f"{self.name}={value:g} must be a whole number")
        return value


class ControlScheme:
    """Transforms a backbone in place (attaching small modules by name) and declares its knobs.

    A plain object, not an ``nn.Module``: whatever it attaches lives inside the backbone, so the
    backbone's state dict carries it under the key names the method's authors used.
    """

    knobs: tuple[Knob, ...] = ()

    def attach(self, backbone: nn.Module) -> None:
        """Modify ``backbone`` in place (no-op for fixed-rate codecs)."""

    def apply(self, values: Mapping[str, float]) -> None:
        """Set the knob values on the attached modules."""

    def attached_parameters(self, backbone: nn.Module) -> list[nn.Parameter]:
        """The parameters this scheme added to the backbone (for storage accounting)."""
        return []

    def trainable_parameters(self, backbone: nn.Module) -> list[nn.Parameter] | None:
        """The parameters training should update; ``None`` means the whole backbone."""
        return None

    def resolve(self, values: Mapping[str, float] | None = None) -> dict[str, float]:
        """Fill defaults and validate ``values``; raises KnobError naming the declared knobs."""
        values = dict(values or {})
        declared = {k.name: k for k in self.knobs}
        unknown = sorted(set(values) - set(declared))
        if unknown:
            have = ", ".join(declared) or "none (fixed-rate codec)"
            raise KnobError(f"unknown knob(s) {', '.join(unknown)}; this codec's knobs: {have}")
        return {k.name: k.check(values.get(k.name, k.default)) for k in self.knobs}

    def sweep_points(self) -> list[dict[str, float]]:
        """Knob settings the RD sweep evaluates: the product of each knob's sweep values."""
        grids = [[(k.name, v) for v in k.sweep] for k in self.knobs]
        return [dict(p) for p in itertools.product(*grids)]

    def describe(self) -> dict:
        return {
            "scheme": type(self).__name__,
            "knobs": [
                {"name": k.name, "range": [k.low, k.high], "default": k.default, "sweep": list(k.sweep)}
                for k in self.knobs
            ],
        }


class FixedRate(ControlScheme):
    """No control: the backbone codes at the single rate it was trained for."""

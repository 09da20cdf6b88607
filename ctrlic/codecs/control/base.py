"""Control schemes: what moves a codec along its rate curve, declared so every tool can drive it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from ctrlic.codecs.backbones.base import CAPABILITIES
from ctrlic.errors import UserError


class KnobError(UserError):
    """A knob value the codec cannot take (unknown name, out of range)."""


class SchemeFitError(UserError):
    """A control scheme asked for on a backbone that lacks what the scheme needs (a declared capability)."""


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


@dataclass(frozen=True)
class RatePath:
    """A one-parameter family of knob settings along which the rate rises, for target-rate search.

    Continuous paths map ``t`` in [0, 1] to knob values (``at``); discrete paths list their settings
    in order of rising rate (``points``), and the search moves over their indices.
    """

    at: Callable[[float], dict[str, float]] | None = None
    points: tuple[dict[str, float], ...] | None = None

    def __post_init__(self) -> None:
        if (self.at is None) == (self.points is None):
            raise ValueError("a RatePath is either continuous (at) or discrete (points)")

    @property
    def discrete(self) -> bool:
        return self.points is not None


class ControlScheme:
    """Transforms a backbone in place (attaching small modules by name) and declares its knobs.

    A plain object, not an ``nn.Module``: whatever it attaches lives inside the backbone, so the
    backbone's state dict carries it under the key names the method's authors used.
    """

    knobs: tuple[Knob, ...] = ()
    #: the backbone this scheme is attached to (set by ``attach``; every other method acts on it)
    backbone: nn.Module | None = None
    #: the backbone capabilities (``backbones.base.CAPABILITIES``) this scheme needs
    requires: frozenset[str] = frozenset()

    def attach(self, backbone: nn.Module) -> None:
        """Modify ``backbone`` in place and keep it; subclasses call this first, then add their modules.

        Raises SchemeFitError when the backbone does not declare a capability the scheme requires.
        """
        missing = sorted(self.requires - getattr(backbone, "capabilities", frozenset()))
        if missing:
            need = "; ".join(CAPABILITIES[name] for name in missing)
            raise SchemeFitError(f"control {type(self).__name__} does not fit backbone {type(backbone).__name__}: "
                                 f"it needs {need}, which {type(backbone).__name__} does not have")
        self.backbone = backbone

    def apply(self, values: Mapping[str, float]) -> None:
        """Set the knob values on the attached modules."""

    def attached_parameters(self) -> list[nn.Parameter]:
        """The parameters this scheme added to the backbone (for storage accounting)."""
        return []

    def trainable_parameters(self) -> list[nn.Parameter] | None:
        """The parameters training should update; ``None`` means the whole self.backbone."""
        return None

    def parameter_groups(self) -> dict[str, int]:
        """Attached parameter counts by group (e.g. one per prompt set), for ``task=info``; none by default."""
        return {}

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

    def rate_path(self, fixed: Mapping[str, float] | None = None) -> RatePath:
        """The path target-rate search moves along: the one knob not held in ``fixed``.

        Other knobs stay at ``fixed`` or their defaults. Schemes with several free knobs or a
        path of their own (granularity ratios, prompt sets) override this.
        """
        fixed = dict(fixed or {})
        base = self.resolve(fixed)
        free = [k for k in self.knobs if k.name not in fixed]
        if len(free) != 1:
            names = ", ".join(k.name for k in free) or "none"
            raise KnobError(f"target-rate search needs exactly one free knob; free here: {names} "
                            "(hold the others fixed with --set NAME=VALUE)")
        knob = free[0]
        if knob.discrete:
            values = [float(v) for v in range(int(knob.low), int(knob.high) + 1)]
            values = values if knob.rate_increases else values[::-1]
            return RatePath(points=tuple(base | {knob.name: v} for v in values))
        lo, hi = (knob.low, knob.high) if knob.rate_increases else (knob.high, knob.low)
        return RatePath(at=lambda t: base | {knob.name: lo + (hi - lo) * float(t)})

    def encode_side(self, x: Tensor, knobs: Mapping[str, float]) -> list[bytes]:
        """Side information coded before the image, e.g. per-image weight increments (default none).

        May change the backbone (adapt it to ``x``) until ``release`` is called.
        """
        return []

    def decode_side(self, sections: list[bytes], knobs: Mapping[str, float]) -> None:
        """Read what ``encode_side`` wrote and put the backbone in the state the encoder used."""

    def release(self) -> None:
        """Undo what ``encode_side`` / ``decode_side`` changed in the backbone."""

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

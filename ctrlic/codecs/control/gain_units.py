r"""Gain units (Cui et al., "Asymmetric Gained Deep Image Compression With Continuous Rate Adaptation",
CVPR 2021): per-channel gain and inverse-gain vectors on the latent y and the hyper-latent z, one pair
per training λ, with exponential interpolation between neighbouring pairs for continuous rates.

The gains sit where configuration says (``conf/control/gain_units_<backbone>.yaml``): full-match
regular expressions on module names (``re.fullmatch`` on ``backbone.named_modules()``).

* ``y_gain``: the module whose **output** is y (one module): y ← y·|g_y(q)|;
* ``y_gain_inv``: the modules whose **input** is ŷ: ŷ ← ŷ·|g_y⁻¹(q)|;
* ``z_gain`` / ``z_gain_inv``: the same for z (after the hyper-analysis) and ẑ (before every
  hyper-synthesis); leave both empty for no hyper gains;
* ``channels_last``: those of the matched modules whose tensors are (B, H, W, C) (STF's Swin stages).

So the hyper-analysis sees the gained y and the whole entropy model works on the gained latent, as
in the paper's Fig. 1 and the unofficial mmSir/GainedVAE (CompressAI's ``GainHyperpriorLatentCodec``
feeds the ungained y to h_a instead; ``docs/baselines.md``). The knob ``q`` ∈ [0, L−1] runs over the
levels in rising λ order: at q = s + l (0 ≤ l < 1) every vector is ``|g_s|^(1−l)·|g_{s+1}|^l``, on the
encoder and on the decoder alike (the unofficial decoder interpolates the inverse gains linearly, so
its ẑ — and with it every y scale — differs from the encoder's; ``docs/fidelity.md``). Parameter names
follow CompressAI's ``latent_codecs/gain``: ``y_gain``, ``y_gain_inv``, ``z_gain``, ``z_gain_inv``,
each (L, C), registered on the backbone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ctrlic.codecs.control.base import Knob
from ctrlic.codecs.control.levels import LevelScheme, as_float32, check_lambdas, interpolate_log
from ctrlic.errors import UserError

#: initial gains: all ones (the paper and GainedVAE), or y gains sqrt(λ_s/λ_0) with inverse 1/that
#: (QVRF's spacing: the levels differ in rate before any training)
INITS = ("ones", "sqrt_lambda")
#: the gain vectors: (parameter name, latent, applied to the matched modules' output or input)
VECTORS = (("y_gain", "y", "output"), ("y_gain_inv", "y", "input"), ("z_gain", "z", "output"),
           ("z_gain_inv", "z", "input"))
#: where the scheme keeps its hook handles on the backbone (a re-attach removes the old hooks)
HOOKS = "_gain_unit_hooks"


class GainUnitsError(UserError):
    """A gain-units config that does not fit the backbone (pattern matching nothing, wrong width)."""


def interpolate_gains(gains: Tensor, q: float) -> Tensor:
    """AG-VAE's exponential interpolation of the (L, C) magnitudes at q = s + l: |g_s|^(1−l)·|g_{s+1}|^l.

    A whole q returns that level's vector itself (so training at a level reaches no other level).
    """
    if q == int(q):
        return gains[int(q)]
    s = math.floor(q)
    weight = q - s  # the paper's l
    return gains[s].pow(1 - weight) * gains[s + 1].pow(weight)


class GainUnits(LevelScheme):
    """Knob ``q`` ∈ [0, L−1] over the levels of ``lambdas`` (rising); rate rises with q.

    ``init`` is one of :data:`INITS`; ``default`` (None: L−1) and ``sweep`` (None: every level and
    every midpoint) are the knob's. ``train_backbone``: train the backbone with the gains (the
    paper's joint training and our fine-tuning recipe) or the gains alone on a frozen anchor.
    """

    requires = frozenset({"gaussian_latent"})

    def __init__(self, lambdas: Sequence[float], y_gain: Sequence[str], y_gain_inv: Sequence[str],
                 z_gain: Sequence[str] = (), z_gain_inv: Sequence[str] = (), channels_last: Sequence[str] = (),
                 init: str = "ones", default: float | None = None, sweep: Sequence[float] | None = None,
                 train_backbone: bool = True) -> None:
        self.lambdas = check_lambdas(lambdas, "gain_units")
        if init not in INITS:
            raise GainUnitsError(f"gain_units.init={init!r}; choose one of {', '.join(INITS)}")
        if bool(z_gain) != bool(z_gain_inv):
            raise GainUnitsError("gain_units: give both z_gain and z_gain_inv, or neither (no hyper gains)")
        self.patterns = {"y_gain": list(y_gain), "y_gain_inv": list(y_gain_inv), "z_gain": list(z_gain),
                         "z_gain_inv": list(z_gain_inv)}
        self.channels_last_patterns = list(channels_last)
        self.init, self.train_backbone = init, bool(train_backbone)
        top = float(self.levels - 1)
        points = tuple(float(v) for v in sweep) if sweep is not None else tuple(i / 2 for i in range(2 * self.levels - 1))
        self.knobs = (Knob("q", 0.0, top, default=top if default is None else float(default), sweep=points),)
        self.q = self.knobs[0].default
        self.points: dict[str, list[str]] = {}

    # -- attaching -------------------------------------------------------------------------------

    def _match(self, modules: Mapping[str, nn.Module], vector: str) -> list[str]:
        names = []
        for pattern in self.patterns[vector]:
            try:
                found = [n for n in modules if n and re.fullmatch(pattern, n)]
            except re.error as err:
                raise GainUnitsError(f"gain_units.{vector} pattern {pattern!r} is not a valid regular "
                                     f"expression ({err})") from None
            if not found:
                top = sorted({n.split(".")[0] for n in modules if n})
                raise GainUnitsError(f"gain_units.{vector} pattern {pattern!r} matches no module; top-level "
                                     f"modules: {', '.join(top)}")
            names += found
        if vector in ("y_gain", "z_gain") and len(names) > 1:
            raise GainUnitsError(f"gain_units.{vector} must match the one module whose output is the latent; "
                                 f"it matches {', '.join(names)}")
        return names

    def _initial(self, vector: str, channels: int, like: Tensor) -> Tensor:
        values = torch.ones(self.levels, channels, dtype=like.dtype, device=like.device)
        if self.init == "sqrt_lambda" and vector.startswith("y_"):
            spacing = torch.tensor([math.sqrt(v / self.lambdas[0]) for v in self.lambdas], dtype=like.dtype)
            values = values * (spacing if vector == "y_gain" else 1 / spacing).to(like.device)[:, None]
        return values

    def attach(self, backbone: nn.Module) -> None:
        """Register the gain vectors (taking over ones already there) and hook them in by name."""
        super().attach(backbone)
        if not self.patterns["y_gain"] or not self.patterns["y_gain_inv"]:
            raise GainUnitsError("gain_units: y_gain and y_gain_inv must name where y leaves the analysis and where "
                                 "ŷ enters the synthesis (use a preset such as control=gain_units_stf)")
        modules = dict(backbone.named_modules())
        self.points = {vector: self._match(modules, vector) for vector, _, _ in VECTORS if self.patterns[vector]}
        channels_last = {n for n in modules for p in self.channels_last_patterns if re.fullmatch(p, n)}
        widths = backbone.latent_channels
        like = next(backbone.parameters())
        for handle in getattr(backbone, HOOKS, []):
            handle.remove()
        handles = []
        for vector, latent, side in VECTORS:
            if vector not in self.points:
                continue
            shape = (self.levels, widths[latent])
            current = backbone._parameters.get(vector)
            if current is None or tuple(current.shape) != shape:
                backbone.register_parameter(vector, nn.Parameter(self._initial(vector, shape[1], like)))
            for name in self.points[vector]:
                scale = self._scaler(vector, name, name in channels_last)
                if side == "output":
                    handles.append(modules[name].register_forward_hook(lambda m, a, out, f=scale: f(out)))
                else:
                    handles.append(modules[name].register_forward_pre_hook(
                        lambda m, args, f=scale: (f(args[0]), *args[1:])))
        setattr(backbone, HOOKS, handles)

    def _scaler(self, vector: str, module: str, channels_last: bool) -> Callable[[Tensor], Tensor]:
        """Multiply a tensor by the current vector along its channel dimension (a closure: the entropy-
        parameter path deep-copies hooked modules, and a closure is copied by reference)."""

        def scale(x: Tensor) -> Tensor:
            gains = self.vector(vector)
            dim = x.dim() - 1 if channels_last else 1
            if x.shape[dim] != gains.numel():
                raise GainUnitsError(f"gain_units.{vector}: {module} carries {x.shape[dim]} channels in dimension "
                                     f"{dim} of {tuple(x.shape)}, the gains {gains.numel()}; list it under "
                                     "channels_last if its tensors are (B, H, W, C)")
            shape = [1] * x.dim()
            shape[dim] = -1
            return x * gains.to(x.device, x.dtype).view(shape)

        return scale

    # -- knobs -----------------------------------------------------------------------------------

    def vector(self, vector: str) -> Tensor:
        """The (C,) gains of ``vector`` at the current q (differentiable in the parameters)."""
        return interpolate_gains(getattr(self.backbone, vector).abs(), self.q)

    def apply(self, values: Mapping[str, float]) -> None:
        """q as the container stores it (float32), so encoder and decoder interpolate with the same l."""
        self.q = as_float32(values["q"])

    def level_knobs(self, level: int) -> dict[str, float]:
        return {"q": float(level)}

    def lmbda(self, knobs: Mapping[str, float]) -> float:
        return interpolate_log(float(knobs["q"]), range(self.levels), self.lambdas)

    # -- parameters ------------------------------------------------------------------------------

    def attached_parameters(self) -> list[nn.Parameter]:
        return [getattr(self.backbone, vector) for vector, _, _ in VECTORS if vector in self.points]

    def trainable_parameters(self) -> list[nn.Parameter] | None:
        return None if self.train_backbone else self.attached_parameters()

    def parameter_groups(self) -> dict[str, int]:
        """Gain parameters per level (for ``task=info``): what one more rate point costs."""
        per_level = sum(p.shape[1] for p in self.attached_parameters())
        return {f"q={s} (λ={lmbda:g})": per_level for s, lmbda in enumerate(self.lambdas)}

    def describe(self) -> dict:
        return {**super().describe(), "points": self.points, "init": self.init}

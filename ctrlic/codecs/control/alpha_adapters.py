r"""CALICE α-adapters (Spadaro et al., ACM TOMM 2026): one set of low-rank adapters on a frozen
fixed-rate anchor, scaled by ``α · multiplier`` with α ∈ [0, 1].

α = 0 is the anchor (its highest rate); α = 1 is trained for λ_min (lowest rate). Which layers get
an adapter is given by three lists of **patterns**: Python regular expressions that must match a
whole module name as listed by ``backbone.named_modules()`` (``re.fullmatch``), e.g.
``g_[as]\.\d+\.conv[12]`` matches ``g_a.0.conv1`` but neither ``g_a.0.conv1.x`` nor ``xg_a.0.conv1``.

* ``lora``: ``nn.Linear`` layers, wrapped by :class:`LoRALinear`;
* ``conv``: ``nn.Conv2d`` layers, wrapped by :class:`ConvAdapter`;
* ``subpel``: CompressAI ``subpel_conv3x3`` Sequentials, wrapped by :class:`SubpelConvAdapter`.

The presets ``conf/control/alpha_adapters_{cheng,stf,tcm}.yaml`` reproduce CALICE's released configs
(``cheng_8_1_all``: 50 adapters, 145,840 parameters at N=192; ``stf_8_8_all``: 48 LoRA, 353,280;
``tcm_8_1_all``: 84 adapters, 164,352 at N=64) module for module; they are the one copy of these
patterns (``tests/test_alpha_adapters.py`` checks them against CALICE's checkpoint manifests).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence

from torch import nn

from ctrlic.codecs.control.adapters import AdaptedLayer, ConvAdapter, LoRALinear, SubpelConvAdapter
from ctrlic.codecs.control.base import ControlScheme, Knob
from ctrlic.errors import UserError

#: α values of CALICE's RD evaluation (``eval_continuous.py``), lowest rate first
SWEEP = (1.0, 0.9, 0.8, 0.6, 0.45, 0.35, 0.25, 0.15, 0.05, 0.0)


class AlphaAdaptersError(UserError):
    """Adapter patterns that cannot work (invalid, matching nothing or the wrong layer type, none at all)."""


def _is_subpel(module: nn.Module) -> bool:
    return (type(module) is nn.Sequential and len(module) == 2 and type(module[0]) is nn.Conv2d
            and type(module[1]) is nn.PixelShuffle)


#: kind -> (wrapper, type test, what the pattern must match)
KINDS = {
    "lora": (LoRALinear, lambda m: type(m) is nn.Linear, "nn.Linear"),
    "conv": (ConvAdapter, lambda m: type(m) is nn.Conv2d, "nn.Conv2d"),
    "subpel": (SubpelConvAdapter, _is_subpel, "Sequential(Conv2d, PixelShuffle)"),
}


def _compile(kind: str, patterns: Sequence[str]) -> list[re.Pattern]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as err:
            raise AlphaAdaptersError(f"alpha_adapters: {kind} pattern '{pattern}' is not a valid regular "
                                     f"expression ({err})") from None
    return compiled


class AlphaAdapters(ControlScheme):
    """CALICE's continuous rate control: knob ``alpha`` ∈ [0, 1]; rate falls as α rises.

    ``rank`` is the adapter bottleneck width; every adapter output is scaled by ``α · multiplier``
    (8 for STF, 1 for TCM and Cheng2020-attn in the paper). ``lora``, ``conv`` and ``subpel`` are
    lists of full-match module-name regexes (see the module docstring). ``sweep`` lists the α values
    of the RD sweep.
    """

    #: α interpolates between λs: the backbone must be a lossy codec trained on λ·D + R
    requires = frozenset({"rate_distortion"})

    def __init__(self, rank: int = 8, multiplier: float = 1.0, lora: Sequence[str] = (),
                 conv: Sequence[str] = (), subpel: Sequence[str] = (), sweep: Sequence[float] = SWEEP) -> None:
        self.rank = int(rank)
        self.multiplier = float(multiplier)
        self.patterns = {kind: _compile(kind, pats) for kind, pats in
                         (("lora", lora), ("conv", conv), ("subpel", subpel))}
        self.knobs = (Knob("alpha", 0.0, 1.0, default=0.0, sweep=tuple(float(a) for a in sweep),
                           rate_increases=False),)
        self.alpha = 0.0
        self.adapters: dict[str, AdaptedLayer] = {}

    def _matches(self, backbone: nn.Module) -> dict[str, str]:
        """Module name -> kind for every pattern match; checks types, coverage and overlaps."""
        modules = dict(backbone.named_modules())
        found: dict[str, str] = {}
        for kind, compiled in self.patterns.items():
            _, accepts, expected = KINDS[kind]
            for pattern in compiled:
                names = [n for n in modules if pattern.fullmatch(n)]
                if not names:
                    typed = [n for n, m in modules.items() if n and accepts(m)]
                    near = difflib.get_close_matches(pattern.pattern, typed or list(modules)[1:], n=4, cutoff=0.0)
                    have = f"{expected} modules include" if typed else f"it has no {expected}; names look like"
                    raise AlphaAdaptersError(f"alpha_adapters: {kind} pattern '{pattern.pattern}' matches no module "
                                             f"of {type(backbone).__name__} (full match on module names); "
                                             f"{have}: {', '.join(near)}")
                for name in names:
                    if not (accepts(modules[name]) or type(modules[name]) is KINDS[kind][0]):
                        raise AlphaAdaptersError(f"alpha_adapters: {kind} pattern '{pattern.pattern}' matches "
                                                 f"{name!r}, a {type(modules[name]).__name__}; {kind} adapters "
                                                 f"wrap {expected}")
                    if found.get(name, kind) != kind:
                        raise AlphaAdaptersError(f"alpha_adapters: {name!r} is matched by both {found[name]} and "
                                                 f"{kind} patterns")
                    found[name] = kind
        for name in found:
            outer = [o for o in found if name.startswith(o + ".")]
            if outer:
                raise AlphaAdaptersError(f"alpha_adapters: {name!r} lies inside {outer[0]!r}, which is adapted too")
        return found

    def attach(self, backbone: nn.Module) -> None:
        """Wrap every matched module in place; the wrapped weights keep their tensors under new keys.

        A matched module that already is this kind of adapter (attached to load a checkpoint, see
        ``build.merge_adapted``) is taken over as it is.
        """
        super().attach(backbone)
        if not any(self.patterns.values()):
            raise AlphaAdaptersError("alpha_adapters: no lora, conv or subpel patterns given; nothing to adapt "
                                     "(use a preset such as control=alpha_adapters_stf)")
        scale = self.alpha * self.multiplier
        for name, kind in self._matches(backbone).items():
            parent_name, _, child = name.rpartition(".")
            parent = backbone.get_submodule(parent_name)
            wrapper = getattr(parent, child)
            if type(wrapper) is not KINDS[kind][0]:
                wrapper = KINDS[kind][0](wrapper, self.rank, scale)
                setattr(parent, child, wrapper)
            wrapper.scale = scale
            self.adapters[name] = wrapper

    def apply(self, values: Mapping[str, float]) -> None:
        """Set every adapter's scale to ``α · multiplier``."""
        self.alpha = self.resolve(values)["alpha"]
        for adapter in self.adapters.values():
            adapter.scale = self.alpha * self.multiplier

    def attached_parameters(self) -> list[nn.Parameter]:
        return [p for adapter in self.adapters.values() for p in adapter.adapter_parameters()]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Only the adapters train; the anchor stays frozen."""
        return self.attached_parameters()

    def merge(self) -> None:
        """Fold every adapter into its layer at the current α, for inference or export at that α.

        The backbone's keys return to the anchor's names, and the knob is pinned to this α.
        """
        for name, adapter in self.adapters.items():
            parent_name, _, child = name.rpartition(".")
            setattr(self.backbone.get_submodule(parent_name), child, adapter.merge())
        self.adapters = {}
        self.knobs = (dataclasses.replace(self.knobs[0], low=self.alpha, high=self.alpha, default=self.alpha,
                                          sweep=(self.alpha,)),)

r"""β-CALICE (Spadaro et al., CALICE §RDP): a second adapter set stacked on the α-adapters of a
trained variable-rate model, scaled by ``β · multiplier``, trained for rate–distortion–perception.

Each α-adapted layer becomes ``W x + b + (α·m_α)·(x A₁ B₁) + (β·m_β)·(x A₂ B₂)`` (STF: rank 8, m = 8 for
both sets). Only the β set trains; α keeps moving the rate and β trades distortion for realism.
β = 0 is the variable-rate model exactly (its branch is scaled by 0). State-dict keys follow the
authors' ``LoraWithLora``: ``...fc1.linear_with_lora.lora.W_a`` (α set), ``...fc1.lora.W_a`` (β set).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from ctrlic.codecs.control.adapters import StackedAdapter
from ctrlic.codecs.control.alpha_adapters import AlphaAdapters
from ctrlic.codecs.control.base import ControlScheme, Knob

#: β values of the authors' RDP evaluation (``eval_continuous_rdp.py``): the β set off, and at full scale
SWEEP = (0.0, 1.0)


class BetaAdapters(ControlScheme):
    """Knobs ``alpha`` (rate, from the α set) and ``beta`` ∈ [0, 1] (perception; rate rises with β).

    ``alpha`` is the α set: an :class:`AlphaAdapters` or its constructor keywords (the ``control.alpha``
    config node). ``rank`` and ``multiplier`` are the β set's; ``sweep`` lists the β values of the RD
    sweep (one curve per β). The β set sits on every α-adapted layer.
    """

    requires = AlphaAdapters.requires

    def __init__(self, alpha: AlphaAdapters | Mapping, rank: int = 8, multiplier: float = 8.0,
                 sweep: Sequence[float] = SWEEP) -> None:
        self.alpha_set = alpha if isinstance(alpha, AlphaAdapters) else AlphaAdapters(**alpha)
        self.rank = int(rank)
        self.multiplier = float(multiplier)
        beta = Knob("beta", 0.0, 1.0, default=0.0, sweep=tuple(float(b) for b in sweep), rate_increases=True)
        self.knobs = (self.alpha_set.knobs[0], beta)
        self.beta = 0.0
        self.adapters: dict[str, StackedAdapter] = {}

    def attach(self, backbone: nn.Module) -> None:
        """Attach (or take over) the α set, then stack a β branch on each of its adapters."""
        super().attach(backbone)
        self.alpha_set.attach(backbone)
        for name, inner in self.alpha_set.adapters.items():
            parent_name, _, child = name.rpartition(".")
            stacked = StackedAdapter(inner, self.rank, self.beta * self.multiplier)
            setattr(backbone.get_submodule(parent_name), child, stacked)
            self.adapters[name] = stacked

    def apply(self, values: Mapping[str, float]) -> None:
        """α scales the α set (``α · m_α``), β the β set (``β · m_β``)."""
        resolved = self.resolve(values)
        self.alpha_set.apply({"alpha": resolved["alpha"]})
        self.beta = resolved["beta"]
        for adapter in self.adapters.values():
            adapter.scale = self.beta * self.multiplier

    def adapter_sets(self) -> dict[str, list[nn.Parameter]]:
        """The parameters of each adapter set, by the knob that scales it."""
        return {"alpha": self.alpha_set.attached_parameters(),
                "beta": [p for adapter in self.adapters.values() for p in adapter.adapter_parameters()]}

    def parameter_groups(self) -> dict[str, int]:
        """Parameters per adapter set (for ``task=info``): the frozen α set and the trained β set."""
        return {f"{name} set": sum(p.numel() for p in params) for name, params in self.adapter_sets().items()}

    def attached_parameters(self) -> list[nn.Parameter]:
        return [p for params in self.adapter_sets().values() for p in params]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Only the β set trains; the anchor and the α set stay frozen."""
        return self.adapter_sets()["beta"]

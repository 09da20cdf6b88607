"""QVRF's quantization regulator inside the Gaussian conditional (Tong et al., ICIP 2023; bytedance/QRAF).

QVRF scales y by a scalar ``a`` before rounding, i.e. it rounds with step ``1/a``: symbols are
``round((y − μ)·a)``, the CDF index comes from ``σ·a`` and ``ŷ = symbols/a + μ``. Doing this inside
the Gaussian conditional, which keeps CompressAI's buffers and state-dict keys, gives every coder that
quantizes, indexes and codes through ``gaussian_conditional`` (wavefront, mean-scale, channel-wise
autoregressive) the regulator without code of its own. At ``a = 1`` the coded symbols, indexes and
ŷ equal those of CompressAI's Gaussian conditional.
"""

from __future__ import annotations

import torch
from compressai.entropy_models import GaussianConditional
from compressai.ops import quantize_ste
from torch import Tensor

#: the training proxies of QVRF: "noise" (QRAF stage 2: ŷ = (a·y + U)/a) and "ste" (stage 3:
#: ŷ = STE((y − μ)·a)/a + μ); in both, 1/a is detached, as in the authors' code
PROXIES = ("noise", "ste")
#: CompressAI's dynamic buffers, rebuilt by ``update()`` (their shapes follow the checkpoint)
TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


class ScaledGaussianConditional(GaussianConditional):
    """A Gaussian conditional quantizing with step ``1/regulator``; ``proxy`` picks the training proxy.

    ``regulator`` is a plain attribute (a 0-dim tensor, possibly carrying a gradient in training), not
    a buffer: the state dict is CompressAI's. The control scheme sets it.
    """

    def __init__(self, *args, proxy: str = "noise", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if proxy not in PROXIES:
            raise ValueError(f"qvrf proxy {proxy!r}; choose one of {', '.join(PROXIES)}")
        self.proxy = proxy
        self.regulator = torch.tensor(1.0)

    @classmethod
    def replacing(cls, conditional: GaussianConditional, proxy: str = "noise") -> ScaledGaussianConditional:
        """A scaled Gaussian conditional holding ``conditional``'s settings and buffers (tables included)."""
        bound = conditional.likelihood_lower_bound.bound if conditional.use_likelihood_bound else None
        scaled = cls(None, scale_bound=float(conditional.lower_bound_scale.bound), tail_mass=conditional.tail_mass,
                     likelihood_bound=float(bound) if bound is not None else 0.0,
                     entropy_coder=conditional.entropy_coder.name,
                     entropy_coder_precision=conditional.entropy_coder_precision, proxy=proxy)
        state = conditional.state_dict()
        for name in TABLES:
            scaled.register_buffer(name, torch.empty_like(state[name]))
        scaled.to(state["scale_table"].device)
        scaled.load_state_dict(state)
        return scaled.train(conditional.training)

    def _a(self, like: Tensor) -> Tensor:
        return self.regulator.to(like.device, like.dtype)

    def quantize(self, inputs: Tensor, mode: str, means: Tensor | None = None) -> Tensor:
        """CompressAI's modes on the grid of step 1/a; "noise" is the training proxy ``self.proxy``."""
        if mode not in ("noise", "dequantize", "symbols"):
            raise ValueError(f'Invalid quantization mode: "{mode}"')
        a = self._a(inputs)
        if mode == "noise" and self.proxy == "noise":  # (a·y + U)/a, no mean (QRAF, STF-QVRF stage 2)
            return (inputs * a + torch.empty_like(inputs).uniform_(-0.5, 0.5)) / a.detach()
        residual = inputs * a if means is None else (inputs - means) * a
        if mode == "symbols":
            return torch.round(residual).int()
        rounded = quantize_ste(residual) if mode == "noise" else torch.round(residual)  # noise here: proxy "ste"
        return rounded / a.detach() if means is None else rounded / a.detach() + means

    def dequantize(self, inputs: Tensor, means: Tensor | None = None, dtype: torch.dtype = torch.float) -> Tensor:
        """``symbols/a + μ``."""
        values = inputs.type_as(means) if means is not None else inputs.type(dtype)
        values = values / self._a(values)
        return values + means if means is not None else values

    def forward(self, inputs: Tensor, scales: Tensor, means: Tensor | None = None,
                training: bool | None = None) -> tuple[Tensor, Tensor]:
        """Likelihoods of the scaled residual ``(y − μ)·a`` under scale ``σ·a`` (outputs back on y's scale)."""
        training = self.training if training is None else training
        a = self._a(inputs)
        residual = inputs * a if means is None else (inputs - means) * a
        outputs = super().quantize(residual, "noise" if training else "dequantize")  # on the scaled residual
        likelihood = self._likelihood(outputs, scales * a)
        if self.use_likelihood_bound:
            likelihood = self.likelihood_lower_bound(likelihood)
        outputs = outputs / a.detach()
        return (outputs if means is None else outputs + means), likelihood

    def coding_scales(self, scales: Tensor) -> Tensor:
        """The scales the coder's tables are indexed by: ``σ·a`` (the residual is coded scaled by a)."""
        return scales * self._a(scales)

    def build_indexes(self, scales: Tensor) -> Tensor:
        return super().build_indexes(self.coding_scales(scales))


def coding_scales(conditional: GaussianConditional, scales: Tensor) -> Tensor:
    """The scales a conditional's coder codes under (before the lower bound): σ·a for QVRF's scaled one, else σ."""
    return conditional.coding_scales(scales) if isinstance(conditional, ScaledGaussianConditional) else scales


def straight_through(conditional: GaussianConditional, y: Tensor, means: Tensor) -> Tensor:
    """The channel-wise autoregressive coders' ŷ for training and the forward pass.

    ``round(y − μ) + μ`` with a straight-through gradient (STF, TCM); a scaled Gaussian conditional
    gives its own training proxy in training and ``round((y − μ)·a)/a + μ`` otherwise.
    """
    if isinstance(conditional, ScaledGaussianConditional):
        return conditional.quantize(y, "noise" if conditional.training else "dequantize", means)
    return quantize_ste(y - means) + means

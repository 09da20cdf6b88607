"""Scaled low-rank adapters around frozen layers, as in CALICE (Spadaro et al., ACM TOMM 2026).

Each wrapper keeps the wrapped layer under the name CALICE uses (``linear``, ``conv``,
``subpel_conv``) so the released checkpoints load strictly, and adds ``scale · adapter(x)`` to its
output. ``scale`` is a plain float (not in the state dict) that the control scheme sets to
``α · multiplier``; at scale 0 the output is the wrapped layer's, bit for bit. ``merge()`` folds the
adapter into a plain layer for one fixed scale. :class:`StackedAdapter` puts a second branch of the
same kind on an adapted layer (β-CALICE): ``inner(x) + scale₂ · branch₂(x)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor, nn


def _geometry(conv: nn.Conv2d) -> dict:
    """The spatial arguments an adapter conv copies so that its output lines up with ``conv``'s."""
    return {"kernel_size": conv.kernel_size, "stride": conv.stride, "padding": conv.padding,
            "dilation": conv.dilation, "padding_mode": conv.padding_mode}


def _factory(layer: nn.Module) -> dict:
    weight = layer.weight
    return {"device": weight.device, "dtype": weight.dtype}


def _dense_kernel(conv: nn.Conv2d) -> Tensor:
    """``conv.weight`` as an ungrouped kernel [out, in, kh, kw] (block-diagonal when groups > 1)."""
    weight, groups = conv.weight, conv.groups
    if groups == 1:
        return weight
    out_g, in_g = weight.shape[0] // groups, weight.shape[1]
    dense = weight.new_zeros(weight.shape[0], in_g * groups, *weight.shape[2:])
    for g in range(groups):
        dense[g * out_g:(g + 1) * out_g, g * in_g:(g + 1) * in_g] = weight[g * out_g:(g + 1) * out_g]
    return dense


def _bias(conv: nn.Conv2d) -> Tensor:
    return conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)


def _plain_conv(template: nn.Conv2d, weight: Tensor, bias: Tensor) -> nn.Conv2d:
    """An ungrouped conv with ``template``'s geometry holding ``weight`` and ``bias``."""
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], bias=True, **_geometry(template), **_factory(template))
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return conv


def skip_branch(scale: float) -> bool:
    """A branch scaled by 0 adds nothing: skip it when no gradient is taken (coding, evaluation at α = 0).

    While training it still runs, so its parameters get (zero) gradients and DDP sees every parameter used.
    """
    return scale == 0 and not torch.is_grad_enabled()


class AdaptedLayer(nn.Module):
    """A frozen layer plus ``scale ·`` a trainable low-rank branch."""

    #: attribute holding the adapter branch (CALICE's key names: ``lora`` or ``adapter``)
    branch = "adapter"
    #: attribute holding the wrapped layer (CALICE's key names: ``linear``, ``conv``, ``subpel_conv``)
    wrapped = "conv"

    def __init__(self, scale: float = 0.0) -> None:
        super().__init__()
        self.scale = float(scale)

    @staticmethod
    def branch_output(branch: nn.Module, x: Tensor) -> Tensor:
        """The unscaled output of an adapter branch of this kind."""
        return branch(x)

    def forward(self, x: Tensor) -> Tensor:
        out = getattr(self, self.wrapped)(x)
        if skip_branch(self.scale):
            return out
        return out + self.scale * self.branch_output(getattr(self, self.branch), x)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """The parameters of the adapter branch only."""
        return list(getattr(self, self.branch).parameters())

    def merge(self) -> nn.Module:
        """A plain layer computing the same function at the current ``scale``."""
        raise NotImplementedError


class LoRALinear(AdaptedLayer):
    """``y = linear(x) + s·(x W_a) W_b``: W_a [in, r] ~ N(0, 1/r), W_b [r, out] = 0, no 1/r factor."""

    branch = "lora"
    wrapped = "linear"

    def __init__(self, linear: nn.Linear, rank: int, scale: float = 0.0) -> None:
        super().__init__(scale)
        self.linear = linear
        factory = _factory(linear)
        self.lora = nn.ParameterDict({
            "W_a": nn.Parameter(torch.randn(linear.in_features, rank, **factory) / math.sqrt(rank)),
            "W_b": nn.Parameter(torch.zeros(rank, linear.out_features, **factory)),
        })

    @staticmethod
    def branch_output(branch: nn.ParameterDict, x: Tensor) -> Tensor:
        return (x @ branch["W_a"]) @ branch["W_b"]

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """``W' = W + s·(W_a W_b)ᵀ`` (exact)."""
        linear = self.linear
        merged = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None,
                           **_factory(linear))
        merged.weight.copy_(linear.weight + self.scale * (self.lora["W_a"] @ self.lora["W_b"]).T)
        if linear.bias is not None:
            merged.bias.copy_(linear.bias)
        return merged


class ConvAdapter(AdaptedLayer):
    """``y = conv(x) + s·conv2(conv1(x))``: conv1 a k×k conv to ``rank`` channels with the wrapped
    conv's geometry (groups = rank when it divides the input channels, else 1), conv2 a 1×1 conv.

    Both keep PyTorch's default init, as in CALICE: the branch is non-zero from the start, and
    α = 0 still gives the anchor because its output is scaled by 0.
    """

    wrapped = "conv"

    def __init__(self, conv: nn.Conv2d, rank: int, scale: float = 0.0) -> None:
        super().__init__(scale)
        self.conv = conv
        groups = rank if conv.in_channels % rank == 0 else 1
        factory = _factory(conv)
        self.adapter = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(conv.in_channels, rank, groups=groups, **_geometry(conv), **factory),
            conv2=nn.Conv2d(rank, conv.out_channels, 1, **factory),
        ))

    @torch.no_grad()
    def merge(self) -> nn.Conv2d:
        """A 1×1 conv after a k×k conv is one k×k conv: kernel ``W2·W1``, bias ``W2·b1 + b2``."""
        conv1, conv2 = self.adapter.conv1, self.adapter.conv2
        w2 = conv2.weight[:, :, 0, 0]
        kernel = torch.einsum("oj,jikl->oikl", w2, _dense_kernel(conv1))
        bias = w2 @ conv1.bias + conv2.bias
        return _plain_conv(self.conv, _dense_kernel(self.conv) + self.scale * kernel,
                           _bias(self.conv) + self.scale * bias)


class SubpelConvAdapter(AdaptedLayer):
    """Adapter on CompressAI's ``subpel_conv3x3`` (conv to out·f² channels, then PixelShuffle(f)).

    The branch is conv1 (k×k, in → rank·f², groups = rank), PixelShuffle(f), conv2 (1×1, rank → out):
    ``y = subpel_conv(x) + s·branch(x)``.
    """

    wrapped = "subpel_conv"

    def __init__(self, subpel_conv: nn.Sequential, rank: int, scale: float = 0.0) -> None:
        super().__init__(scale)
        self.subpel_conv = subpel_conv
        conv, factor = subpel_conv[0], subpel_conv[1].upscale_factor
        out_channels = conv.out_channels // factor**2
        factory = _factory(conv)
        self.adapter = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(conv.in_channels, rank * factor**2, groups=rank, **_geometry(conv), **factory),
            shuffle=nn.PixelShuffle(factor),
            conv2=nn.Conv2d(rank, out_channels, 1, **factory),
        ))

    @torch.no_grad()
    def merge(self) -> nn.Sequential:
        """Fold the branch into the conv before the shuffle.

        PixelShuffle puts channel ``c·f² + p`` at sub-position ``p`` of output channel ``c``, and a
        1×1 conv acts per position, so conv2 becomes a map from channels ``j·f² + p`` of conv1 to
        channels ``o·f² + p`` of the pre-shuffle conv.
        """
        conv, shuffle = self.subpel_conv[0], self.subpel_conv[1]
        conv1, conv2 = self.adapter.conv1, self.adapter.conv2
        sub = shuffle.upscale_factor**2
        w2 = conv2.weight[:, :, 0, 0]  # [out, rank]
        w1 = _dense_kernel(conv1).unflatten(0, (w2.shape[1], sub))  # [rank, f², in, kh, kw]
        kernel = torch.einsum("oj,jpikl->opikl", w2, w1).flatten(0, 1)
        bias = (w2 @ conv1.bias.view(-1, sub) + conv2.bias[:, None]).flatten()
        merged = _plain_conv(conv, _dense_kernel(conv) + self.scale * kernel, _bias(conv) + self.scale * bias)
        return nn.Sequential(merged, nn.PixelShuffle(shuffle.upscale_factor))


#: where a stacked adapter keeps the adapted layer it wraps (β-CALICE's ``LoraWithLora`` key for LoRA)
INNER_NAMES = {LoRALinear: "linear_with_lora", ConvAdapter: "conv_with_adapter",
               SubpelConvAdapter: "subpel_conv_with_adapter"}


class StackedAdapter(AdaptedLayer):
    """A second adapter branch on an adapted layer: ``y = inner(x) + s₂·branch₂(x)`` (β-CALICE).

    ``inner`` (an α-adapted layer, its own scale set separately) is kept under ``linear_with_lora``
    for LoRA, as in the authors' ``LoraWithLora``, so β-CALICE keys read ``fc1.linear_with_lora.lora.W_a``
    (α set) and ``fc1.lora.W_a`` (β set). The new branch has the inner adapter's kind and init.
    """

    def __init__(self, inner: AdaptedLayer, rank: int, scale: float = 0.0) -> None:
        super().__init__(scale)
        kind = type(inner)
        if kind not in INNER_NAMES:
            raise ValueError(f"cannot stack an adapter on a {kind.__name__}; stackable: "
                             f"{', '.join(k.__name__ for k in INNER_NAMES)}")
        self.kind, self.rank = kind, int(rank)
        self.inner_name, self.branch = INNER_NAMES[kind], kind.branch
        setattr(self, self.inner_name, inner)
        fresh = kind(getattr(inner, kind.wrapped), self.rank)  # a branch of the same kind and init
        setattr(self, self.branch, getattr(fresh, kind.branch))

    @property
    def inner(self) -> AdaptedLayer:
        return getattr(self, self.inner_name)

    def forward(self, x: Tensor) -> Tensor:
        out = self.inner(x)
        if skip_branch(self.scale):
            return out
        return out + self.scale * self.kind.branch_output(getattr(self, self.branch), x)

    @torch.no_grad()
    def merge(self) -> nn.Module:
        """Fold the inner adapter at its scale, then this branch at this scale (both exact)."""
        outer = self.kind(self.inner.merge(), self.rank, self.scale)
        setattr(outer, self.branch, getattr(self, self.branch))
        return outer.merge()

"""The scale table of CompressAI's ``GaussianConditional``: which CDF codes a symbol of a given scale.

``scale_indexes`` is ``GaussianConditional.build_indexes`` in one binary search instead of one pass
over the scales per table entry (64), with the same result bit for bit: the index of a scale is the
number of table entries (the last excluded) strictly below its lower-bounded value.

A finer table (``levels``) is a coding option: CompressAI's 64 log-spaced scales round every scale up
by up to 13 %, which costs rate where most scales sit near the lower bound. The weights keep their
64-level table (and their fingerprint); coding swaps in CDFs built for ``levels`` scales over the same
range, and the container records the number so the decoder builds the same.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator

import torch
from compressai.entropy_models import GaussianConditional
from torch import Tensor, nn

from ctrlic.codecs.entropy.gaussian import coding_scales
from ctrlic.errors import UserError

#: CompressAI's table (compressai.models.base.get_scale_table): 64 scales, log-spaced over [0.11, 256]
LEVELS, SCALE_MIN, SCALE_MAX = 64, 0.11, 256.0
#: the finest table a bitstream may ask for (a decoder builds it, so it is bounded)
MAX_LEVELS = 1024
#: the container extras key recording a table other than the default (absent: 64 levels)
EXTRAS_KEY = "sl"
_BUFFERS = ("scale_table", "_quantized_cdf", "_offset", "_cdf_length")


class ScaleTableError(UserError):
    """A scale-table size this backbone cannot code with."""


def scale_indexes(conditional, scales: Tensor) -> Tensor:
    """int32 CDF indexes of ``scales`` under ``conditional``'s table (``build_indexes``, faster); QVRF's
    scaled conditional codes on the scale σ·a (``gaussian.coding_scales``)."""
    scales = conditional.lower_bound_scale(coding_scales(conditional, scales))
    table = conditional.scale_table[:-1]
    dtype = torch.promote_types(scales.dtype, table.dtype)
    return torch.bucketize(scales.to(dtype), table.to(dtype), out_int32=True)


def scale_table(levels: int) -> Tensor:
    """``levels`` scales log-spaced over CompressAI's range (64 gives its table exactly)."""
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), levels))


def conditionals(backbone: nn.Module) -> list[GaussianConditional]:
    return [m for m in backbone.modules() if isinstance(m, GaussianConditional)]


def check_levels(levels: int, backbone: nn.Module) -> int:
    """A valid table size for ``backbone`` (the default always is)."""
    if levels == LEVELS:
        return levels
    if not LEVELS <= levels <= MAX_LEVELS:
        raise ScaleTableError(f"scale_levels={levels}: choose between {LEVELS} (CompressAI's table) and {MAX_LEVELS}")
    if not conditionals(backbone):
        raise ScaleTableError(f"scale_levels={levels}: {type(backbone).__name__} codes no Gaussian latents; "
                              f"keep the default {LEVELS}")
    return levels


def _finer(conditional: GaussianConditional, levels: int) -> dict[str, Tensor]:
    """The table buffers of ``conditional`` rebuilt for ``levels`` scales (kept on the module once built)."""
    device, dtype = conditional.scale_table.device, conditional.scale_table.dtype
    key = (levels, device, dtype)
    cache = conditional.__dict__.setdefault("_ctrlic_scale_tables", {})
    if key not in cache:
        model = copy.deepcopy(conditional)
        model.update_scale_table(scale_table(levels).to(device, dtype), force=True)
        cache[key] = {name: getattr(model, name) for name in _BUFFERS}
    return cache[key]


@contextlib.contextmanager
def levels_of(backbone: nn.Module, levels: int) -> Iterator[None]:
    """Inside the block every ``GaussianConditional`` of ``backbone`` codes with a ``levels``-scale table."""
    if levels == LEVELS:
        yield
        return
    saved = [(c, {name: getattr(c, name) for name in _BUFFERS}) for c in conditionals(backbone)]
    try:
        for conditional, _ in saved:
            for name, value in _finer(conditional, levels).items():
                setattr(conditional, name, value)
        yield
    finally:
        for conditional, buffers in saved:
            for name, value in buffers.items():
                setattr(conditional, name, value)

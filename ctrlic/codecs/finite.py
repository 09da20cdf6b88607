"""Numbers a codec can code with: finite weights, entropy models whose tables fit the coder, finite latents.

Entropy coders are C++/Rust loops that trust their input: NaN or overflowing values make CompressAI's
rANS encoder spin forever (Ctrl-C is not seen inside it), and huge entropy-bottleneck quantiles make
``update()`` build tables of millions of entries. These checks run where weights are prepared for
coding (``Codec.prepare``, so at every load) and where latents are handed to a coder, and fail in one line.
"""

from __future__ import annotations

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from torch import nn

from ctrlic.errors import UserError

#: most entries one CDF table may have: 16-bit tables give every entry a frequency of at least 1
MAX_TABLE_LENGTH = (1 << 16) - 2


class CodingRangeError(UserError):
    """Weights or latents the entropy coder cannot work with (NaN, infinite, or far out of range)."""


def check_weights(backbone: nn.Module) -> None:
    """Refuse NaN/infinite weights and entropy bottlenecks whose quantiles span more than a table can hold."""
    with torch.no_grad():
        for name, tensor in backbone.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CodingRangeError(f"the model's weights hold NaN or infinite values ({name}): the file is "
                                       "damaged or its training diverged; use another checkpoint")
        for name, module in backbone.named_modules():
            if isinstance(module, EntropyBottleneck):
                q = module.quantiles.detach()
                span = float((q[:, 0, 2] - q[:, 0, 0]).abs().max()) if q.numel() else 0.0
                if span > MAX_TABLE_LENGTH:
                    raise CodingRangeError(f"the entropy model {name} spans {span:.3g} values, more than the "
                                           f"{MAX_TABLE_LENGTH} a 16-bit table holds: the weights are damaged "
                                           "(far too large); use another checkpoint")


def check_finite_array(values: np.ndarray, what: str) -> None:
    """Refuse NaN or infinite model outputs before they become a coder's probability tables."""
    if not np.isfinite(values).all():
        raise CodingRangeError(f"the model's {what} hold NaN or infinite values: its weights are damaged; "
                               "use another checkpoint")

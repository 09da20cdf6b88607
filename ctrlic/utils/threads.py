"""torch's intra-op thread count set for a block and restored after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block (None: unchanged)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_thread() -> contextlib.AbstractContextManager[None]:
    """One torch thread inside the block: float reductions in the same order whatever the machine's setting
    (the lossless coder's probabilities must be identical on both sides)."""
    return torch_threads(1)

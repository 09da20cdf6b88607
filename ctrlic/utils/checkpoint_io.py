"""Checkpoints written atomically: a run killed mid-save leaves the previous checkpoint intact."""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ctrlic.utils.atomic_file import atomic_write

#: prefix of the temporary files a save writes before renaming them (``resume=auto`` ignores them)
PARTIAL_PREFIX = ".partial-"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file in the target folder, then renamed (``utils.atomic_file``):
    ``path`` always holds a whole checkpoint, the old one or the new one, never half of the new one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        with atomic_write(path, prefix=PARTIAL_PREFIX) as tmp:
            torch.save(checkpoint, tmp)

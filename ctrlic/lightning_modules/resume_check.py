"""Before training resumes from ``ckpt_path``: is it a training checkpoint this run can continue?

Lightning would fail deep inside ``fit`` (a traceback) on a text file, an exported codec file, or a
checkpoint of another architecture or training module; this says which, in one line, first.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning as L
from torch import Tensor

from ctrlic.codecs.bitstream import config_hash
from ctrlic.codecs.checkpoint import (
    DYNAMIC_BUFFERS,
    NO_TRUST,
    CheckpointError,
    PickleTrust,
    describe_mismatch,
    read_checkpoint,
)
from ctrlic.lightning_modules.checkpoint import check_checkpoint_format, module_name, training_record

#: what Lightning writes into every training checkpoint besides the weights
_LIGHTNING_KEYS = ("state_dict", "loops", "optimizer_states")


class ResumeCheckpointError(CheckpointError):
    """``ckpt_path`` is not a training checkpoint of this run's architecture and training module."""


def _describe(arch: Mapping) -> str:
    control = (arch.get("control") or {}).get("_target_", "none")
    return f"{arch.get('name')} size {arch.get('size')}, control {str(control).rsplit('.', 1)[-1]}"


def check_resume_checkpoint(path: str | Path, module: L.LightningModule, trust: PickleTrust = NO_TRUST) -> None:
    """Refuse ``path`` unless training ``module`` can resume from it (read without running code)."""
    obj = read_checkpoint(path, trust)
    hint = "resume from a training checkpoint of this run's experiment (<run dir>/checkpoints/last.ckpt)"
    if isinstance(obj, Mapping) and "arch" in obj and "format" in obj:
        raise ResumeCheckpointError(f"ckpt_path={path} is an exported codec file (weights only, no optimizer "
                                    f"or step): {hint}, or start a new training from its weights with "
                                    f"backbone.checkpoint={path}")
    record = training_record(obj)
    if record is None or not all(k in obj for k in _LIGHTNING_KEYS):
        found = ", ".join(map(repr, list(obj)[:6])) if isinstance(obj, Mapping) else type(obj).__name__
        raise ResumeCheckpointError(f"ckpt_path={path} is not a ctrlic training checkpoint (it holds {found}): "
                                    f"{hint}; plain weights load with backbone.checkpoint={path}")
    check_checkpoint_format(record, path)
    recorded, ours = record.get("arch"), module.codec.arch
    if not isinstance(recorded, Mapping) or config_hash(recorded) != config_hash(ours):
        theirs = _describe(recorded) if isinstance(recorded, Mapping) else "none recorded"
        raise ResumeCheckpointError(f"ckpt_path={path} was trained with another architecture ({theirs}) than "
                                    f"this run ({_describe(ours)}): resume with the experiment and overrides it "
                                    "was trained with (its run directory's provenance/config.yaml)")
    trained_by = record.get("module")
    if trained_by is not None and trained_by != module_name(module):
        raise ResumeCheckpointError(f"ckpt_path={path} was written by {trained_by}, not by this run's "
                                    f"{module_name(module)}: resume with the module= it was trained with")
    state = obj["state_dict"]
    if not all(isinstance(v, Tensor) for v in state.values()):
        raise ResumeCheckpointError(f"ckpt_path={path}: its state_dict holds values that are not tensors; the "
                                    "file is corrupted")
    problem = describe_mismatch(_fixed_shapes(state), _fixed_shapes(module.state_dict()))
    if problem:
        raise ResumeCheckpointError(f"ckpt_path={path} does not fit this run's {type(module).__name__}: {problem}")


def _fixed_shapes(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` without the entropy tables, whose shapes depend on whether ``update()`` ran."""
    return {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in DYNAMIC_BUFFERS}

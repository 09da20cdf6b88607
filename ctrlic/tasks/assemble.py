"""task=assemble: join the prompt sets trained by several runs (one λ each) into one codec file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig

from ctrlic.codecs.build import build_from_architecture, export_codec
from ctrlic.codecs.checkpoint import CheckpointError, load_weights, read_checkpoint
from ctrlic.codecs.codec_file import CODEC_SUFFIX
from ctrlic.codecs.control.layer_prompts import PROMPT_SETS
from ctrlic.codecs.recorded import check_architecture
from ctrlic.lightning_modules.checkpoint import (
    RECORD,
    check_checkpoint_format,
    codec_weights,
    training_record,
)
from ctrlic.tasks.common import log


class AssembleError(CheckpointError):
    """Checkpoints that cannot be joined (different anchors or architectures, missing prompt sets)."""


def find_checkpoints(inputs: Sequence[str | Path]) -> list[Path]:
    """Checkpoint files as given, or ``**/checkpoints/last.ckpt`` under each directory given."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            hits = sorted(item.glob("**/checkpoints/last.ckpt"))
            if not hits:
                raise AssembleError(f"assemble: no checkpoints/last.ckpt under {item}")
            found.extend(hits)
        elif item.is_file():
            found.append(item)
        else:
            raise AssembleError(f"assemble: {item} does not exist")
    if not found:
        raise AssembleError("assemble.inputs is empty: give the checkpoints (or run directories) to join")
    return found


def _backbone_state(checkpoint: Mapping, source: Path) -> dict[str, torch.Tensor]:
    record = training_record(checkpoint)
    state = codec_weights(checkpoint) if record is not None else {}
    if not state or "trained_prompt_sets" not in record:
        raise AssembleError(f"assemble: {source} is not a checkpoint of module=prompt training")
    return state


def assemble_prompt_sets(paths: Sequence[Path]):
    """One codec with every prompt set taken from the run that trained it; all runs share one anchor."""
    codec, anchor, done = None, None, {}
    for path in paths:
        checkpoint = read_checkpoint(path)
        state = _backbone_state(checkpoint, path)
        arch = checkpoint[RECORD]["arch"]
        check_checkpoint_format(checkpoint[RECORD], path)
        check_architecture(arch, path)
        if codec is None:
            codec = build_from_architecture(arch)
            load_weights(codec.backbone, state)
            anchor = {k: v for k, v in state.items() if not k.startswith(PROMPT_SETS)}
            first = path
        elif arch != codec.arch:
            raise AssembleError(f"assemble: {path} has another architecture than {first}")
        frozen = {k: v for k, v in state.items() if not k.startswith(PROMPT_SETS)}
        if frozen.keys() != anchor.keys() or any(not torch.equal(frozen[k], anchor[k]) for k in anchor):
            raise AssembleError(f"assemble: {path} was trained on another anchor than {first}")
        for index in checkpoint[RECORD]["trained_prompt_sets"]:
            key = f"{PROMPT_SETS}.{index}."
            codec.control.prompt_set(index).load_state_dict(
                {k[len(key):]: v for k, v in state.items() if k.startswith(key)})
            done[index] = path
    missing = sorted(set(codec.control.set_indices) - set(done))
    if missing:
        raise AssembleError(f"assemble: no run trained prompt set(s) {missing} (knob values); got {sorted(done)}")
    return codec, done


def assemble(cfg: DictConfig, run_dir: Path) -> Path:
    settings = cfg.get("assemble") or {}
    codec, sources = assemble_prompt_sets(find_checkpoints(settings.get("inputs") or []))
    path = export_codec(codec, settings.get("output") or run_dir / f"{codec.name}{CODEC_SUFFIX}")
    for index, source in sorted(sources.items()):
        log.info("prompt=%d (λ=%g) from %s", index, codec.control.lmbda(index), source)
    log.info("assembled codec %s (weights %s): %s", codec.name, codec.fingerprint.hex(), path)
    return path

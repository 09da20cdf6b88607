"""Progressive prompt tuning (LPM): the λ₀ anchor frozen, one prompt set per λᵢ trained after another."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ctrlic.codecs.codec import Codec
from ctrlic.codecs.control.layer_prompts import LayerPrompts
from ctrlic.errors import UserError
from ctrlic.lightning_modules.checkpoint import RECORD
from ctrlic.lightning_modules.rd import RDModule


class PromptTrainingError(UserError):
    """A prompt-training config that does not fit the codec (no prompt sets, unknown set)."""


def progressive_order(lambdas: Sequence[float], anchor: int, sets: Sequence[int]) -> list[int]:
    """The sets in training order: nearest to λ₀ (in log λ) first, so each starts next to a trained one."""
    return sorted(sets, key=lambda i: (abs(math.log(lambdas[i] / lambdas[anchor])), i))


def warm_start_source(order: Sequence[int], position: int, anchor: int) -> int | None:
    """The already-trained set next to ``order[position]`` on the same side of λ₀ (None: none yet)."""
    target = order[position]
    side = [i for i in order[:position] if (i > anchor) == (target > anchor)]
    return min(side, key=lambda i: abs(i - target)) if side else None


class ProgressivePromptModule(RDModule):
    """Train the prompt sets of a ``layer_prompts`` codec one after another in one run.

    Set k (in :func:`progressive_order`) trains during steps [k·S, (k+1)·S) with S = ``steps_per_set``
    (default: ``trainer.max_steps`` split evenly) at its own λ; with ``warm_start`` it starts from the
    nearest trained set on the same side of λ₀. ``sets`` (knob values) restricts the run to some sets,
    e.g. one per job of a multirun joined later by ``task=assemble``. Validation covers λ₀ and every set.
    """

    def __init__(self, codec: Codec, sets: Sequence[int] | None = None, steps_per_set: int | None = None,
                 warm_start: bool = True, **kwargs) -> None:
        scheme = codec.control
        if not isinstance(scheme, LayerPrompts):
            raise PromptTrainingError(f"module=prompt trains layer prompts; control is {type(scheme).__name__} "
                                      "(use control=layer_prompts_tic)")
        chosen = [int(i) for i in (sets if sets is not None else scheme.set_indices)]
        unknown = sorted(set(chosen) - set(scheme.set_indices))
        if unknown or not chosen:
            raise PromptTrainingError(f"module.sets={chosen}: the prompt sets are {list(scheme.set_indices)} "
                                      f"(knob values; {scheme.anchor_index} is λ₀, the anchor)")
        self.order = progressive_order(scheme.all_lambdas, scheme.anchor_index, chosen)
        val = [{"prompt": float(i)} for i in sorted([scheme.anchor_index, *self.order])]
        super().__init__(codec, lmbda=scheme.anchor_lambda, val_knobs=val, **kwargs)
        self.steps_per_set, self.warm_start = steps_per_set, warm_start

    @property
    def scheme(self):
        return self.codec.control

    def _set_length(self) -> int:
        if self.steps_per_set:
            return int(self.steps_per_set)
        return max(1, (self.trainer.max_steps or len(self.order)) // len(self.order))

    def _position(self) -> int:
        return min(self.global_step // self._set_length(), len(self.order) - 1)

    def training_knobs(self) -> dict[str, float]:
        position = self._position()
        if self.warm_start and self.global_step == position * self._set_length():
            source = warm_start_source(self.order, position, self.scheme.anchor_index)
            if source is not None:
                target = self.scheme.prompt_set(self.order[position])
                target.load_state_dict(self.scheme.prompt_set(source).state_dict())
        return {"prompt": float(self.order[position])}

    def lmbda_for(self, knobs: Mapping[str, float]) -> float:
        return self.scheme.lmbda(knobs["prompt"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        trained = self.order[: self._position() + 1] if self.global_step else []
        checkpoint[RECORD]["trained_prompt_sets"] = sorted(trained)

"""Learning-rate schedules sized by ``trainer.max_steps``, chosen by ``conf/module/scheduler/*.yaml``.

Each config is ``_partial_``: the module calls it with the optimizer and the run's ``max_steps`` and
gets Lightning's scheduler dict back (``scheduler``, ``interval``, ``frequency``, ``monitor``).
A new schedule is a function here with this signature and a config file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.optim import Optimizer


def _lightning(scheduler, interval: str, monitor: str | None = None, every: int = 1) -> dict:
    config = {"scheduler": scheduler, "interval": interval, "frequency": every}
    if monitor:
        config["monitor"] = monitor
    return config


def _total(max_steps: int | None) -> int:
    return max(1, max_steps if max_steps and max_steps > 0 else 1)


def cosine(optimizer: Optimizer, max_steps: int | None, eta_min: float = 0.0, interval: str = "step",
           steps_per_epoch: int | None = None) -> dict:
    """Cosine annealing from the optimizer's lr to ``eta_min`` over ``max_steps``; with ``steps_per_epoch``
    the lr moves once per epoch of that many steps, as the authors' per-epoch ``scheduler.step()``."""
    every = steps_per_epoch or 1
    total = math.ceil(_total(max_steps) / every)
    return _lightning(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=eta_min),
                      interval, every=every)


def multistep(optimizer: Optimizer, max_steps: int | None, milestones: Sequence[float] = (0.9,), gamma: float = 0.1,
              interval: str = "step") -> dict:
    """The lr times ``gamma`` at each milestone, given as a fraction of ``max_steps``."""
    total = _total(max_steps)
    steps = [max(1, math.floor(f * total)) for f in milestones]
    return _lightning(torch.optim.lr_scheduler.MultiStepLR(optimizer, steps, gamma=gamma), interval)


def plateau(optimizer: Optimizer, max_steps: int | None, factor: float = 0.3, patience: int = 4,
            monitor: str = "val/loss", interval: str = "step", frequency: int = 1) -> dict:
    """The lr times ``factor`` when ``monitor`` has not improved for ``patience`` checks, one check every
    ``frequency`` steps (``trainer.val_check_interval``: once per validation)."""
    return _lightning(torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=factor, patience=patience),
                      interval, monitor, every=int(frequency))

"""Hydra callback: one training per ``hydra.run.dir``, checked before Hydra writes anything into it."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ctrlic.utils.run_lock import RunDirBusyError, run_dir_lock

log = logging.getLogger("ctrlic")


class TrainingRunLock(Callback):
    """Holds ``<hydra.run.dir>/.train.lock`` from the start of a ``task=train`` run to its end.

    A second training started into the same directory stops with one line and exit code 2 before
    Hydra saves its config or log there, so the first run's files stay as they were.
    """

    def __init__(self) -> None:
        self._held = contextlib.ExitStack()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("task") != "train":
            return
        HydraConfig.instance().set_config(config)  # ${hydra:...} in hydra.run.dir resolves as in the job
        run_dir = OmegaConf.select(config, "hydra.run.dir")
        try:
            self._held.enter_context(run_dir_lock(run_dir))
        except RunDirBusyError as err:
            log.error("%s", err)
            raise SystemExit(2) from None
        except OSError as err:  # the directory cannot be created or written
            log.error("hydra.run.dir=%s cannot be used: %s", run_dir, err.strerror or err)
            raise SystemExit(2) from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._held.close()

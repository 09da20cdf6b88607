"""The tasks ``run.py`` dispatches to: train, eval, info, export, summarize, assemble."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ctrlic.codecs.backbones.vqgan import VQGANConfigError
from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.checkpoint import CheckpointError
from ctrlic.codecs.control.base import KnobError
from ctrlic.codecs.control.instance_lora import InstanceLoRAError
from ctrlic.codecs.control.layer_prompts import LayerPromptsError
from ctrlic.codecs.lossless.scan import ScanError
from ctrlic.datamodules.images import DataConfigError
from ctrlic.lightning_modules.prompt import PromptTrainingError
from ctrlic.metrics.weights import MissingWeightsError, WeightsMismatchError
from ctrlic.tasks.summarize import SummaryError
from ctrlic.utils.resume import ResumeError

TASKS = ("train", "eval", "info", "export", "summarize", "assemble")
#: errors caused by the user's input: reported in one line, without a traceback
USER_ERRORS = (DataConfigError, CheckpointError, KnobError, BitstreamError, SummaryError, ResumeError,
               LayerPromptsError, PromptTrainingError, MissingWeightsError, WeightsMismatchError,
               InstanceLoRAError, ScanError, VQGANConfigError)
REPO_DIR = Path(__file__).resolve().parents[2]

log = logging.getLogger("ctrlic")


def user_error(err: BaseException) -> BaseException | None:
    """The user-input error behind ``err`` (Hydra wraps errors raised while instantiating), if any."""
    while err is not None:
        if isinstance(err, USER_ERRORS):
            return err
        err = err.__cause__ or err.__context__
    return None


def run(cfg: DictConfig):
    """Run ``cfg.task``; returns its result (for ``train``, the final metrics)."""
    from ctrlic.tasks.assemble import assemble
    from ctrlic.tasks.evaluate import evaluate
    from ctrlic.tasks.export import export
    from ctrlic.tasks.info import info
    from ctrlic.tasks.summarize import summarize_task
    from ctrlic.tasks.train import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.task == "train":
            return train(cfg, run_dir, REPO_DIR)
        if cfg.task == "eval":
            return evaluate(cfg, run_dir, REPO_DIR)
        if cfg.task == "info":
            return info(cfg, run_dir)
        if cfg.task == "export":
            return export(cfg, run_dir)
        if cfg.task == "summarize":
            return summarize_task(cfg)
        if cfg.task == "assemble":
            return assemble(cfg, run_dir)
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        log.error("%s", cause)
        raise SystemExit(2) from None
    raise SystemExit(f"task={cfg.task!r} is not a task; choose one of {', '.join(TASKS)}")

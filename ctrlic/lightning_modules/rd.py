"""Training a codec for rate–distortion: fixed λ, one optimizer with a net and a quantiles group."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import lightning as L
import torch
from torch import Tensor

from ctrlic.codecs.codec import Codec, pad_to_multiple
from ctrlic.lightning_modules.checkpoint import CODEC_ATTR, RECORD, TABLES_FIT, save_record
from ctrlic.lightning_modules.losses import MSERateLoss, RateDistortionLoss
from ctrlic.utils.rng import rng_states, set_rng_states


class RDModule(L.LightningModule):
    """Train ``codec`` on ``λ·D + R``.

    The entropy bottleneck's aux loss is added to the main loss and both go through one backward
    and one optimizer with two parameter groups (net lr, quantiles lr). CompressAI's ``aux_loss``
    already stops gradients into everything but ``quantiles``, so this equals its two-optimizer
    recipe, works under DDP without ``find_unused_parameters`` and keeps ``global_step`` = steps.
    Gradient clipping applies to the net group only (the aux gradients are ~1000× smaller).
    """

    def __init__(self, codec: Codec, lmbda: float = 0.0483, loss: RateDistortionLoss | None = None,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None, lr: float = 1e-4,
                 aux_lr: float = 1e-3, clip_max_norm: float | None = 1.0, scheduler: Callable[..., dict] | None = None,
                 val_knobs: list[Mapping[str, float]] | None = None) -> None:
        """``loss`` defaults to ``λ·255²·MSE + bpp``, ``optimizer`` (called with the parameter groups) to
        Adam; ``scheduler`` (called with the optimizer and ``max_steps``, see ``schedules.py``) to none."""
        super().__init__()
        setattr(self, CODEC_ATTR, codec)
        self.lmbda = lmbda
        self.criterion = loss if loss is not None else MSERateLoss()
        self.optimizer_factory = optimizer or torch.optim.Adam
        self.lr, self.aux_lr, self.clip_max_norm = lr, aux_lr, clip_max_norm
        self.scheduler_factory = scheduler
        self.val_knobs = [dict(k) for k in val_knobs] if val_knobs else [{}]
        # the loss, optimizer and schedule are objects; the run's resolved config records them
        self.save_hyperparameters(ignore=["codec", "loss", "optimizer", "scheduler"])
        self._split_parameters()

    @property
    def codec(self) -> Codec:
        return getattr(self, CODEC_ATTR)

    def _split_parameters(self) -> None:
        """Choose what trains: the control scheme's parameters, or the backbone (net + quantiles)."""
        backbone = self.codec.backbone
        chosen = self.codec.control.trainable_parameters()
        if chosen is not None:
            keep = {id(p) for p in chosen}
            for p in backbone.parameters():
                p.requires_grad_(id(p) in keep)
        named = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
        self.net_params = [p for n, p in named if not n.endswith(".quantiles")]
        self.aux_params = [p for n, p in named if n.endswith(".quantiles")]

    # -- the knob seen by the loss (subclasses sample it) ----------------------------------------

    def training_knobs(self) -> dict[str, float]:
        return {}

    def lmbda_for(self, knobs: Mapping[str, float]) -> float:
        return self.lmbda

    def validation_knobs(self) -> list[dict[str, float]]:
        """The knob settings validation averages over."""
        return self.val_knobs

    # -- steps ---------------------------------------------------------------------------------

    def training_step(self, x: Tensor, batch_idx: int) -> Tensor | None:
        return self.rd_step(x, self.codec.set_knobs(self.training_knobs()), batch_idx)

    def rd_step(self, x: Tensor, knobs: Mapping[str, float], batch_idx: int) -> Tensor | None:
        """The training loss (plus the aux loss) at the knob setting already applied; logs its terms.
        None (the step skipped on every rank) when the loss is not finite."""
        terms = self.criterion(self.codec(x), x, self.lmbda_for(knobs))
        loss = terms["loss"]
        if skip_non_finite(self, loss, batch_idx):
            return None
        if self.aux_params:
            terms["aux"] = self.codec.backbone.aux_loss()
            loss = loss + terms["aux"]
        for key, value in terms.items():
            self.log(f"train/{key}", value.detach(), prog_bar=key in ("loss", "bpp"))
        return loss

    def validation_step(self, batch: Mapping, batch_idx: int) -> None:
        x = batch["x"]
        n, _, h, w = x.shape
        padded = pad_to_multiple(x, self.codec.backbone.pad_multiple)
        totals: dict[str, float] = {}
        val_knobs = self.validation_knobs()
        for knobs in val_knobs:
            knobs = self.codec.set_knobs(knobs)
            out = self.codec(padded)
            out["x_hat"] = out["x_hat"][..., :h, :w].clamp(0, 1)
            terms = self.criterion(out, x, self.lmbda_for(knobs), num_pixels=n * h * w)
            terms["psnr"] = -10 * torch.log10(terms["mse"].clamp_min(1e-10))
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v.detach() / len(val_knobs)
        self.log_dict({f"val/{k}": v for k, v in totals.items()}, batch_size=n, sync_dist=True)

    # -- optimisation ----------------------------------------------------------------------------

    def configure_optimizers(self):
        groups = [{"params": self.net_params, "lr": self.lr, "name": "net"}]
        if self.aux_params:
            groups.append({"params": self.aux_params, "lr": self.aux_lr, "name": "quantiles"})
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer, max_steps=self.trainer.max_steps)}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if self.clip_max_norm:
            torch.nn.utils.clip_grad_norm_(self.net_params, self.clip_max_norm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        save_record(checkpoint, self, rng=rng_states(), **{TABLES_FIT: self.codec.tables_fit})

    # -- exact resume: the quantization noise continues where the checkpoint left it ---------------

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resume_rng = checkpoint.get(RECORD, {}).get("rng")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # restored here, not on load: building the data loader in between draws from the torch RNG
        if getattr(self, "_resume_rng", None) is not None:
            set_rng_states(self._resume_rng)
            self._resume_rng = None


def skip_non_finite(module: L.LightningModule, loss: Tensor, batch_idx: int) -> bool:
    """True (with a warning) when the loss is NaN/Inf on any rank: the step is skipped on all of them,
    as the authors' ``train_one_epoch`` skips such a batch (CALICE src/utils/engine.py:107-109)."""
    finite = bool(torch.isfinite(loss.detach()).all())
    if module._trainer is not None:
        finite = module.trainer.strategy.reduce_boolean_decision(finite, all=True)
    if not finite:
        warnings.warn(f"training loss is NaN or Inf at step {module.global_step} (batch {batch_idx}): "
                      "skipping this batch", NonFiniteLossWarning, stacklevel=2)
    return not finite


class NonFiniteLossWarning(UserWarning):
    """A training batch gave a NaN or Inf loss and was skipped."""

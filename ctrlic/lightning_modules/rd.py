"""Training a codec for rate–distortion: fixed λ, one optimizer with a net and a quantiles group."""

from __future__ import annotations

import math
from collections.abc import Mapping

import lightning as L
import torch
from torch import Tensor

from ctrlic.codecs.codec import Codec, pad_to_multiple
from ctrlic.lightning_modules.checkpoint import CODEC_ATTR, RECORD
from ctrlic.lightning_modules.losses import RateDistortionLoss
from ctrlic.utils.rng import rng_states, set_rng_states


class RDModule(L.LightningModule):
    """Train ``codec`` on ``λ·D + R``.

    The entropy bottleneck's aux loss is added to the main loss and both go through one backward
    and one optimizer with two parameter groups (net lr, quantiles lr). CompressAI's ``aux_loss``
    already stops gradients into everything but ``quantiles``, so this equals its two-optimizer
    recipe, works under DDP without ``find_unused_parameters`` and keeps ``global_step`` = steps.
    Gradient clipping applies to the net group only (the aux gradients are ~1000× smaller).
    """

    def __init__(self, codec: Codec, lmbda: float = 0.0483, distortion: str = "mse", lr: float = 1e-4,
                 aux_lr: float = 1e-3, clip_max_norm: float | None = 1.0, scheduler: Mapping | None = None,
                 val_knobs: list[Mapping[str, float]] | None = None, mse_weight: float = 150.0,
                 lpips_weight: float = 0.1, lpips: Mapping | None = None) -> None:
        super().__init__()
        setattr(self, CODEC_ATTR, codec)
        self.lmbda = lmbda
        self.criterion = RateDistortionLoss(distortion, mse_weight, lpips_weight, lpips)
        self.lr, self.aux_lr, self.clip_max_norm = lr, aux_lr, clip_max_norm
        self.scheduler_factory = scheduler
        self.val_knobs = [dict(k) for k in val_knobs] if val_knobs else [{}]
        self.save_hyperparameters(ignore=["codec"])
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

    def training_step(self, x: Tensor, batch_idx: int) -> Tensor:
        return self.rd_step(x, self.codec.set_knobs(self.training_knobs()))

    def rd_step(self, x: Tensor, knobs: Mapping[str, float]) -> Tensor:
        """The training loss (plus the aux loss) at the knob setting already applied; logs its terms."""
        terms = self.criterion(self.codec(x), x, self.lmbda_for(knobs))
        loss = terms["loss"]
        if self.aux_params:
            terms["aux"] = self.codec.backbone.aux_loss()
            loss = loss + terms["aux"]
        for key, value in terms.items():
            self.log(f"train/{key}", value.detach(), prog_bar=key in ("loss", "bpp"))
        return loss

    def validation_step(self, batch: Mapping, batch_idx: int) -> None:
        x = batch["x"]
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, self.codec.backbone.pad_multiple)
        totals: dict[str, float] = {}
        val_knobs = self.validation_knobs()
        for knobs in val_knobs:
            knobs = self.codec.set_knobs(knobs)
            out = self.codec(padded)
            out["x_hat"] = out["x_hat"][..., :h, :w].clamp(0, 1)
            terms = self.criterion(out, x, self.lmbda_for(knobs), num_pixels=h * w)
            terms["psnr"] = -10 * torch.log10(terms["mse"].clamp_min(1e-10))
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v.detach() / len(val_knobs)
        self.log_dict({f"val/{k}": v for k, v in totals.items()}, batch_size=1, sync_dist=True)

    # -- optimisation ----------------------------------------------------------------------------

    def configure_optimizers(self):
        groups = [{"params": self.net_params, "lr": self.lr, "name": "net"}]
        if self.aux_params:
            groups.append({"params": self.aux_params, "lr": self.aux_lr, "name": "quantiles"})
        optimizer = torch.optim.Adam(groups)
        if not self.scheduler_factory:
            return optimizer
        spec = dict(self.scheduler_factory)
        interval, monitor = spec.pop("interval", "step"), spec.pop("monitor", None)
        frequency = int(spec.pop("frequency", 1))  # plateau: step it after each validation, not every step
        scheduler = build_scheduler(optimizer, spec, self.trainer.max_steps)
        config = {"scheduler": scheduler, "interval": interval, "frequency": frequency}
        if monitor:
            config["monitor"] = monitor
        return {"optimizer": optimizer, "lr_scheduler": config}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if self.clip_max_norm:
            torch.nn.utils.clip_grad_norm_(self.net_params, self.clip_max_norm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[RECORD] = {"arch": self.codec.arch, "rng": rng_states()}

    # -- exact resume: the quantization noise continues where the checkpoint left it ---------------

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resume_rng = checkpoint.get(RECORD, {}).get("rng")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # restored here, not on load: building the data loader in between draws from the torch RNG
        if getattr(self, "_resume_rng", None) is not None:
            set_rng_states(self._resume_rng)
            self._resume_rng = None


def build_scheduler(optimizer: torch.optim.Optimizer, spec: Mapping, max_steps: int):
    """``cosine`` (over max_steps), ``multistep`` (milestones as fractions of max_steps) or ``plateau``."""
    kind = spec.get("name", "cosine")
    total = max(1, max_steps if max_steps and max_steps > 0 else 1)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=spec.get("eta_min", 0.0))
    if kind == "multistep":
        milestones = [max(1, math.floor(f * total)) for f in spec.get("milestones", [0.9])]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=spec.get("gamma", 0.1))
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=spec.get("factor", 0.3), patience=spec.get("patience", 4))
    raise ValueError(f"module.scheduler.name={kind!r}; choose cosine, multistep or plateau")

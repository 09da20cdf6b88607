"""Training a lossless codec (MGCF): minimize bits per sub-pixel of the teacher-forced likelihoods."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor
from torch.optim import Optimizer

from ctrlic.codecs.codec import Codec
from ctrlic.lightning_modules.rd import RDModule
from ctrlic.metrics.quality import bits_per_subpixel


class LosslessModule(RDModule):
    """One optimizer on the whole backbone (no entropy-bottleneck quantiles), loss = bpsp.

    Reuses RDModule's optimizer, scheduler, clipping and checkpoint hooks; λ and the loss have no role.
    """

    def __init__(self, codec: Codec, lr: float = 5e-4, clip_max_norm: float | None = 1.0,
                 optimizer: Callable[..., Optimizer] | None = None, scheduler: Callable[..., dict] | None = None) -> None:
        super().__init__(codec, lr=lr, clip_max_norm=clip_max_norm, optimizer=optimizer, scheduler=scheduler)

    def training_step(self, x: Tensor, batch_idx: int) -> Tensor:
        loss = bits_per_subpixel(self.codec(x), x)
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log("train/bpsp", loss.detach())
        return loss

    def validation_step(self, batch: Mapping, batch_idx: int) -> None:
        x = batch["x"]
        bpsp = bits_per_subpixel(self.codec(x), x)
        self.log_dict({"val/loss": bpsp, "val/bpsp": bpsp}, batch_size=1, sync_dist=True)

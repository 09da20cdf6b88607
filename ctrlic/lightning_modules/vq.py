"""Training a VQ codec (Control-GIC): MSE + LPIPS + codebook loss + a PatchGAN, two optimizers.

Images are mapped to [−1, 1] for every loss term and the discriminator, as the backbone does for
coding; LPIPS receives [0, 1] and scales itself. Manual optimization: one generator step, then one
discriminator step. ``global_step`` counts generator steps only (the discriminator's optimizer is
stepped directly), so ``max_steps``, the data sampler and resume see one step per batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import lightning as L
import torch
from torch import Tensor

from ctrlic.codecs.backbones.grain_masks import GRAINS, check_ratios
from ctrlic.codecs.checkpoint import CheckpointError, PickleTrust, extract_state_dict, read_checkpoint
from ctrlic.codecs.codec import Codec, pad_to_multiple
from ctrlic.lightning_modules.checkpoint import CODEC_ATTR, save_record
from ctrlic.lightning_modules.discriminator import AdversarialLoss, adaptive_weight
from ctrlic.metrics.perceptual import LPIPS


class VQModule(L.LightningModule):
    """Generator loss ``mse_w·MSE + lpips_w·LPIPS + codebook_w·L_vq + w_gan·(−E[D(x̂)])`` at fixed ratios.

    ``w_gan`` is the fixed ``disc_weight`` (0.1, as the official code does), or with
    ``adaptive_weight`` Esser et al.'s gradient-norm balance times ``disc_weight``. ``optimizer``
    (called with the parameters and ``lr``) builds both optimizers; default Adam, betas (0.5, 0.9).
    """

    def __init__(self, codec: Codec, lr: float = 5e-5, optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 mse_weight: float = 1.0, lpips_weight: float = 1.0, codebook_weight: float = 1.0,
                 disc_weight: float = 0.1, adaptive_weight: bool = False, disc_start: int = 0,
                 clip_value: float | None = 1.0, training_ratios: Sequence[float] = (0.5, 0.4, 0.1),
                 discriminator: Mapping | None = None, lpips: Mapping | None = None,
                 discriminator_checkpoint: str | None = None, trust_pickle: bool = False) -> None:
        super().__init__()
        self.automatic_optimization = False
        setattr(self, CODEC_ATTR, codec)
        self.loss = AdversarialLoss(**(discriminator or {}))
        if discriminator_checkpoint:
            load_discriminator(self.loss, discriminator_checkpoint, trust_pickle)
        self.lpips = LPIPS(**(lpips or {}))
        self.lr = lr
        self.optimizer_factory = optimizer or functools.partial(torch.optim.Adam, betas=(0.5, 0.9))
        self.mse_weight, self.lpips_weight, self.codebook_weight = mse_weight, lpips_weight, codebook_weight
        self.disc_weight, self.adaptive, self.disc_start = disc_weight, adaptive_weight, disc_start
        self.clip_value = clip_value
        self.training_ratios = dict(zip(GRAINS, check_ratios(training_ratios), strict=True))
        self.save_hyperparameters(ignore=["codec", "optimizer"])

    @property
    def codec(self) -> Codec:
        return getattr(self, CODEC_ATTR)

    def reconstruction_terms(self, x: Tensor) -> dict[str, Tensor]:
        """Forward at the training ratios; the non-adversarial terms (MSE on the [−1, 1] scale)."""
        self.codec.set_knobs(self.training_ratios)
        out = self.codec(x)
        x_hat = out["x_hat"]
        mse = ((x_hat * 2 - 1) - (x * 2 - 1)).pow(2).mean()
        lp = self.lpips(x_hat, x)
        nll = self.mse_weight * mse + self.lpips_weight * lp
        return {"x_hat": x_hat, "mse": mse, "lpips": lp, "nll": nll, "codebook": out["codebook_loss"]}

    def training_step(self, x: Tensor, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        terms = self.reconstruction_terms(x)
        fake = terms["x_hat"] * 2 - 1
        gan_on = self.global_step >= self.disc_start
        g_adv = self.loss.generator(fake)
        if not gan_on:
            weight = torch.zeros((), device=x.device)
        elif self.adaptive:
            weight = adaptive_weight(terms["nll"], g_adv, self.codec.backbone.decoder.conv_out.weight,
                                     self.disc_weight)
        else:
            weight = torch.tensor(self.disc_weight, device=x.device)
        loss_g = terms["nll"] + self.codebook_weight * terms["codebook"] + weight * g_adv
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        if self.clip_value:
            self.clip_gradients(opt_g, gradient_clip_val=self.clip_value, gradient_clip_algorithm="value")
        opt_g.step()
        logs = {"loss": loss_g, "mse": terms["mse"], "lpips": terms["lpips"], "codebook": terms["codebook"],
                "g_adv": g_adv, "gan_weight": weight}
        if gan_on:
            loss_d = self.loss.discriminator_loss(x * 2 - 1, fake)
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.optimizer.step()  # the raw optimizer: global_step counts generator steps only
            logs["d_loss"] = loss_d
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, prog_bar=False)

    def validation_step(self, batch: Mapping, batch_idx: int) -> None:
        x = batch["x"]
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, self.codec.backbone.pad_multiple)
        terms = self.reconstruction_terms(padded)
        x_hat = terms["x_hat"][..., :h, :w].clamp(0, 1)
        mse01 = (x_hat - x).pow(2).mean()
        self.log_dict({"val/loss": terms["nll"].detach(), "val/lpips": terms["lpips"].detach(),
                       "val/psnr": -10 * torch.log10(mse01.clamp_min(1e-10))}, batch_size=1, sync_dist=True)

    def configure_optimizers(self):
        generator = [p for p in self.codec.backbone.parameters() if p.requires_grad]
        opt_g = self.optimizer_factory(generator, lr=self.lr)
        opt_d = self.optimizer_factory(self.loss.discriminator.parameters(), lr=self.lr)
        return [opt_g, opt_d]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        save_record(checkpoint, self)


def load_discriminator(loss: AdversarialLoss, source: str | Mapping, trust_pickle: bool = False) -> None:
    """Load the ``loss.discriminator.*`` weights of an official Control-GIC checkpoint (or ours) strictly.

    ``trust_pickle`` (``module.trust_pickle=true``) lets a file that needs the full unpickler load, with a warning.
    """
    trust = PickleTrust(trust_pickle is True, "module.trust_pickle=true")
    state = extract_state_dict(read_checkpoint(source, trust) if isinstance(source, str) else source)
    prefix = next((p for p in ("loss.", "module.loss.") if any(k.startswith(p + "discriminator.") for k in state)), None)
    if prefix is None:
        raise CheckpointError(f"{source if isinstance(source, str) else 'state dict'}: no loss.discriminator.* "
                              "weights inside; module.discriminator_checkpoint needs a GAN training checkpoint")
    try:
        loss.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix + "discriminator.")})
    except RuntimeError as err:
        raise CheckpointError(f"the discriminator weights do not fit module.discriminator: {err}") from None

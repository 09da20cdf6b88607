"""The authors' training recipe (issue #15 item 5): unclamped perceptual losses, NaN batches skipped,
a per-epoch cosine schedule, SquarePad crops and crop validation, STF's contiguous y, the best
checkpoint in the final sweep. (The global batch under DDP is in ``test_ddp.py``.)"""

from __future__ import annotations

import functools
import json
import math

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ctrlic.codecs.backbones.stf import SymmetricalTransFormer
from ctrlic.codecs.build import build_codec
from ctrlic.datamodules.images import ImageDataModule, RandomCrops, square_pad
from ctrlic.lightning_modules.checkpoint import open_codec
from ctrlic.lightning_modules.losses import LPIPSRateLoss, MSSSIMRateLoss
from ctrlic.lightning_modules.rd import NonFiniteLossWarning, RDModule
from ctrlic.lightning_modules.schedules import cosine
from tests.conftest import ROOT, SMOKE, run_cli, tiny_stf_with_adapters
from tests.test_codec import BACKBONE

DEMO = ROOT / "data" / "demo"


@pytest.mark.parametrize("distortion", ["ms-ssim", "lpips"])
def test_perceptual_losses_see_x_hat_unclamped_unless_asked(distortion):
    make = {"ms-ssim": lambda clamp: MSSSIMRateLoss(clamp=clamp),
            "lpips": lambda clamp: LPIPSRateLoss(lpips={"pretrained": False}, clamp=clamp)}[distortion]
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    likelihoods = {"y": torch.full((1, 4, 4, 4), 0.5)}
    grads = {}
    for clamp in (False, True):
        torch.manual_seed(0)
        loss = make(clamp)
        x_hat = (x + 0.8 * (torch.arange(64) >= 48)).requires_grad_()  # the right quarter above 1
        loss({"x_hat": x_hat, "likelihoods": likelihoods}, x, lmbda=1.0)[distortion.replace("-", "_")].backward()
        grads[clamp] = x_hat.grad[..., 48:].abs().sum()
    assert grads[False] > 0 and grads[True] == 0


class Batches(torch.utils.data.Dataset):
    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.batches[i]


class Weights(L.Callback):
    """The weights after every optimizer step, and the learning rate it used."""

    def __init__(self) -> None:
        self.after, self.lrs = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after.append({k: v.detach().clone() for k, v in pl_module.codec.backbone.named_parameters()})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def fit(module: RDModule, batches: list[torch.Tensor]) -> Weights:
    record = Weights()
    trainer = L.Trainer(accelerator="cpu", max_steps=len(batches), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[record])
    trainer.fit(module, train_dataloaders=DataLoader(Batches(batches), batch_size=None))
    return record


def test_a_batch_with_a_nan_loss_is_skipped_with_a_warning():
    """On tiny STF: no masked convolution, whose forward re-zeroes taps Adam moved, to blur the comparison."""
    torch.manual_seed(0)
    good = [torch.rand(2, 3, 64, 64) for _ in range(2)]
    bad = good[0].clone()
    bad[0, 0, 0, 0] = float("nan")
    module = RDModule(build_codec(tiny_stf_with_adapters()[0]), lr=1e-3, scheduler=None)
    with pytest.warns(NonFiniteLossWarning, match="step 1 .*skipping this batch"):
        record = fit(module, [good[0], bad, good[1]])
    first, skipped, third = record.after
    assert all(torch.equal(first[k], skipped[k]) for k in first)  # nothing moved on the NaN batch
    assert any(not torch.equal(skipped[k], third[k]) for k in first)  # training went on after it
    assert all(torch.isfinite(v).all() for v in third.values())


def test_cosine_schedule_can_move_once_per_epoch():
    torch.manual_seed(0)
    schedule = functools.partial(cosine, steps_per_epoch=3)
    module = RDModule(build_codec(BACKBONE), lr=1e-3, scheduler=schedule)
    record = fit(module, [torch.rand(1, 3, 64, 64) for _ in range(9)])
    epochs = [1e-3 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]
    assert record.lrs == pytest.approx([lr for lr in epochs for _ in range(3)])


def test_square_pad_is_calices():
    """CALICE's SquarePad on a 5×3 image and crop 4: side max(5, 3, 4) = 5, +1 pixel per side."""
    arr = np.ones((3, 5, 3), dtype=np.uint8)
    padded = square_pad(arr, 4)
    assert padded.shape == (7, 7, 3)  # vp = (5 − 3) // 2 + 1 = 2, hp = 0 + 1 = 1
    assert padded[2:5, 1:6].all() and padded.sum() == arr.sum()
    assert square_pad(np.ones((2, 2, 3), np.uint8), 6).shape == (8, 8, 3)  # small images reach the crop + 2


def test_training_crops_can_be_square_padded_and_validation_can_use_random_crops():
    files = sorted((DEMO / "train").iterdir())[:3]
    plain, padded = RandomCrops(files, 256, seed=1), RandomCrops(files, 256, seed=1, square_pad=True)
    assert plain[0].shape == padded[0].shape == (3, 256, 256)
    borders = [bool((padded[i] == 0).all(0).any()) for i in range(40)]
    assert any(borders) and not any((plain[i] == 0).all(0).any() for i in range(40))  # black borders only with it
    dm = ImageDataModule(train_dir=DEMO / "train", crop_size=64, batch_size=4, val_split=0.25, square_pad=True,
                         val_random_crops=True, val_batch_size=4)
    batch = next(iter(dm.val_dataloader()))
    assert batch["x"].shape == (4, 3, 64, 64) and len(batch["name"]) == 4
    assert torch.equal(batch["x"], next(iter(dm.val_dataloader()))["x"])  # the same crops every validation


def test_stf_analysis_returns_a_contiguous_y_as_the_authors():
    model = SymmetricalTransFormer(embed_dim=6, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], num_slices=4,
                                   charm_widths=[24])
    y = model.analysis(torch.rand(2, 3, 64, 64))
    assert y.is_contiguous() and torch.empty_like(y).stride() == y.stride()


def test_the_final_sweep_evaluates_the_best_checkpoint_and_says_so(tmp_path):
    """anchor_stf evaluates its best validation loss by default; here 'best' is made the *highest* loss
    (mode=max), so that it is not the last checkpoint and the test can tell them apart."""
    run_cli("experiment=anchor_stf", *SMOKE[1:], "data=demo", "callbacks.checkpoint.mode=max",
            f"hydra.run.dir={tmp_path}")
    meta = json.loads((tmp_path / "results.json").read_text())["meta"]
    chosen = meta["evaluated_weights"]
    assert chosen["weights"] == "best" and chosen["monitor"] == "val/loss"
    assert chosen["step"] < 6, "the highest validation loss should come before the last step"
    best = open_codec(chosen["checkpoint"])
    assert meta["weights_fingerprint"] == best.fingerprint.hex()
    final = tmp_path / "checkpoints" / "step-6.ckpt"  # the periodic checkpoint holds the weights at the end
    assert meta["weights_fingerprint"] != open_codec(final).fingerprint.hex()

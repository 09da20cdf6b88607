"""CALICE's central property on a tiny STF: one model, rate falling as α rises (real bitstreams)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ctrlic.codecs.build import build_codec
from ctrlic.datamodules.image_io import list_images, load_rgb8, to_tensor
from ctrlic.lightning_modules.rd import RDModule
from ctrlic.lightning_modules.variable_rate import VariableRateModule
from tests.conftest import ROOT, tiny_stf_with_adapters

#: a λ range whose low end is rate-dominated even for a tiny, little-trained model
LMBDA_MAX, LMBDA_MIN = 0.05, 0.0001


class RepeatedCrops(Dataset):
    """The same few crops over and over: the models overfit them."""

    def __init__(self, crops: torch.Tensor) -> None:
        self.crops = crops

    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.crops[i % len(self.crops)]


def fit(module: L.LightningModule, crops: torch.Tensor, steps: int) -> None:
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader(RepeatedCrops(crops), batch_size=len(crops)))


def test_bpp_falls_as_alpha_rises_on_overfitted_crops():
    torch.manual_seed(0)
    L.seed_everything(0)
    crops = torch.stack([to_tensor(load_rgb8(p)[0])[:, 200:264, 300:364]
                         for p in list_images(ROOT / "data" / "demo" / "kodak4")])
    backbone_cfg, control_cfg = tiny_stf_with_adapters()
    anchor = build_codec(backbone_cfg)
    fit(RDModule(anchor, lmbda=LMBDA_MAX, lr=3e-3, scheduler=None), crops, 200)
    codec = build_codec({**backbone_cfg, "checkpoint": anchor.backbone.state_dict()}, control_cfg)
    fit(VariableRateModule(codec, lmbda_min=LMBDA_MIN, lmbda_max=LMBDA_MAX, lr=2e-3, scheduler=None), crops, 200)
    codec.prepare()
    total = {a: sum(len(codec.compress(c, {"alpha": a})) for c in crops) for a in (0.0, 0.5, 1.0)}
    anchor.prepare()
    assert total[0.0] == sum(len(anchor.compress(c)) for c in crops) + 4 * 10  # + the knob in the header
    assert total[0.0] > 1.10 * total[0.5], total
    assert total[0.5] > total[1.0], total

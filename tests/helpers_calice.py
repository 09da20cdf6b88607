"""The tiny CALICE model shared by the session: a tiny STF anchor and α-adapters overfitted on four
Kodak crops, trained once (tests/conftest.py: ``tiny_calice``) for the rate-order, CLI, rate-search
and safety tests."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ctrlic.codecs.build import build_codec, export_codec
from ctrlic.datamodules.image_io import list_images, load_rgb8, to_tensor
from ctrlic.lightning_modules.rd import RDModule
from ctrlic.lightning_modules.variable_rate import VariableRateModule
from tests.conftest import ROOT, tiny_stf_with_adapters

KODAK = ROOT / "data" / "demo" / "kodak4"
#: a λ range whose low end is rate-dominated even for a tiny, little-trained model
LMBDA_MAX, LMBDA_MIN = 0.05, 0.0001
#: training steps of the anchor and of the α-adapters: the rate falls at every α step on the crops, and α
#: moves kodim01's 128×192 crop over ~0.31–1.27 bpp (200 + 200 leaves α a range of only 18 % on the crops)
ANCHOR_STEPS, ADAPTER_STEPS = 100, 300
#: torch threads while these models train: the outcome of so short and steep a training depends on the order
#: of float reductions, and these steps were chosen at 2 threads (at 1, α spans 1.4× on the crop, not 4×)
FIT_THREADS = 2


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


def kodak_crops() -> torch.Tensor:
    """The four bundled Kodak images cropped to 64×64 at (200, 300): (4, 3, 64, 64)."""
    return torch.stack([to_tensor(load_rgb8(p)[0])[:, 200:264, 300:364] for p in list_images(KODAK)])


def train_tiny_calice(root: Path) -> dict[str, Path]:
    """Train the anchor, then the α-adapters on it; export both (and a twin of the CALICE model
    with other weights) as codec files: ``{"anchor", "model", "other"}``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(FIT_THREADS)
    try:
        return _train_and_export(root)
    finally:
        torch.set_num_threads(threads)


def _train_and_export(root: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    L.seed_everything(0, verbose=False)
    crops = kodak_crops()
    backbone_cfg, control_cfg = tiny_stf_with_adapters()
    anchor = build_codec(backbone_cfg)
    fit(RDModule(anchor, lmbda=LMBDA_MAX, lr=3e-3, scheduler=None), crops, ANCHOR_STEPS)
    codec = build_codec({**backbone_cfg, "checkpoint": anchor.backbone.state_dict()}, control_cfg)
    fit(VariableRateModule(codec, lmbda_min=LMBDA_MIN, lmbda_max=LMBDA_MAX, lr=2e-3, scheduler=None), crops,
        ADAPTER_STEPS)
    root.mkdir(parents=True, exist_ok=True)
    paths = {"anchor": export_codec(anchor, root / "stf_tiny_anchor.codec.pt"),
             "model": export_codec(codec, root / "calice_tiny.codec.pt")}
    with torch.no_grad():
        next(codec.backbone.parameters()).add_(1e-3)  # same architecture, other weights
    paths["other"] = export_codec(codec, root / "calice_tiny_other.codec.pt")
    return paths

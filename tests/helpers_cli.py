"""Shared by the ``ctrlic`` command tests: a tiny CALICE codec trained to a useful α range (exported
once per session), a twin with other weights, test images in odd formats, and the console script."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from ctrlic.codecs.build import build_codec, export_codec
from ctrlic.datamodules.image_io import list_images, load_rgb8, to_tensor
from ctrlic.lightning_modules.rd import RDModule
from ctrlic.lightning_modules.variable_rate import VariableRateModule
from tests.conftest import ROOT, tiny_stf_with_adapters
from tests.test_calice_rate_order import LMBDA_MAX, LMBDA_MIN, fit

KODAK = ROOT / "data" / "demo" / "kodak4"
#: training steps of the anchor and of the α-adapters: enough for α to move kodim01 over ~0.25–0.75 bpp
ANCHOR_STEPS, ADAPTER_STEPS = 100, 100


@functools.cache
def trained_models(root: Path) -> dict[str, Path]:
    """Train the tiny STF anchor + α-adapters on four Kodak crops and export it (and a twin with other weights)."""
    torch.manual_seed(0)
    L.seed_everything(0, verbose=False)
    crops = torch.stack([to_tensor(load_rgb8(p)[0])[:, 200:264, 300:364] for p in list_images(KODAK)])
    backbone_cfg, control_cfg = tiny_stf_with_adapters()
    anchor = build_codec(backbone_cfg)
    fit(RDModule(anchor, lmbda=LMBDA_MAX, lr=3e-3, scheduler=None), crops, ANCHOR_STEPS)
    codec = build_codec({**backbone_cfg, "checkpoint": anchor.backbone.state_dict()}, control_cfg)
    fit(VariableRateModule(codec, lmbda_min=LMBDA_MIN, lmbda_max=LMBDA_MAX, lr=2e-3, scheduler=None), crops,
        ADAPTER_STEPS)
    root.mkdir(parents=True, exist_ok=True)
    model = export_codec(codec, root / "calice_tiny.codec.pt")
    with torch.no_grad():
        next(codec.backbone.parameters()).add_(1e-3)  # same architecture, other weights
    other = export_codec(codec, root / "calice_tiny_other.codec.pt")
    return {"model": model, "other": other}


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    return trained_models(tmp_path_factory.getbasetemp() / "cli_models")


@pytest.fixture(scope="session")
def lossless_model(tmp_path_factory) -> Path:
    """A tiny MGCF (lossless) exported with random weights: lossless whatever its weights."""
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    cfg = {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "backbone" / "mgcf.yaml")), "size": "tiny"}
    return export_codec(build_codec(cfg), tmp_path_factory.mktemp("lossless") / "mgcf.codec.pt")


def ctrlic(*args: str | Path, home: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the installed ``ctrlic`` console script; ``home`` isolates its model index."""
    script = shutil.which("ctrlic", path=str(Path(sys.executable).parent))
    assert script, "the ctrlic console script is not installed: pip install -e ."
    env = {**os.environ, "CTRLIC_HOME": str(home), "OMP_NUM_THREADS": "1"}
    return subprocess.run([script, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def kodak_crop(path: Path, height: int = 128, width: int = 192) -> Path:
    """A crop of kodim01 as PNG (small, so coding takes a fraction of a second)."""
    arr = np.asarray(Image.open(KODAK / "kodim01.png").convert("RGB"))[200 : 200 + height, 300 : 300 + width]
    Image.fromarray(arr).save(path)
    return path


def odd_format_images(folder: Path) -> dict[str, Path]:
    """Grayscale, RGBA, palette, 16-bit, 1×1 and odd-size images cut from kodim01."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.open(KODAK / "kodim01.png").convert("RGB").crop((300, 200, 365, 251))  # 65×51: odd
    files = {
        "gray": (rgb.convert("L"), "gray.png"),
        "rgba": (rgb.convert("RGBA"), "rgba.png"),
        "palette": (rgb.convert("P"), "palette.png"),
        "gray16": (Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257), "gray16.png"),
        "one": (rgb.crop((0, 0, 1, 1)), "one.png"),
        "odd": (rgb, "odd.png"),
    }
    out = {}
    for key, (image, name) in files.items():
        image.save(folder / name)
        out[key] = folder / name
    return out

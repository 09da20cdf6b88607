"""Shared by the ``ctrlic`` command tests: the session's tiny CALICE codec (trained once, in
tests/conftest.py) and its twin with other weights, test images in odd formats, and the console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctrlic.codecs.build import build_codec, export_codec
from tests.conftest import ROOT
from tests.helpers_calice import KODAK


@pytest.fixture(scope="session")
def models(tiny_calice) -> dict[str, Path]:
    """The session's tiny CALICE codec files (tests/conftest.py), trained once for every test."""
    return tiny_calice


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

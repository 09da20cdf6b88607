"""Evaluation images from a folder, as a plain torch Dataset (no Lightning needed, e.g. for ``ctrlic eval``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ctrlic.datamodules.image_io import (
    IMAGE_SUFFIXES,
    ImageReadError,
    list_images,
    load_rgb8,
    to_tensor,
    verify_image,
)
from ctrlic.errors import UserError


class DataConfigError(UserError, FileNotFoundError):
    """A configured image folder is missing, empty or unreadable; the message names the config key."""


def hint(key: str) -> str:
    """The fix to suggest for a bad folder setting."""
    return f"set {key}=/path/to/images"


def image_folder(key: str, folder: str | os.PathLike) -> tuple[Path, list[Path]]:
    """Resolve a configured folder and list its images, or raise DataConfigError naming ``key``."""
    root = Path(folder).expanduser().resolve()
    shown = f"'{root}'" + (f" (given as '{folder}')" if str(folder) != str(root) else "")
    if not root.exists():
        raise DataConfigError(f"{key}: folder {shown} does not exist — {hint(key)}")
    if not root.is_dir():
        raise DataConfigError(f"{key}: {shown} is not a folder — {hint(key)}")
    files = list_images(root)
    if not files:
        raise DataConfigError(
            f"{key}: folder {shown} has no images (searched recursively for {' '.join(IMAGE_SUFFIXES)})"
            f" — {hint(key)}"
        )
    return root, files


def readable(files: Sequence[Path], root: Path) -> tuple[list[Path], list[str]]:
    """The files whose header can be read, and the others as ``"name (why)"``."""
    good, bad = [], []
    for f in files:
        try:
            verify_image(f)
            good.append(f)
        except ImageReadError as err:
            bad.append(f"{f.relative_to(root).as_posix()} ({err.why})")
    return good, bad


def center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """Central size x size window of an HxWx3 image; a side shorter than ``size`` is kept whole."""
    h, w = arr.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return arr[top:top + ch, left:left + cw]


class EvalImages(Dataset):
    """Full evaluation images (optionally center-cropped) as ``{"x": CHW tensor, "name": str}``.

    ``name`` is the path relative to ``root`` without suffix, e.g. ``"kodim01"``. Decoding errors are
    raised (naming the file) rather than skipped, so metrics never silently cover other images.
    """

    def __init__(self, files: Sequence[Path], root: Path, crop: int | None = None) -> None:
        self.files = list(files)
        self.names = [f.relative_to(root).with_suffix("").as_posix() for f in self.files]
        self.crop = crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        arr, _ = load_rgb8(self.files[index])
        if self.crop is not None:
            arr = center_crop(arr, self.crop)
        return {"x": to_tensor(arr), "name": self.names[index]}

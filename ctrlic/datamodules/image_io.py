"""Read any common image file as 8-bit RGB, and write reconstructions as 8-bit RGB PNG.

Codecs are trained and evaluated on 8-bit RGB, so every other pixel format is converted here, once,
and the conversion is reported as a short note rather than done silently.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ctrlic.errors import UserError

#: file suffixes read by :func:`list_images` (compared case-insensitively)
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")

# What Pillow raises on corrupted, truncated or unsupported files (UnidentifiedImageError is an OSError).
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)

_EXIF_ORIENTATION = 0x0112


class ImageReadError(UserError):
    """An image file that cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, why: str) -> None:
        super().__init__(f"cannot read image '{path}': {why}")
        self.path = Path(path)
        self.why = why


def _why(err: Exception) -> str:
    """Short reason for a Pillow failure (its messages for unknown formats repeat the path)."""
    if isinstance(err, UnidentifiedImageError):
        return "not an image format Pillow can identify"
    return f"{type(err).__name__}: {err}"


def _rawmode(im: Image.Image) -> str:
    """Pillow's raw (on-disk) pixel layout, e.g. ``"RGB;16B"``; only known before ``load()``."""
    for tile in im.tile:
        raw = tile.args[0] if isinstance(tile.args, tuple) else tile.args
        if isinstance(raw, str):
            return raw
    return ""


def _reduce_16bit_gray(im: Image.Image) -> np.ndarray:
    """16-bit grayscale (modes I;16*, I) to an HxW uint8 array, rounding v/257."""
    values = np.clip(np.asarray(im, dtype=np.float64), 0, 65535)
    return np.rint(values / 257.0).astype(np.uint8)


def _decode(im: Image.Image) -> tuple[np.ndarray, list[str]]:
    """Convert an opened (not yet loaded) image to HxWx3 uint8 plus the list of notes."""
    notes: list[str] = []
    # Pillow opens 16-bit RGB(A) files in its 8-bit modes and keeps the high byte of each sample
    # (floor(v/256), at most one level below round(v/257)); it has no 48-bit mode to do better.
    if im.mode in ("RGB", "RGBA") and ";16" in _rawmode(im):
        notes.append("reduced 16-bit to 8-bit (Pillow keeps the high byte)")
    im.load()
    if im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        im = ImageOps.exif_transpose(im)
        notes.append("applied EXIF orientation")

    mode = im.mode
    if mode == "RGB":
        return np.array(im), notes
    if mode.startswith("I"):
        gray = _reduce_16bit_gray(im)
        notes += ["reduced 16-bit to 8-bit", "converted grayscale to RGB"]
        return np.repeat(gray[:, :, None], 3, axis=2), notes
    if mode == "F":
        raise ValueError("floating-point images (mode F) are not supported")
    if mode in ("P", "PA"):
        notes.append("converted palette image to RGB")
        if mode == "PA" or "transparency" in im.info:
            notes.append("dropped transparency")
            im = im.convert("RGBA")
    elif mode in ("L", "LA"):
        notes.append("converted grayscale to RGB")
        if mode == "LA":
            notes.append("dropped alpha channel (LA)")
    elif mode == "RGBA":
        notes.append("dropped alpha channel (RGBA)")
    elif mode == "1":
        notes.append("converted 1-bit image to RGB")
    else:
        notes.append(f"converted {mode} to RGB")
    return np.array(im.convert("RGB")), notes


@contextlib.contextmanager
def _open(path: str | os.PathLike, max_pixels: int | None) -> Iterator[Image.Image]:
    """Pillow's lazy image of a regular file (a pipe or device is refused, never waited on or read),
    refused above ``max_pixels`` from its header alone; ``max_pixels`` replaces Pillow's own bomb check."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageReadError(path, "not a regular file (a pipe, device or socket); give an image file")
        bomb_limit = Image.MAX_IMAGE_PIXELS
        if max_pixels is not None:
            Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(f) as im:
                if max_pixels is not None and im.width * im.height > max_pixels:
                    raise ImageReadError(path, f"{im.width}x{im.height} = {im.width * im.height:,} pixels, more "
                                               f"than the limit of {max_pixels:,}; raise it (ctrlic --max-pixels N) "
                                               "if this machine has the memory")
                yield im
        finally:
            Image.MAX_IMAGE_PIXELS = bomb_limit


def load_rgb8(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[np.ndarray, str | None]:
    """Decode an image fully as an HxWx3 uint8 array; the note says what was converted (None: nothing).

    Handles grayscale, palette (with or without transparency), alpha, CMYK, 1-bit and 16-bit files,
    and applies the EXIF orientation. Alpha is dropped (not composited); of an animated or multi-page
    file the first frame is kept, and the note says so. Unreadable, truncated, non-image or non-regular
    files, and images of more than ``max_pixels`` pixels, raise :class:`ImageReadError`.
    """
    try:
        with _open(path, max_pixels) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                im.seek(0)
            arr, notes = _decode(im)
    except ImageReadError:
        raise
    except _PIL_ERRORS as err:
        raise ImageReadError(path, _why(err)) from err
    if frames > 1:
        notes.append(f"coded the first of its {frames} frames (animated or multi-page file)")
    return arr, "; ".join(notes) or None


def verify_image(path: str | os.PathLike, max_pixels: int | None = None) -> None:
    """Cheap integrity check without decoding pixels (Pillow's ``verify``); raises ImageReadError."""
    try:
        with _open(path, max_pixels) as im:
            im.verify()
    except ImageReadError:
        raise
    except _PIL_ERRORS as err:
        raise ImageReadError(path, _why(err)) from err


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 array to a CHW float32 tensor in [0, 1]."""
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 array, got {arr.dtype} {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """A (1, 3, H, W) or (3, H, W) image in [0, 1] as an HxWx3 uint8 array (clamped, rounded)."""
    x = x.detach().float().cpu()
    return torch.round((x[0] if x.dim() == 4 else x).clamp(0, 1) * 255).byte().permute(1, 2, 0).contiguous().numpy()


def save_png(image: torch.Tensor | np.ndarray, path: str | os.PathLike) -> Path:
    """Write an 8-bit RGB PNG (creating parent folders) and return its path.

    ``image`` is a CHW (or 1xCxHxW) tensor or an HxWx3 array; floats are taken as [0, 1], clamped
    and rounded, uint8 is written as is.
    """
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"expected a 3xHxW tensor, got shape {tuple(image.shape)}")
        arr = t.permute(1, 2, 0).numpy()
    else:
        arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"image for '{path}' contains NaN or infinite values")
        arr = np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr)).save(out, format="PNG")
    return out


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, by suffix), sorted by relative path.

    Hidden files and folders (name starting with '.') are skipped, e.g. macOS ``._x.jpg`` sidecars.
    """
    root = Path(folder)
    found = [
        p for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())

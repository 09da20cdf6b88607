"""Classical codecs (JPEG, WebP, AVIF, JPEG XL; PNG, JPEG 2000 lossless) through ``imagecodecs``.

They are the floor every learned codec must beat: lossless bits per sub-pixel for the lossless table and
lossy RD curves in CompressAI's results format, so every RD plot can show them beside the learned codecs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import imagecodecs
import numpy as np
import torch

from ctrlic.errors import UserError
from ctrlic.evaluation.results import make_results
from ctrlic.metrics.quality import ms_ssim, psnr

LOSSLESS_CODECS: tuple[str, ...] = ("png", "jpeg2000", "webp", "jpegxl")
LOSSY_CODECS: tuple[str, ...] = ("jpeg", "webp", "avif", "jpegxl")

#: quality grid of ``rd_curve`` when none is given: 1..95 spans ~0.1 to ~4 bpp on Kodak for all four
#: codecs (100 is mathematically lossless for AVIF, whose PSNR would be infinite).
DEFAULT_QUALITIES: tuple[int, ...] = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)

#: curve names: codec and library, distinct from CompressAI's Pillow-made "JPEG"/"WebP" reference curves;
#: "AV1" lets ``references.curve_kind`` class AVIF as classical
DISPLAY_NAMES: dict[str, str] = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF/AV1", "jpegxl": "JPEG XL"}
LIBRARIES: dict[str, str] = {"jpeg": "libjpeg_turbo", "webp": "libwebp", "avif": "libavif", "jpegxl": "libjxl"}

#: libavif speed (0 slowest/best … 10): 6 is avifenc's default; imagecodecs' own default is ~40× slower
AVIF_SPEED = 6

# (encode, decode) per codec; each encode takes an HxWx3 uint8 array and returns bytes.
_LOSSLESS: dict[str, tuple[Callable, Callable]] = {
    "png": (lambda img: imagecodecs.png_encode(img, level=9), imagecodecs.png_decode),
    "jpeg2000": (lambda img: imagecodecs.jpeg2k_encode(img, reversible=True), imagecodecs.jpeg2k_decode),
    "webp": (lambda img: imagecodecs.webp_encode(img, level=100, lossless=True, method=6),
             imagecodecs.webp_decode),
    "jpegxl": (lambda img: imagecodecs.jpegxl_encode(img, lossless=True), imagecodecs.jpegxl_decode),
}
_LOSSY: dict[str, tuple[Callable, Callable]] = {
    "jpeg": (lambda img, q: imagecodecs.jpeg8_encode(img, level=q), imagecodecs.jpeg8_decode),
    "webp": (lambda img, q: imagecodecs.webp_encode(img, level=q, lossless=False), imagecodecs.webp_decode),
    "avif": (lambda img, q: imagecodecs.avif_encode(img, level=q, speed=AVIF_SPEED), imagecodecs.avif_decode),
    "jpegxl": (lambda img, q: imagecodecs.jpegxl_encode(img, level=q), imagecodecs.jpegxl_decode),
}


class ClassicalCodecError(UserError):
    """Bad input to a classical codec: unknown codec name, quality out of range, or not an RGB uint8 image."""


def _check_image(img: np.ndarray) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ClassicalCodecError(f"expected an HxWx3 uint8 RGB array, got {got}; load it with load_rgb8")
    return np.ascontiguousarray(img)


def _codec(table: dict[str, tuple[Callable, Callable]], codec: str, kind: str) -> tuple[Callable, Callable]:
    if codec not in table:
        raise ClassicalCodecError(f"unknown {kind} codec {codec!r}; choose one of {', '.join(table)}")
    return table[codec]


def versions() -> dict[str, str]:
    """Versions of imagecodecs and the libraries behind each codec, for the ``meta`` of every result."""
    libs = imagecodecs.version(dict)
    wanted = ("imagecodecs", "libjpeg_turbo", "libwebp", "libavif", "libjxl", "libpng", "openjpeg", "zlib")
    return {name: str(libs[name]) for name in wanted if name in libs}


def lossless_bpsp(img: np.ndarray, codec: str) -> float:
    """Bits per sub-pixel (bits / (H·W·3)) of ``img`` coded losslessly; raises if the decode is not exact."""
    encode, decode = _codec(_LOSSLESS, codec, "lossless")
    img = _check_image(img)
    data = encode(img)
    decoded = np.asarray(decode(data)).reshape(img.shape)
    if not np.array_equal(decoded, img):
        raise RuntimeError(f"{codec} lossless decode differs from the input; the codec is not lossless here")
    return 8.0 * len(data) / img.size


def lossy_point(img: np.ndarray, codec: str, quality: int) -> tuple[float, np.ndarray]:
    """Code ``img`` at ``quality`` (1–100, the codec's own scale); returns (bits per pixel, decoded uint8)."""
    encode, decode = _codec(_LOSSY, codec, "lossy")
    img = _check_image(img)
    if isinstance(quality, bool) or not isinstance(quality, int | np.integer) or not 1 <= quality <= 100:
        raise ClassicalCodecError(f"quality must be an integer in 1..100, got {quality!r}")
    data = encode(img, int(quality))
    decoded = np.asarray(decode(data))[..., :3].reshape(img.shape)
    return 8.0 * len(data) / (img.shape[0] * img.shape[1]), decoded


def _as_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div_(255.0).unsqueeze(0)


def _measure(img: np.ndarray, codec: str, quality: int) -> dict[str, float]:
    """One image at one quality: bpp, PSNR, MS-SSIM and the encode+decode seconds."""
    start = time.perf_counter()
    bpp, decoded = lossy_point(img, codec, quality)
    seconds = time.perf_counter() - start
    x, y = _as_tensor(img), _as_tensor(decoded)
    return {"bpp": bpp, "psnr-rgb": psnr(x, y), "ms-ssim-rgb": float(ms_ssim(x, y)), "coding_time": seconds}


def rd_curve(
    images: Sequence[np.ndarray],
    codec: str,
    qualities: Sequence[int] = DEFAULT_QUALITIES,
    *,
    dataset: str | None = None,
) -> dict:
    """RD curve of ``codec`` over ``qualities`` in CompressAI's results format, each point the image mean.

    Points are ordered by quality; "coding_time" is encode+decode seconds per image. ``meta`` records the
    qualities, the number of images, the dataset and the library versions.
    """
    _codec(_LOSSY, codec, "lossy")
    if not images:
        raise ClassicalCodecError("images is empty: give at least one HxWx3 uint8 image")
    if not qualities:
        raise ClassicalCodecError("qualities is empty: give at least one quality in 1..100")
    points = []
    for quality in sorted(qualities):
        rows = [_measure(img, codec, quality) for img in images]
        points.append({key: float(np.mean([row[key] for row in rows])) for key in rows[0]})
    library = LIBRARIES[codec]
    name = f"{DISPLAY_NAMES[codec]} ({library} {versions().get(library, '?')})"
    meta = {"codec": codec, "qualities": [int(q) for q in sorted(qualities)], "num_images": len(images),
            "dataset": dataset, "settings": f"imagecodecs defaults apart from the quality level (AVIF speed {AVIF_SPEED})",
            "versions": versions()}
    return make_results(name, f"{name} through imagecodecs {imagecodecs.__version__}", points, meta)


def lossless_table(images: Sequence[np.ndarray], codecs: Sequence[str] = LOSSLESS_CODECS) -> dict[str, float]:
    """Mean bits per sub-pixel over ``images`` for each lossless codec."""
    if not images:
        raise ClassicalCodecError("images is empty: give at least one HxWx3 uint8 image")
    return {codec: float(np.mean([lossless_bpsp(img, codec) for img in images])) for codec in codecs}

"""Image reading (all pixel formats to 8-bit RGB), tensor conversion, PNG writing, folder listing."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctrlic.datamodules.image_io import ImageReadError, list_images, load_rgb8, save_png, to_tensor

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)  # odd sizes on purpose


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _png_rgb16(path: Path, arr: np.ndarray) -> Path:
    """Write a 16-bit RGB PNG by hand (Pillow cannot write 48-bit images)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def test_rgb_png_is_exact_without_note(tmp_path):
    arr, note = load_rgb8(_save(Image.fromarray(RGB), tmp_path / "a.png"))
    assert arr.dtype == np.uint8 and arr.shape == (5, 7, 3)
    assert note is None
    np.testing.assert_array_equal(arr, RGB)


@pytest.mark.parametrize(("mode", "note"), [
    ("L", "converted grayscale to RGB"),
    ("LA", "converted grayscale to RGB; dropped alpha channel (LA)"),
    ("1", "converted 1-bit image to RGB"),
])
def test_grayscale_modes_are_replicated(tmp_path, mode, note):
    img = Image.fromarray(RGB).convert(mode)
    arr, got = load_rgb8(_save(img, tmp_path / "g.png"))
    assert arr.shape == (5, 7, 3) and arr.dtype == np.uint8
    assert got == note
    gray = np.asarray(img.convert("L"))
    for c in range(3):
        np.testing.assert_array_equal(arr[:, :, c], gray)


def test_rgba_drops_alpha(tmp_path):
    img = Image.fromarray(np.dstack([RGB, np.full((5, 7), 7, np.uint8)]))
    arr, note = load_rgb8(_save(img, tmp_path / "a.png"))
    assert note == "dropped alpha channel (RGBA)"
    np.testing.assert_array_equal(arr, RGB)


@pytest.mark.parametrize("transparent", [False, True])
def test_palette(tmp_path, transparent):
    img = Image.fromarray(RGB).convert("P")
    if transparent:
        img.info["transparency"] = 0
    path = _save(img, tmp_path / "p.png")
    arr, note = load_rgb8(path)
    expected = "converted palette image to RGB" + ("; dropped transparency" if transparent else "")
    assert note == expected
    with Image.open(path) as ref:
        np.testing.assert_array_equal(arr, np.asarray(ref.convert("RGBA"))[:, :, :3])


def test_16bit_grayscale_rounds(tmp_path):
    values = np.array([[0, 128, 129, 257, 1000, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "g16.png")
    with Image.open(path) as im:
        assert im.mode == "I;16"
    arr, note = load_rgb8(path)
    assert note == "reduced 16-bit to 8-bit; converted grayscale to RGB"
    np.testing.assert_array_equal(arr[0, :, 0], [0, 0, 1, 1, 4, 255])
    np.testing.assert_array_equal(arr[:, :, 0], arr[:, :, 2])


def test_16bit_rgb_png_keeps_high_byte_with_note(tmp_path):
    values = np.array([[[0, 257, 65535], [1000, 30000, 65000]]], dtype=np.uint16)
    arr, note = load_rgb8(_png_rgb16(tmp_path / "rgb16.png", values))
    assert "16-bit" in note
    np.testing.assert_array_equal(arr, values >> 8)


def test_cmyk_jpeg(tmp_path):
    smooth = np.broadcast_to(np.linspace(40, 200, 16, dtype=np.uint8)[None, :, None], (16, 16, 3))
    img = Image.fromarray(np.ascontiguousarray(smooth)).convert("CMYK")
    arr, note = load_rgb8(_save(img, tmp_path / "c.jpg", quality=95))
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    assert note == "converted CMYK to RGB"
    assert np.abs(arr.astype(int) - smooth).mean() < 4


def test_exif_orientation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    arr, note = load_rgb8(_save(Image.fromarray(RGB), tmp_path / "o.jpg", exif=exif))
    assert arr.shape == (7, 5, 3)
    assert note == "applied EXIF orientation"


def test_truncated_and_non_image_files_raise(tmp_path):
    data = (_save(Image.fromarray(RGB), tmp_path / "full.png")).read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    for path in (truncated, text):
        with pytest.raises(ImageReadError, match=path.name) as info:
            load_rgb8(path)
        assert info.value.path == path


def test_to_tensor_and_save_png_round_trip(tmp_path):
    t = to_tensor(RGB)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32 and t.is_contiguous()
    assert 0.0 <= t.min() and t.max() <= 1.0
    out = save_png(t[None], tmp_path / "sub" / "rec.png")
    np.testing.assert_array_equal(load_rgb8(out)[0], RGB)

    wild = torch.tensor([-0.5, 0.4 / 255, 1.6 / 255, 2.0]).view(1, 1, 4).expand(3, 1, 4)
    got, _ = load_rgb8(save_png(wild, tmp_path / "clamped.png"))
    np.testing.assert_array_equal(got[0, :, 0], [0, 0, 2, 255])
    with pytest.raises(ValueError, match="NaN"):
        save_png(torch.full((3, 2, 2), float("nan")), tmp_path / "nan.png")


def test_list_images_recursive_sorted_case_insensitive(tmp_path):
    for rel in ("b.PNG", "a.jpg", "sub/c.JPEG", "sub/d.webp", "notes.txt", ".hidden/e.png", "sub/._f.jpg"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.jpg", "b.PNG", "sub/c.JPEG", "sub/d.webp"]

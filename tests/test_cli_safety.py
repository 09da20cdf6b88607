"""Every bad input to the ``ctrlic`` console script: one clear line on stderr, a non-zero exit code, no
traceback, and neither the input nor an existing output changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from ctrlic.cli.files import atomic_write
from ctrlic.codecs import bitstream
from ctrlic.codecs.build import load_codec
from tests.helpers_cli import ctrlic, kodak_crop, lossless_model, models  # noqa: F401 - session fixtures


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def work(tmp_path) -> Path:
    """A folder with an image, a bitstream of it, and an output that already exists."""
    kodak_crop(tmp_path / "img.png", 64, 64)
    (tmp_path / "existing.png").write_bytes(b"keep me")
    (tmp_path / "notes.png").write_text("this is text, not an image\n")
    return tmp_path


@pytest.fixture(scope="module")
def stream(models, tmp_path_factory) -> bytes:  # noqa: F811
    from ctrlic.datamodules.image_io import load_rgb8, to_tensor

    image = kodak_crop(tmp_path_factory.mktemp("s") / "img.png", 64, 64)
    return load_codec(models["model"]).compress(to_tensor(load_rgb8(image)[0]), {"alpha": 0.5})


def expect_error(work: Path, *args, match: str) -> None:
    """Run ctrlic; assert exit code 2, one line on stderr containing ``match``, and no file in ``work`` changed."""
    before = _digest(work)
    proc = ctrlic(*args, home=work.parent / f"{work.name}-home")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("ctrlic: error: "), proc.stderr
    assert match in lines[0], lines[0]
    assert _digest(work) == before
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]


def test_missing_input(work, models):  # noqa: F811
    expect_error(work, "compress", work / "nope.png", work / "o.ctl", "--model", models["model"],
                 match="input '" + str(work / "nope.png") + "' does not exist")


def test_glob_that_matches_nothing(work, models):  # noqa: F811
    expect_error(work, "compress", str(work / "*.jpg"), work / "o", "--model", models["model"],
                 match="no files match")


def test_existing_output_is_not_overwritten_without_force(work, models):  # noqa: F811
    (work / "existing.ctl").write_bytes(b"keep me")
    expect_error(work, "compress", work / "img.png", work / "existing.ctl", "--model", models["model"],
                 match="exists; pass --force")


def test_output_onto_the_input_is_refused(work, models):  # noqa: F811
    expect_error(work, "compress", work / "img.png", work / "img.png", "--force", "--model", models["model"],
                 match="is an input file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_input(work, models):  # noqa: F811
    (work / "img.png").chmod(0)
    expect_error(work, "compress", work / "img.png", work / "o.ctl", "--model", models["model"],
                 match="cannot read image")


def test_non_image_input(work, models):  # noqa: F811
    expect_error(work, "compress", work / "notes.png", work / "o.ctl", "--model", models["model"],
                 match="not an image format")


def test_truncated_bitstream(work, stream):
    (work / "cut.ctl").write_bytes(stream[: len(stream) // 2])
    expect_error(work, "decompress", work / "cut.ctl", work / "o.png", match="truncated")


def test_corrupted_bitstream(work, stream):
    data = bytearray(stream)
    data[len(data) // 2] ^= 0x10
    (work / "bad.ctl").write_bytes(bytes(data))
    expect_error(work, "decompress", work / "bad.ctl", work / "o.png", match="checksum mismatch")


def test_bitstream_of_other_weights(work, stream, models):  # noqa: F811
    (work / "s.ctl").write_bytes(stream)
    expect_error(work, "decompress", work / "s.ctl", work / "o.png", "--model", models["other"],
                 match="made with other weights")


def test_bitstream_of_another_codec(work, stream, models):  # noqa: F811
    header, sections = bitstream.unpack(stream)
    forged = bitstream.Header(**{**header.__dict__, "codec": "tcm"})
    (work / "t.ctl").write_bytes(bitstream.pack(forged, sections))
    expect_error(work, "decompress", work / "t.ctl", work / "o.png", "--model", models["model"],
                 match="made by codec 'tcm'")


def test_bitstream_unknown_on_this_machine_needs_a_model(work, stream):
    (work / "s.ctl").write_bytes(stream)
    expect_error(work, "decompress", work / "s.ctl", work / "o.png", match="pass --model")


def test_model_that_is_not_a_ctrlic_codec(work):
    torch.save({"g_a.0.weight": torch.zeros(2, 2)}, work / "weights.pth")
    expect_error(work, "compress", work / "img.png", work / "o.ctl", "--model", work / "weights.pth",
                 match="not a ctrlic codec or checkpoint")


def test_knob_out_of_range(work, models):  # noqa: F811
    expect_error(work, "compress", work / "img.png", work / "o.ctl", "--model", models["model"], "--alpha", "1.5",
                 match="alpha=1.5 is out of range [0, 1]")


def test_knob_the_model_does_not_declare(work, models):  # noqa: F811
    expect_error(work, "compress", work / "img.png", work / "o.ctl", "--model", models["model"], "--beta", "0.2",
                 match="--beta: this model has no knob 'beta'; its knobs: alpha")


def test_target_rate_on_a_lossless_model(work, lossless_model):  # noqa: F811
    expect_error(work, "compress", work / "img.png", work / "o.ctl", "--model", lossless_model, "--bpp", "3",
                 match="is lossless: its rate is set by the image alone")


def test_interrupted_write_leaves_no_output(tmp_path):
    target = tmp_path / "out.ctl"
    target.write_bytes(b"old")

    def interrupted(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.ctl"]

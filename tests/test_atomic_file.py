"""Files written whole or not at all, with the permissions the user's umask asks for."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from ctrlic.codecs.build import build_codec, export_codec
from ctrlic.utils.atomic_file import atomic_write
from tests.test_codec import BACKBONE


@pytest.fixture
def umask():
    """Set a umask for the test and restore the old one after."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_umasks_mode(tmp_path, umask, mask, mode):
    umask(mask)
    with atomic_write(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"x")
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == mode


def test_an_exported_codec_file_is_readable_by_the_group_under_umask_022(tmp_path, umask):
    umask(0o022)
    torch.manual_seed(0)
    path = export_codec(build_codec(BACKBONE), tmp_path / "m.codec.safetensors")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]

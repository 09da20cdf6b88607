"""The ``ctrlic`` command against careless and hostile input: files that are not regular images, images
over the pixel limit, corrupt pixels in a batch, outputs that cannot be written or would replace an input,
conflicting or non-finite arguments, damaged weights, SIGTERM. Each bad case: exit 2, one line, nothing
the user had changed. The cases run through the real entry point, grouped in a few processes
(``ctrlic_many``), so the whole file costs about as many process starts as it has groups.
"""

from __future__ import annotations

import hashlib
import os
import pty
import random
import signal
import stat
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctrlic.codecs import bitstream
from ctrlic.codecs.build import load_codec
from ctrlic.codecs.tiling import DEFAULT_MAX_PIXELS
from ctrlic.datamodules.image_io import ImageReadError, load_rgb8, verify_image
from tests.helpers_cli import (  # noqa: F401 - session fixtures
    assert_one_error_line,
    ctrlic,
    ctrlic_many,
    family_codecs,
    kodak_crop,
    models,
)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corrupt_pixels_png(src: Path, dst: Path) -> Path:
    """``src`` with the second half of its compressed pixels replaced by 0xFF, chunk CRCs recomputed: Pillow's
    ``verify`` (structure and CRCs) passes, decoding the pixels fails."""
    data = src.read_bytes()
    out, i = bytearray(data[:8]), 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        if kind == b"IDAT":
            body = body[: n // 2] + b"\xff" * (n - n // 2)
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        i += 12 + n
    dst.write_bytes(bytes(out))
    return dst


def two_frames(src: Path, dst: Path) -> Path:
    """An animated GIF or multi-page TIFF (by suffix) of ``src`` and its negative."""
    arr = np.asarray(Image.open(src).convert("RGB"))
    Image.fromarray(arr).save(dst, save_all=True, append_images=[Image.fromarray(255 - arr)])
    return dst


class Scene:
    """A folder of awkward inputs and outputs, every command on it run in one process, outcomes by label."""

    def __init__(self, root: Path, model: Path) -> None:
        self.root, self.model = root, model
        self.calls: dict[str, list] = {}
        self.outcomes: dict = {}

    def add(self, label: str, *argv) -> None:
        self.calls[label] = list(argv)

    def run(self, **kwargs) -> None:
        done = ctrlic_many(list(self.calls.values()), home=self.root / "home", **kwargs)
        self.outcomes = dict(zip(self.calls, done, strict=True))

    def __getitem__(self, label: str):
        return self.outcomes[label]


@pytest.fixture(scope="module")
def scene(models, tmp_path_factory) -> Scene:  # noqa: F811
    root = tmp_path_factory.mktemp("trust")
    model = root / "model.codec.pt"
    model.write_bytes(Path(models["model"]).read_bytes())
    s = Scene(root, model)
    img = kodak_crop(root / "img.png", 64, 64)
    m = ["--model", model]

    # inputs that are not regular image files (item 5)
    os.mkfifo(root / "fifo.png")
    os.mkfifo(root / "fifo.ctl")
    os.mkfifo(root / "fifo.codec.pt")
    s.add("fifo image", "compress", root / "fifo.png", root / "o.ctl", *m)
    s.add("device image", "compress", "/dev/zero", root / "o.ctl", *m)
    s.add("fifo bitstream", "decompress", root / "fifo.ctl", root / "o.png", *m)
    s.add("fifo model", "compress", img, root / "o.ctl", "--model", root / "fifo.codec.pt")
    Image.new("1", (12000, 12000)).save(root / "bomb.png")  # 144 M pixels in a few kB
    s.add("image over the default limit", "compress", root / "bomb.png", root / "o.ctl", *m)
    s.add("image over a given limit", "compress", img, root / "o.ctl", "--max-pixels", "4000", *m)
    batch = root / "batch"
    batch.mkdir()
    kodak_crop(batch / "a.png", 64, 64)
    corrupt_pixels_png(batch / "a.png", batch / "b.png")
    kodak_crop(batch / "c.png", 64, 64)
    s.add("corrupt pixels in a batch", "compress", batch, root / "batch_out", *m)
    s.add("animated gif", "compress", two_frames(img, root / "anim.gif"), root / "anim.ctl", *m)
    s.add("multi-page tiff", "compress", two_frames(img, root / "pages.tif"), root / "pages.ctl", *m)

    # outputs (item 6)
    (root / "afile").write_text("a file, not a folder\n")
    s.add("parent is a file", "compress", img, root / "afile" / "o.ctl", *m)
    s.add("name too long", "compress", img, root / ("n" * 252 + ".ctl"), *m)
    s.add("longest name", "compress", img, root / ("n" * 251 + ".ctl"), *m)
    s.add("force onto the model", "compress", img, model, "--force", *m)
    s.add("bitstream named .png", "compress", img, root / "out.png", *m)
    s.add("new output", "compress", img, root / "new.ctl", *m)
    (root / "kept.ctl").write_bytes(b"old")
    (root / "kept.ctl").chmod(0o640)
    s.add("force keeps the mode", "compress", img, root / "kept.ctl", "--force", *m)
    s.add("first run", "compress", img, root / "done.ctl", "--alpha", "0.5", *m)
    s.add("skip a complete output", "compress", img, root / "done.ctl", "--alpha", "0.5", "--skip-existing", *m)
    s.add("skip at other knobs", "compress", img, root / "done.ctl", "--alpha", "0.6", "--skip-existing", *m)
    (root / "junk.ctl").write_bytes(b"not a bitstream")
    s.add("skip over a foreign file", "compress", img, root / "junk.ctl", "--skip-existing", *m)
    s.add("decode", "decompress", root / "done.ctl", root / "done.png", *m)
    s.add("skip a decoded image", "decompress", root / "done.ctl", root / "done.png", "--skip-existing", *m)

    # arguments (item 7)
    for label, extra, in [("bpp inf", ["--bpp", "inf"]), ("psnr nan", ["--psnr", "nan"]),
                          ("tolerance nan", ["--bpp", "0.3", "--tolerance", "nan"]),
                          ("alpha nan", ["--alpha", "nan"]),
                          ("set twice", ["--set", "alpha=0.5", "--set", "alpha=0.7"]),
                          ("set and shortcut", ["--set", "alpha=0.2", "--alpha", "0.9"]),
                          ("shortcut twice", ["--alpha", "0.2", "--alpha", "0.9"]),
                          ("bpp twice", ["--bpp", "0.3", "--bpp", "0.5"])]:
        s.add(label, "compress", img, root / "args.ctl", *extra, *m)
    s.add("same value twice", "compress", img, root / "same.ctl", "--set", "alpha=0.4", "--alpha", "0.4", *m)
    mixed = root / "mixed"
    mixed.mkdir()
    kodak_crop(mixed / "good.png", 64, 64)
    (mixed / "broken.png").write_text("not an image\n")
    unreadable = root / "unreadable"
    unreadable.mkdir()
    (unreadable / "broken.png").write_text("not an image\n")
    s.add("eval out is a file", "eval", *m, "--data", mixed, "--out", root / "afile")
    s.add("eval crop 0", "eval", *m, "--data", mixed, "--out", root / "ev", "--crop", "0")
    s.add("eval missing data", "eval", *m, "--data", root / "nowhere", "--out", root / "ev")
    s.add("eval shard 2/2", "eval", *m, "--data", mixed, "--out", root / "ev", "--shard", "2/2")
    s.add("eval workers 0", "eval", *m, "--data", mixed, "--out", root / "ev", "--workers", "0")
    s.add("eval scale levels 8", "eval", *m, "--data", mixed, "--out", root / "ev", "--scale-levels", "8")
    s.add("eval nothing readable", "eval", *m, "--data", unreadable, "--out", root / "ev")
    s.add("eval skips a file", "eval", *m, "--data", mixed, "--out", root / "ev_mixed", "--max-points", "1")
    s.run(umask=0o022)
    return s


def test_pipes_and_devices_are_refused_not_read(scene):
    for label, kind in (("fifo image", "a pipe (FIFO)"), ("device image", "a character device"),
                        ("fifo bitstream", "a pipe (FIFO)"), ("fifo model", "a pipe (FIFO)")):
        assert_one_error_line(scene[label], f"is {kind}; give a regular file")


def test_images_over_the_pixel_limit_are_refused_from_their_header(scene):
    assert_one_error_line(scene["image over the default limit"],
                          f"12000x12000 = 144,000,000 pixels, more than the limit of {DEFAULT_MAX_PIXELS:,}")
    assert_one_error_line(scene["image over a given limit"], "64x64 = 4,096 pixels, more than the limit of 4,000")


def test_corrupt_pixels_stop_a_batch_before_anything_is_written(scene):
    bad = scene.root / "batch" / "b.png"
    verify_image(bad)  # the structure check alone passes: only decoding the pixels finds the damage
    with pytest.raises(ImageReadError):
        load_rgb8(bad)
    assert_one_error_line(scene["corrupt pixels in a batch"], f"cannot read image '{bad}'")
    assert not (scene.root / "batch_out").exists()


def test_dropped_frames_are_noted(scene):
    for label in ("animated gif", "multi-page tiff"):
        outcome = scene[label]
        assert outcome.code == 0, outcome.stderr
        assert "coded the first of its 2 frames" in outcome.stderr


def test_output_places_that_cannot_be_written_are_refused_up_front(scene):
    assert_one_error_line(scene["parent is a file"], f"'{scene.root / 'afile'}' is a file, not a folder")
    assert_one_error_line(scene["name too long"], "longer than the 255 bytes a file name may have")
    assert scene["longest name"].code == 0, scene["longest name"].stderr  # its hidden temporary name fits too
    assert (scene.root / ("n" * 251 + ".ctl")).is_file()


def test_force_never_overwrites_the_model(scene, models):  # noqa: F811
    assert_one_error_line(scene["force onto the model"], "is the model file")
    assert _digest(scene.model) == _digest(Path(models["model"]))


def test_a_bitstream_is_not_written_under_an_image_name(scene):
    assert_one_error_line(scene["bitstream named .png"], f"name the output '{scene.root / 'out.ctl'}'")
    assert not (scene.root / "out.png").exists()


def test_outputs_follow_the_umask_and_force_keeps_the_mode(scene):
    assert scene["new output"].code == 0 and scene["force keeps the mode"].code == 0
    assert stat.S_IMODE((scene.root / "new.ctl").stat().st_mode) == 0o644  # umask 022
    assert stat.S_IMODE((scene.root / "kept.ctl").stat().st_mode) == 0o640
    assert (scene.root / "kept.ctl").read_bytes().startswith(bitstream.MAGIC)


def test_skip_existing_keeps_complete_outputs_only(scene):
    assert scene["first run"].code == 0
    skipped = scene["skip a complete output"]
    assert skipped.code == 0 and "exists and is complete; skipped" in skipped.stderr and not skipped.stdout
    assert_one_error_line(scene["skip at other knobs"], "not a complete bitstream of this model at these knob values")
    assert_one_error_line(scene["skip over a foreign file"], "not a complete bitstream")
    assert (scene.root / "junk.ctl").read_bytes() == b"not a bitstream"
    assert scene["decode"].code == 0
    assert scene["skip a decoded image"].code == 0 and "skipped" in scene["skip a decoded image"].stderr


def test_non_finite_and_conflicting_arguments_are_refused(scene):
    assert_one_error_line(scene["bpp inf"], "--bpp inf: give a finite number above 0")
    assert_one_error_line(scene["psnr nan"], "--psnr nan: give a finite number above 0")
    assert_one_error_line(scene["tolerance nan"], "--tolerance nan: give a finite number above 0")
    assert_one_error_line(scene["alpha nan"], "'nan' is not a finite number")
    assert_one_error_line(scene["set twice"], "knob 'alpha' is given twice with different values (--set alpha gives "
                                              "0.5, --set alpha gives 0.7)")
    assert_one_error_line(scene["set and shortcut"], "(--set alpha gives 0.2, --alpha gives 0.9)")
    assert_one_error_line(scene["shortcut twice"], "--alpha is given twice with different values (0.2 and 0.9)")
    assert_one_error_line(scene["bpp twice"], "--bpp is given twice with different values (0.3 and 0.5)")
    assert scene["same value twice"].code == 0, scene["same value twice"].stderr
    assert not (scene.root / "args.ctl").exists()


def test_eval_arguments_and_messages_speak_cli(scene):
    assert_one_error_line(scene["eval out is a file"], f"--out '{scene.root / 'afile'}' is a file")
    assert_one_error_line(scene["eval crop 0"], "--crop 0: give the side of the centre crop")
    assert_one_error_line(scene["eval missing data"], "does not exist; give a folder of images")
    assert_one_error_line(scene["eval nothing readable"], "none of the 1 images in --data")
    assert_one_error_line(scene["eval shard 2/2"], "--shard 2/2: write it as I/N with 0 <= I < N")
    assert_one_error_line(scene["eval workers 0"], "--workers 0: give at least 1 coding process")
    assert_one_error_line(scene["eval scale levels 8"], "--scale-levels 8: choose between 64")
    for label in ("eval out is a file", "eval crop 0", "eval missing data", "eval nothing readable", "eval shard 2/2",
                  "eval workers 0", "eval scale levels 8"):
        assert "data." not in scene[label].stderr and "=/path" not in scene[label].stderr  # no Hydra keys
    mixed = scene["eval skips a file"]
    assert mixed.code == 0, mixed.stderr
    assert "skipping unreadable image" in mixed.stderr and "broken.png" in mixed.stderr
    assert "the results will cover 1 of the 2 images" in mixed.stderr


def _corrupt(src: Path, dst: Path, change) -> Path:
    """A codec file like ``src`` with ``change(name, tensor)`` applied to its float weights, written in the
    codec file format as it is (``export_codec`` itself refuses damaged weights)."""
    codec = load_codec(src)
    state = {name: tensor.clone() for name, tensor in codec.backbone.state_dict().items()}
    for name, tensor in state.items():
        if tensor.is_floating_point():
            change(name, tensor)
    try:
        from ctrlic.codecs.codec_file import write_codec_file  # the safetensors codec file, where present
    except ImportError:
        from ctrlic.codecs.build import EXPORT_FORMAT

        torch.save({"format": EXPORT_FORMAT, "arch": codec.arch, "state_dict": state}, dst)
        return dst
    return write_codec_file(dst, codec.arch, state, "")


def test_damaged_weights_and_failed_writes_end_in_one_line(tmp_path, tmp_path_factory):
    """NaN or ×1e6 weights used to make CompressAI's coder spin forever; a write that the file system refuses
    (here: RLIMIT_FSIZE, as a full disk would) used to be an internal error after the model was loaded."""
    families = family_codecs(tmp_path_factory.getbasetemp() / "families")
    img = kodak_crop(tmp_path / "img.png", 64, 64)
    calls, expected = [], []
    for name in ("cheng2020_attn", "stf", "mgcf"):
        src = families[name]["model"]
        cases = {
            "nan": (lambda k, t: t.view(-1)[0].fill_(float("nan")), "weights hold NaN or infinite values"),
            "x1e6": (lambda k, t: t.mul_(1e6), "spans" if name != "mgcf" else "NaN or infinite"),
            "analysis x1e6": (lambda k, t: t.mul_(1e6) if k.startswith(("g_a", "patch_embed", "layers", "embed",
                                                                      "blocks")) else None,
                              "the latent z" if name != "mgcf" else "NaN or infinite"),
        }
        for kind, (change, match) in cases.items():
            model = _corrupt(src, tmp_path / f"{name}_{kind}.codec.pt", change)
            calls.append(["compress", img, tmp_path / f"{name}_{kind}.ctl", "--model", model])
            expected.append(match)
    calls.append(["compress", img, tmp_path / "too_big.ctl", "--model", families["cheng2020_attn"]["model"]])
    expected.append(f"cannot write '{tmp_path / 'too_big.ctl'}': File too large")
    for outcome, match in zip(ctrlic_many(calls, home=tmp_path / "home", timeout=600, file_limit=64), expected,
                              strict=True):
        assert_one_error_line(outcome, match)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".ctl" or p.name.endswith(".tmp")) == []


def test_a_bitstream_batch_that_fails_half_way_writes_nothing(tmp_path, tmp_path_factory):
    families = family_codecs(tmp_path_factory.getbasetemp() / "families")
    files = families["stf"]
    good = files["whole"].read_bytes()
    header, sections = bitstream.unpack(good)
    (tmp_path / "a.ctl").write_bytes(good)
    bad = [random.Random(1).randbytes(len(sections[0])), sections[1]]  # passes every check before decoding
    (tmp_path / "b.ctl").write_bytes(bitstream.pack(header, bad))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"the user's own a.png")
    (outcome,) = ctrlic_many([["decompress", tmp_path / "a.ctl", tmp_path / "b.ctl", tmp_path / "out",
                               "--force", "--model", files["model"]]], home=tmp_path / "home")
    assert_one_error_line(outcome, f"'{tmp_path / 'b.ctl'}': section y ")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]
    assert (tmp_path / "out" / "a.png").read_bytes() == b"the user's own a.png"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused_before_loading(tmp_path, models):  # noqa: F811
    img = kodak_crop(tmp_path / "img.png", 64, 64)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    proc = ctrlic("compress", img, locked / "o.ctl", "--model", models["model"], home=tmp_path / "home")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"cannot write into output folder '{locked}'" in proc.stderr


def _drain(fd: int, into: bytearray) -> threading.Thread:
    """Read a pty into ``into`` until its other end closes (a full pty would block the writer)."""
    def read() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            into.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_sigterm_is_an_interrupt_and_skip_existing_continues(tmp_path, models):  # noqa: F811
    """SIGTERM in a batch: one message, exit 143, the cursor shown again, finished outputs kept, no partial file;
    the rerun with --skip-existing codes only the rest."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        kodak_crop(photos / f"p{i}.png", 128, 192)
    out = tmp_path / "out"
    args = ["compress", photos, out, "--model", models["model"], "--bpp", "0.5"]
    script = Path(sys.executable).parent / "ctrlic"
    leader, follower = pty.openpty()  # stderr on a terminal: the progress bar hides the cursor
    env = {**os.environ, "CTRLIC_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([script, *map(str, args)], stdout=subprocess.PIPE, stderr=follower, env=env, text=True)
    os.close(follower)
    screen = bytearray()
    reader = _drain(leader, screen)
    first = proc.stdout.readline()  # one image coded
    assert "->" in first, (first, proc.wait(timeout=600), proc.stdout.read(), bytes(screen))
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    proc.wait(timeout=600)
    reader.join(timeout=30)
    os.close(leader)
    screen = bytes(screen)
    assert proc.returncode == 143, screen
    assert b"ctrlic: error: terminated (SIGTERM); finished outputs were kept, no partial output was left" in screen
    assert b"\x1b[?25l" in screen and screen.rfind(b"\x1b[?25h") > screen.rfind(b"\x1b[?25l")  # cursor back
    kept = sorted(p.name for p in out.iterdir())
    assert 1 <= len(kept) < 5 and all(n.endswith(".ctl") for n in kept), kept  # no .tmp left
    assert len(kept) == 1 + rest.count("->")
    again = ctrlic(*args, "--skip-existing", home=tmp_path / "home")
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("exists and is complete; skipped") == len(kept)
    assert again.stdout.count("->") == 5 - len(kept)
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.ctl" for i in range(5)]

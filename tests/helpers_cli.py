"""Shared by the ``ctrlic`` command tests: the session's tiny CALICE codec (trained once, in
tests/conftest.py) and its twin with other weights, test images in odd formats, and the console script."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import resource
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctrlic.cli import main
from ctrlic.codecs.build import build_codec, export_codec
from ctrlic.datamodules.image_io import load_rgb8, to_tensor
from tests import forked
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
    """Run the ``ctrlic`` command (``ctrlic.cli:main``, the console script's entry) in a process of its own;
    ``home`` isolates its model index."""
    return forked.run(main, args, env=_env(home), timeout=timeout)


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "CTRLIC_HOME": str(home), "OMP_NUM_THREADS": "1"}


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


@dataclass
class Outcome:
    """What one ``ctrlic`` command did: exit code and output."""

    argv: list[str]
    code: int
    stdout: str
    stderr: str


def ctrlic_many(calls: Sequence[Sequence[str | Path]], home: Path, timeout: int = 600, *,
                data_limit: int | None = None, file_limit: int | None = None,
                umask: int | None = None) -> list[Outcome]:
    """Run many ``ctrlic`` commands through ``ctrlic.cli.main``, one after another in ONE process of their own
    (what one command loads stays loaded for the next). ``data_limit`` caps the heap while a command runs
    (RLIMIT_DATA), ``file_limit`` the size of any file it writes (RLIMIT_FSIZE: writes beyond fail as on a
    full disk).

    RLIMIT_DATA rather than RLIMIT_AS: torch alone maps about 3.2 GB of address space, so an address-space
    cap low enough to catch a runaway allocation would stop any torch process.
    """
    argvs = [[str(a) for a in call] for call in calls]
    caps = {"data_limit": data_limit, "file_limit": file_limit, "umask": umask}
    proc = forked.run(_many, [json.dumps(argvs), json.dumps(caps)], env=_env(home), timeout=timeout)
    done = [Outcome(**json.loads(line)) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(done) == len(argvs), (
        f"the command process died (exit {proc.returncode}) after {len(done)} of {len(argvs)} commands, at "
        f"{argvs[len(done)] if len(done) < len(argvs) else '-'}:\n{proc.stderr[-3000:]}")
    return done


def _many(argv: list[str]) -> int:
    """In the forked process: each command of ``argv[0]`` (JSON) under the caps of ``argv[1]``, its exit code and
    output printed as one JSON line once the caps are lifted again."""
    calls, caps = json.loads(argv[0]), json.loads(argv[1])
    if caps["umask"] is not None:
        os.umask(caps["umask"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond RLIMIT_FSIZE fails, it does not kill
    for call in calls:
        out, err = io.StringIO(), io.StringIO()
        with _capped(resource.RLIMIT_DATA, caps["data_limit"]), _capped(resource.RLIMIT_FSIZE, caps["file_limit"]), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(call)
            except SystemExit as exc:
                code = exc.code
        print(json.dumps({"argv": call, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}),
              flush=True)
    return 0


@contextlib.contextmanager
def _capped(limit: int, value: int | None):
    """The soft ``limit`` at ``value`` inside, as it was outside (the hard limit stays, so it can be lifted)."""
    if value is None:
        yield
        return
    soft, hard = resource.getrlimit(limit)
    resource.setrlimit(limit, (value, hard))
    try:
        yield
    finally:
        resource.setrlimit(limit, (soft, hard))


def assert_one_error_line(outcome: Outcome, match: str) -> None:
    """Exit code 2 and exactly one ``ctrlic: error:`` line on stderr that contains ``match``."""
    lines = outcome.stderr.strip().splitlines()
    assert outcome.code == 2, (outcome.argv, outcome.code, outcome.stderr)
    assert len(lines) == 1 and lines[0].startswith("ctrlic: error: "), (outcome.argv, outcome.stderr)
    assert match in lines[0], (outcome.argv, match, lines[0])


#: one tiny codec of every backbone family (random weights: decoding is what these tests look at)
FAMILIES = ("cheng2020_attn", "stf", "tcm", "tic", "tic_hyperprior", "mgcf", "vqgan")


@functools.cache
def family_codecs(root: Path) -> dict[str, dict[str, Path]]:
    """Per family: the exported model, the bitstream of a 64×64 crop, and of a 64×128 crop in 64-pixel tiles."""
    from omegaconf import OmegaConf

    crop = to_tensor(load_rgb8(KODAK / "kodim01.png")[0])[:, 200:264, 300:428]
    out = {}
    for name in FAMILIES:
        torch.manual_seed(0)
        cfg = {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "backbone" / f"{name}.yaml")), "size": "tiny"}
        codec = build_codec(cfg)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        files = {"model": export_codec(codec, folder / f"{name}.codec.pt")}
        files["whole"] = folder / "whole.ctl"
        files["whole"].write_bytes(codec.compress(crop[:, :, :64]))
        codec.set_options(tile=64)
        files["tiled"] = folder / "tiled.ctl"
        files["tiled"].write_bytes(codec.compress(crop))
        out[name] = files
    return out

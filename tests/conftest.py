"""Shared fixtures: the real CLI in a process of its own (forked from one that has done the imports:
tests/forked.py), and the trained runs and models reused by many tests (each trained once per session, also
when pytest-xdist runs the suite in several processes)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: `make test` runs one worker per core
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from tests import forked

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*overrides: str, timeout: int = 600, check: bool = True, env: dict | None = None,
            script: str = "run.py") -> subprocess.CompletedProcess:
    """Run ``python run.py OVERRIDES`` from the repository root; fail with its output on error."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_SILENT": "true", **(env or {})}
    proc = forked.run(script, overrides, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(overrides)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


SMOKE = ("experiment=demo", "debug=smoke")


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> object:
    """``build(folder)`` once per test session; its result must be JSON. Under pytest-xdist the workers
    of one run share the folder: the first to take the lock builds, the others read what it returned."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # one per run, shared by its workers
    folder, done = root / name, root / name / ".built.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            folder.mkdir(exist_ok=True)
            done.write_text(json.dumps(build(folder)))
        return json.loads(done.read_text())


def fresh_clone_offline(tmp_path: Path) -> dict[str, str]:
    """Environment of a fresh clone on a machine without network: no data sets (CTRLIC_DATA and
    CTRLIC_SHARED empty) and an empty torch hub cache (TORCH_HOME), which must stay empty."""
    env = {"CTRLIC_DATA": tmp_path / "no_data", "CTRLIC_SHARED": tmp_path / "no_shared", "TORCH_HOME": tmp_path / "torch"}
    for folder in env.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {key: str(folder) for key, folder in env.items()}


def assert_info_without_data(run_dir: Path, stdout: str, env: dict[str, str]) -> dict:
    """``task=info`` ran in ``fresh_clone_offline``: it reported the missing data and built no loss network."""
    import json

    info = json.loads((run_dir / "info.json").read_text())
    assert "does not exist" in info["data"]["unavailable"]
    assert info["data"]["folders"]["train_dir"]["exists"] is False
    assert "task=info does not need it" in " ".join(stdout.split())  # rich wraps lines at 80 columns
    assert not any(Path(env["TORCH_HOME"]).rglob("*")), "task=info fetched network weights"
    return info


def alpha_adapters_config(preset: str) -> dict:
    """``control=alpha_adapters_<preset>`` (cheng, stf, tcm) as composed: the one copy of CALICE's patterns."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(ROOT / "conf" / "control" / f"alpha_adapters_{preset}.yaml")
    control = OmegaConf.merge(OmegaConf.load(ROOT / "conf" / "control" / "alpha_adapters.yaml"),
                              OmegaConf.masked_copy(node, [k for k in node if k != "defaults"]))
    return OmegaConf.to_container(control)


def tiny_stf_with_adapters() -> tuple[dict, dict]:
    """The ``backbone=stf`` (size tiny) and ``control=alpha_adapters_stf`` configs as plain dicts."""
    from omegaconf import OmegaConf

    backbone = {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "backbone" / "stf.yaml")), "size": "tiny"}
    return backbone, alpha_adapters_config("stf")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """``experiment=demo debug=smoke`` trained once: checkpoints, results.json, rd.png, bitstreams."""
    return Path(built_once(tmp_path_factory, "smoke_run",
                           lambda out: run_cli(*SMOKE, f"hydra.run.dir={out}") and str(out)))


@pytest.fixture(scope="session")
def calice_smoke_run(tmp_path_factory) -> Path:
    """``experiment=calice_stf debug=smoke data=demo`` trained once: an α sweep with its report."""
    return Path(built_once(tmp_path_factory, "calice_smoke_run", lambda out: run_cli(
        "experiment=calice_stf", "debug=smoke", "data=demo", f"hydra.run.dir={out}") and str(out)))


def _gpu_skip_reason(config) -> str | None:
    """Why the ``gpu`` tests do not run here, or None when they do.

    They run only when selected (``-m gpu``, as ``make test-gpu`` does) and either CUDA is there or
    ``CTRLIC_TEST_DEVICE=cpu`` asks for their CPU rehearsal at tiny size. A skip is never a pass.
    """
    if "gpu" not in (config.getoption("markexpr") or "") or "not gpu" in config.getoption("markexpr"):
        return "GPU suite: runs with `make test-gpu` (pytest -m gpu) on a CUDA machine"
    if os.environ.get("CTRLIC_TEST_DEVICE", "cuda") == "cpu":
        return None
    import torch

    if not torch.cuda.is_available():
        return ("needs CUDA: torch.cuda.is_available() is False on this machine "
                "(CTRLIC_TEST_DEVICE=cpu rehearses these tests on the CPU at tiny size)")
    return None


def pytest_collection_modifyitems(config, items) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    reason = _gpu_skip_reason(config) if gpu_items else None
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def tiny_calice(tmp_path_factory) -> dict[str, Path]:
    """The tiny CALICE-STF (anchor, α-adapters) trained once: codec files ``{"anchor", "model", "other"}``."""
    from tests.helpers_calice import train_tiny_calice

    paths = built_once(tmp_path_factory, "tiny_calice",
                       lambda out: {k: str(v) for k, v in train_tiny_calice(out).items()})
    return {k: Path(v) for k, v in paths.items()}


def info_in_process(run_dir: Path, *overrides: str) -> tuple[dict, str]:
    """``python run.py task=info OVERRIDES`` without a new process (the same composition and task code):
    the written info.json and the printed text."""
    import contextlib
    import io
    import json

    from ctrlic.tasks.info import info
    from tests.test_configs import compose_cfg

    cfg = compose_cfg("task=info", *overrides)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        info(cfg, run_dir)
    return json.loads((run_dir / "info.json").read_text()), out.getvalue()

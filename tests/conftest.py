"""Shared fixtures: the real CLI in a subprocess, and one tiny trained run reused by many tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*overrides: str, timeout: int = 600, check: bool = True, env: dict | None = None,
            script: str = "run.py") -> subprocess.CompletedProcess:
    """Run ``python run.py OVERRIDES`` from the repository root; fail with its output on error."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_SILENT": "true", **(env or {})}
    proc = subprocess.run([sys.executable, script, *overrides], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(overrides)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


SMOKE = ("experiment=demo", "debug=smoke")


def tiny_stf_with_adapters() -> tuple[dict, dict]:
    """The ``backbone=stf`` (size tiny) and ``control=alpha_adapters_stf`` configs as plain dicts."""
    from omegaconf import OmegaConf

    conf = ROOT / "conf"
    backbone = {**OmegaConf.to_container(OmegaConf.load(conf / "backbone" / "stf.yaml")), "size": "tiny"}
    preset = OmegaConf.load(conf / "control" / "alpha_adapters_stf.yaml")
    control = OmegaConf.merge(OmegaConf.load(conf / "control" / "alpha_adapters.yaml"),
                              OmegaConf.masked_copy(preset, [k for k in preset if k != "defaults"]))
    return backbone, OmegaConf.to_container(control)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """``experiment=demo debug=smoke`` trained once: checkpoints, results.json, rd.png, bitstreams."""
    out = tmp_path_factory.mktemp("smoke_run")
    run_cli(*SMOKE, f"hydra.run.dir={out}")
    return out


@pytest.fixture(scope="session")
def calice_smoke_run(tmp_path_factory) -> Path:
    """``experiment=calice_stf debug=smoke data=demo`` trained once: an α sweep with its report."""
    out = tmp_path_factory.mktemp("calice_smoke_run")
    run_cli("experiment=calice_stf", "debug=smoke", "data=demo", f"hydra.run.dir={out}")
    return out


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

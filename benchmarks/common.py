"""Helpers shared by the benchmark scripts: machine info, JSON output, running run.py."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
#: packages whose versions every result records
VERSIONED = ("compressai", "lightning", "numpy", "constriction", "imagecodecs")


def machine_info() -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        **{name: _version(name) for name in VERSIONED},
        "ctrlic_commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _commit() -> str | None:
    """The checkout's short commit, None without git or a repository (e.g. a copied tree on a GPU machine)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def _version(name: str) -> str | None:
    """The installed version of a package, None when it is not installed (e.g. imagecodecs on a GPU image)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def timed_round_trip(codec, x, knobs=None) -> tuple[bytes, object, float, float]:
    """Compress then decompress in memory: (bitstream, decoded image, encode seconds, decode seconds)."""
    start = time.perf_counter()
    data = codec.compress(x, knobs)
    encode = time.perf_counter() - start
    start = time.perf_counter()
    x_hat = codec.decompress(data)
    return data, x_hat, encode, time.perf_counter() - start


def write_json(name: str, payload: dict, out_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<out_dir>/<name>.json`` with the machine info and the command that produced it.

    A ``markdown`` entry of ``payload`` (the figure as one line of Markdown) is printed too.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine_info(), **payload}
    path.write_text(json.dumps(payload, indent=2))
    if "markdown" in payload:
        print(payload["markdown"])
    return path


def run_py(*overrides: str, log: Path | None = None) -> float:
    """Run ``python run.py OVERRIDES`` (raising with its log tail on failure); returns seconds taken."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "run.py", *overrides], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"run.py {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start

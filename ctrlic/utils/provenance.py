"""What a run directory records so that a result can be traced: config, code version, packages."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def _git(args: list[str], cwd: Path) -> str:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        return f"git unavailable: {err}\n"


def write_provenance(cfg: DictConfig, run_dir: Path, repo_dir: Path) -> Path:
    """Write ``provenance/{config.yaml, git_commit.txt, git_diff.patch, pip_freeze.txt}``."""
    out = Path(run_dir) / "provenance"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    commit = _git(["rev-parse", "HEAD"], repo_dir).strip() or "not a git checkout"
    (out / "git_commit.txt").write_text(commit + "\n" + _git(["status", "--short"], repo_dir))
    (out / "git_diff.patch").write_text(_git(["diff", "HEAD"], repo_dir))
    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"])
    (out / "pip_freeze.txt").write_text("\n".join(packages) + "\n")
    return out

"""The local one-node Slurm cluster of ``start.sh``, as the tests use it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

START = Path(__file__).with_name("start.sh")
#: exit code of start.sh when Slurm cannot run on this machine (its "SKIP: ..." line says why)
CANNOT_RUN = 3


@dataclass
class LocalSlurm:
    """A running cluster: its state folder and the environment its commands and jobs need."""

    state_dir: Path

    @property
    def env(self) -> dict[str, str]:
        """``SLURM_CONF`` for sbatch & co.; one thread per job, as the machine is shared."""
        return {"SLURM_CONF": str(self.state_dir / "slurm.conf"), "OMP_NUM_THREADS": "1"}

    def command(self, *args: str) -> str:
        """Run a Slurm client command (``squeue``, ``scancel``, ...) against this cluster."""
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env={**os.environ, **self.env})
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def stop(self) -> None:
        subprocess.run(["bash", str(START), "stop", str(self.state_dir)], capture_output=True, text=True,
                       timeout=120)


def start_cluster() -> tuple[LocalSlurm | None, str]:
    """Start a cluster in a new /tmp folder (short paths: munge's socket); returns it, or None and why
    not. Raises when Slurm is there but the cluster does not come up (a bug to fix, not a skip)."""
    if os.environ.get("CTRLIC_SLURM") == "skip":
        return None, "CTRLIC_SLURM=skip"
    state_dir = Path(tempfile.mkdtemp(prefix="ctrlic-slurm.", dir="/tmp"))
    proc = subprocess.run(["bash", str(START), "start", str(state_dir)], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode == CANNOT_RUN:
        shutil.rmtree(state_dir, ignore_errors=True)
        reason = next((line.removeprefix("SKIP: ") for line in proc.stdout.splitlines() if line.startswith("SKIP: ")),
                      proc.stdout.strip())
        return None, reason
    if proc.returncode != 0:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise RuntimeError(f"tests/slurm/start.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return LocalSlurm(state_dir), ""

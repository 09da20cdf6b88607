"""Multirun sweeps through real Hydra launchers."""

from __future__ import annotations

from ctrlic.evaluation.results import load_results
from tests.conftest import run_cli


def test_two_job_multirun_through_submitit_local_writes_two_results(tmp_path):
    run_cli("-m", "hydra/launcher=submitit_local", "experiment=demo", "debug=smoke", "data.eval_limit=1",
            "module.lmbda=0.0067,0.013", f"hydra.sweep.dir={tmp_path}")
    lambdas = []
    for job in ("0", "1"):
        results = load_results(tmp_path / job / "results.json")
        assert results["results"]["bpp"][0] > 0
        lambdas.append((tmp_path / job / "provenance" / "config.yaml").read_text().split("lmbda: ")[1].split()[0])
    assert sorted(lambdas) == ["0.0067", "0.013"]


def test_slurm_launcher_config_composes():
    out = run_cli("hydra/launcher=slurm", "experiment=demo", "--cfg", "hydra", "-p", "hydra.launcher").stdout
    assert "SlurmLauncher" in out and "max_num_timeout: 5" in out

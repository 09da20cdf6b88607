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


def test_optuna_search_of_three_trials_reports_the_best(tmp_path):
    import yaml

    run_cli("-m", "hparams_search=optuna_lr", "experiment=demo", "debug=smoke", "hydra.sweeper.n_trials=3",
            "callbacks.rd_sweep=null", f"hydra.sweep.dir={tmp_path}")
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert 1e-5 <= best["best_params"]["module.lr"] <= 1e-3
    assert best["best_value"] > 0  # the final val/loss returned by run.py
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1", "2"]

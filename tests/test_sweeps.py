"""Multirun sweeps through real Hydra launchers."""

from __future__ import annotations

import csv

import pytest

from ctrlic.evaluation.results import load_results
from tests.conftest import run_cli


@pytest.mark.slow  # ~60 s; the Slurm tests send the submitit launcher through sbatch in the default suite
def test_two_job_multirun_through_submitit_local_writes_two_results(tmp_path):
    run_cli("-m", "hydra/launcher=submitit_local", "experiment=demo", "debug=smoke", "data.eval_limit=1",
            "module.lmbda=0.0067,0.025", f"hydra.sweep.dir={tmp_path}")  # not 0.013: smoke_run trains that one
    lambdas = []
    for job in ("0", "1"):
        results = load_results(tmp_path / job / "results.json")
        assert results["results"]["bpp"][0] > 0
        lambdas.append((tmp_path / job / "provenance" / "config.yaml").read_text().split("lmbda: ")[1].split()[0])
    assert sorted(lambdas) == ["0.0067", "0.025"]
    # the summary written when the multirun ended (hydra.callbacks.summary): one row and one curve per job
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1"]
    assert sorted(r["overrides"] for r in rows) == ["module.lmbda=0.0067", "module.lmbda=0.025"]
    assert all(float(r["mean_bpp"]) > 0 and float(r["loss"]) > 0 for r in rows)
    assert (tmp_path / "summary.md").read_text().count("| module.lmbda=") == 2
    assert (tmp_path / "summary_rd.png").is_file()


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


SLURM_TASK = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "ctrlic", "SLURM_JOB_ID": "4242",
              "SLURM_NODELIST": "node001", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


def _compose(*overrides: str):
    from hydra import compose, initialize_config_dir

    import ctrlic  # noqa: F401 - registers resolvers
    from tests.conftest import ROOT

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_slurm_trainer_takes_ranks_from_slurm_and_the_launcher_follows_it(tmp_path, monkeypatch):
    import hydra
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from ctrlic.utils.checkpoint_io import AtomicCheckpointIO

    cfg = _compose("hydra/launcher=slurm", "trainer=slurm", "trainer.num_nodes=2", "trainer.devices=4")
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)
    for key, value in SLURM_TASK.items():
        monkeypatch.setenv(key, value)
    for key in ("MASTER_ADDR", "MASTER_PORT"):  # SLURMEnvironment writes them: restore them after the test
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)
    cfg = _compose("trainer=slurm", "trainer.accelerator=cpu", "trainer.precision=32-true",
                   f"paths.output_dir={tmp_path}")
    trainer = hydra.utils.instantiate(cfg.trainer)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and not environment.auto_requeue
    assert environment.main_address == "node001" and environment.world_size() == 1
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_slurm_launcher_asks_for_gpus_only_when_the_trainer_trains_on_them():
    cpu = _compose("hydra/launcher=slurm").hydra.launcher
    assert (cpu.gpus_per_node, cpu.tasks_per_node) == (None, 1)
    gloo = _compose("hydra/launcher=slurm", "trainer=ddp", "trainer.accelerator=cpu").hydra.launcher
    assert (gloo.gpus_per_node, gloo.tasks_per_node) == (None, 2)
    gpus = _compose("hydra/launcher=slurm", "trainer=ddp").hydra.launcher  # accelerator=auto: GPUs on a GPU node
    assert (gpus.gpus_per_node, gpus.tasks_per_node) == (2, 2)


def test_bdrate_search_returns_the_sweeps_bd_rate():
    from ctrlic.callbacks.rd_sweep import RDSweep
    from ctrlic.tasks.train import rd_metrics

    cfg = _compose("hparams_search=optuna_bdrate", "experiment=calice_stf")
    assert cfg.objective == "rd/bd_rate" and cfg.hydra.sweeper.direction == "minimize"
    assert set(cfg.hydra.sweeper.params) == {"module.lr", "module.lmbda_min", "control.rank"}
    sweep = RDSweep()
    sweep.results = {name: {"results": {"bpp": [0.2, 0.4]}, "meta": {"bd_rate": {"value": value}}}
                     for name, value in (("kodak", -4.5), ("clic", None))}
    metrics = rd_metrics([sweep])
    assert metrics["rd/bd_rate"] == metrics["rd/kodak/bd_rate"] == -4.5
    assert "rd/clic/bd_rate" not in metrics and metrics["rd/clic/mean_bpp"] == pytest.approx(0.3)

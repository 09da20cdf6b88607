"""Every config group option and experiment composes; the CLI explains itself and rejects typos."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import ctrlic  # noqa: F401 - registers resolvers
from tests.conftest import ROOT, run_cli

CONF = ROOT / "conf"
GROUPS = ["backbone", "control", "module", "module/loss", "module/optimizer", "module/scheduler", "data", "trainer",
          "logger", "callbacks", "debug", "experiment", "hparams_search", "scale"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_cfg(*overrides: str):
    """Compose and resolve every interpolation (the run directory is fixed, as Hydra would set it)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["paths.output_dir=/tmp/ctrlic-compose", *overrides])
    OmegaConf.resolve(cfg)
    return cfg


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_a_group_composes(group):
    for name in options(group):
        cfg = compose_cfg(f"{group}={name}")
        assert cfg.task == "train"


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_with_smoke(experiment):
    cfg = compose_cfg(f"experiment={experiment}", "debug=smoke")
    assert cfg.backbone.size == "tiny"
    assert cfg.data.crop_size == 64 and cfg.data.batch_size == 2
    assert cfg.eval.max_points == 5
    for key in ("backbone", "control", "module", "data", "trainer"):
        assert "_target_" in cfg[key], key


def test_top_level_keys_exist():
    cfg = compose_cfg()
    assert {"task", "seed", "ckpt_path"} <= set(cfg)


def test_help_lists_the_config_groups():
    out = run_cli("--help").stdout
    for group in ["backbone", "control", "module", "data", "trainer", "logger", "experiment", "debug"]:
        assert f"{group}:" in out


def test_override_typo_gives_hydra_error():
    proc = run_cli("backbone=chen2020_attn", check=False)
    assert proc.returncode != 0
    assert "Could not find 'backbone/chen2020_attn'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_key_typo_gives_hydra_error():
    proc = run_cli("trainer.max_stepz=3", check=False)
    assert proc.returncode != 0
    assert "Could not override 'trainer.max_stepz'" in proc.stderr


def test_missing_data_folder_stops_at_start_naming_the_key(tmp_path: Path):
    proc = run_cli("experiment=demo", "debug=smoke", f"data.train_dir={tmp_path / 'nope'}",
                   f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert proc.returncode == 2
    log = proc.stdout + proc.stderr
    assert "data.train_dir" in log and "does not exist" in log
    assert "Traceback" not in log

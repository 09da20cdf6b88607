"""Real jobs through sbatch on the local cluster: a two-job sweep, and a preempted job that is
requeued and continues where it stopped (``resume=auto``, same run directory, same W&B run), and a sharded
evaluation as a job array whose merged results equal a local run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from ctrlic.callbacks.preemption import PREEMPTED_CHECKPOINT
from ctrlic.codecs.build import export_codec
from ctrlic.tasks.evaluate import shared_folder
from ctrlic.utils.wandb_logger import run_id_for
from tests.conftest import ROOT, SMOKE, run_cli
from tests.helpers_eval import codec, comparable
from tests.helpers_resume import by_step, read_steps
from tests.helpers_wandb import history_rows, run_info

# what the one-node cluster has: one CPU and 1 GB per job, 10 minutes, its one partition
LAUNCHER = ("hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10")
WANDB_OFFLINE = {"WANDB_API_KEY": "", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def job_logs(sweep_dir: Path) -> dict[str, str]:
    """submitit's stdout log of each job (``.submitit/<job id>/<job id>_0_log.out``), by job id."""
    return {p.parent.name: p.read_text() for p in sorted((sweep_dir / ".submitit").glob("*/*_0_log.out"))}


def assert_in_order(text: str, events: list[str]) -> None:
    """Each event occurs in ``text`` after the one before it."""
    position = 0
    for event in events:
        found = text.find(event, position)
        assert found >= 0, f"{event!r} not found after position {position} of the job's log:\n{text[-4000:]}"
        position = found + len(event)


def test_two_seeds_run_as_two_slurm_jobs_and_the_sweep_is_summarized(slurm, tmp_path):
    run_cli("-m", *SMOKE, *LAUNCHER, "seed=0,1", "data.eval_limit=1", f"hydra.sweep.dir={tmp_path}",
            env=slurm.env)
    logs = job_logs(tmp_path)
    array = next(iter(logs)).split("_")[0]
    assert sorted(logs) == [f"{array}_0", f"{array}_1"]  # one job array, two tasks
    for job_id, text in logs.items():
        assert f"Starting with JobEnvironment(job_id={job_id}," in text
        assert "Job completed successfully" in text
    script = (tmp_path / ".submitit" / array / f"{array}_submission.sh").read_text()
    for flag in ("--array=0-1%2", "--partition=debug", "--cpus-per-task=1", "--mem=1GB", "--time=10",
                 "--ntasks-per-node=1", "--signal=USR2@120"):
        assert f"#SBATCH {flag}\n" in script
    assert "--gpus-per-node" not in script  # trainer=cpu asks for no GPU
    seeds = sorted((tmp_path / job / "provenance" / "config.yaml").read_text().split("\nseed: ")[1].split()[0]
                   for job in ("0", "1"))
    assert seeds == ["0", "1"]
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert sorted(r["overrides"] for r in rows) == ["seed=0", "seed=1"]
    assert all(float(r["mean_bpp"]) > 0 and int(r["global_step"]) == 6 for r in rows)
    assert (tmp_path / "summary_rd.png").is_file()


MAX_STEPS, SIGNAL_AT_STEP = 6, 2


def _submit_training(slurm, sweep_dir: Path, record: Path) -> subprocess.Popen:
    """One training job through the Slurm launcher, W&B offline, slowed to one step a second."""
    overrides = [*SMOKE, *LAUNCHER, "logger=wandb", "resume=auto", f"trainer.max_steps={MAX_STEPS}",
                 f"trainer.val_check_interval={MAX_STEPS}", "data.val_limit=1", "callbacks.rd_sweep=null",
                 "callbacks.reconstructions=null",
                 f"+callbacks.recorder={{_target_:tests.helpers_resume.StepRecorder,path:'{record}',delay_s:1.0}}",
                 f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **WANDB_OFFLINE, **slurm.env}
    return subprocess.Popen([sys.executable, "run.py", "-m", *overrides], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _signal_during_training(slurm, master: subprocess.Popen, sweep_dir: Path, record: Path) -> str:
    """Once the job trains step SIGNAL_AT_STEP, send it Slurm's pre-timeout signal; returns the job id."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and master.poll() is None:
        if record.exists() and any(e["step"] >= SIGNAL_AT_STEP for e in read_steps(record)):
            (job_id,) = [p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir()]
            slurm.command("scancel", "--signal=USR2", job_id)
            return job_id
        time.sleep(0.2)
    output = master.communicate(timeout=60)[0] if master.poll() is not None else "(still running)"
    raise AssertionError(f"the job never reached step {SIGNAL_AT_STEP}:\n{output[-4000:]}")


@pytest.mark.slow  # ~55 s, mostly Slurm's requeue delay; tests/test_preemption.py covers the callback, the hand-over
# to submitit's requeue and resume=auto in the default suite, the two other tests here real sbatch jobs
def test_preempted_job_checkpoints_is_requeued_and_continues_at_the_same_step(slurm, tmp_path):
    sweep_dir, record = tmp_path / "sweep", tmp_path / "steps.jsonl"
    master = _submit_training(slurm, sweep_dir, record)
    try:
        job_id = _signal_during_training(slurm, master, sweep_dir, record)
        output = master.communicate(timeout=400)[0]
    finally:
        if master.poll() is None:
            master.kill()
    assert master.returncode == 0, output[-4000:]
    run_dir = sweep_dir / "0"

    # the job's own log, both attempts: checkpoint at step k, requeue, then a start from that checkpoint
    (log,) = job_logs(sweep_dir).values()
    k = int(log.split("SIGUSR2 received: checkpoint at step ")[1].split()[0])
    assert SIGNAL_AT_STEP <= k < MAX_STEPS
    events = [f"SIGUSR2 received: checkpoint at step {k} in {run_dir}/checkpoints/{PREEMPTED_CHECKPOINT}",
              f"Requeued job {job_id}", f"Starting with JobEnvironment(job_id={job_id},",
              f"resume=auto: continuing from {run_dir}/checkpoints/{PREEMPTED_CHECKPOINT}",
              "Job completed successfully"]
    assert log.count("Starting with JobEnvironment") == 2
    assert_in_order(log[log.index("Starting with JobEnvironment") + 1:], events)

    # what each attempt trained (recorded by the job): steps 0..k-1, then k..end; no step twice
    entries = read_steps(record)
    first, second = dict.fromkeys(e["pid"] for e in entries)
    trained_first, trained_second = sorted(by_step(entries, first, "end")), sorted(by_step(entries, second, "end"))
    assert trained_first == list(range(k))
    assert trained_second == list(range(k, MAX_STEPS))
    assert sorted(by_step(entries, second, "start")) == trained_second
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == MAX_STEPS

    # one W&B run id for both attempts; each attempt logged the training losses of its own steps
    attempts = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(attempts) == 2
    assert {run_info(f).run_id for f in attempts} == {run_id_for(run_dir)}
    logged = [[row["trainer/global_step"] for row in history_rows(f) if "train/loss" in row] for f in attempts]
    assert logged == [list(range(k)), list(range(k, MAX_STEPS))]


@pytest.mark.slow  # ~22 s; tests/test_sharded_eval.py checks the shards' merge locally, the test above real sbatch
def test_sharded_evaluation_as_a_job_array_merges_to_the_local_results(slurm, tmp_path):
    ckpt = export_codec(codec(), tmp_path / "codec.pt")
    evaluation = ("task=eval", f"ckpt_path={ckpt}", *SMOKE, "data.eval_crop=64", "data.eval_limit=null",
                  "eval.points=[{alpha:0.0},{alpha:1.0}]", "eval.threads=1", "eval.report.enabled=false")
    run_cli(*evaluation, f"hydra.run.dir={tmp_path / 'local'}")
    sweep = tmp_path / "sweep"
    run_cli("-m", *evaluation, "eval.shard=0/2,1/2", *LAUNCHER, f"hydra.sweep.dir={sweep}", env=slurm.env)

    logs = job_logs(sweep)
    array = next(iter(logs)).split("_")[0]
    assert sorted(logs) == [f"{array}_0", f"{array}_1"]  # one job array, one task per shard
    assert "#SBATCH --array=0-1%2\n" in (sweep / ".submitit" / array / f"{array}_submission.sh").read_text()
    for i, text in enumerate(logs.values()):
        assert f"shard {i}/2: 4 record(s) coded, 0 reused" in text and "Job completed successfully" in text
    (merged,) = [p.parent for p in sweep.glob("*/results.json")]  # the folder both shards share
    for job in ("0", "1"):  # named by each job's overrides but its shard
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        assert merged.name == shared_folder([o for o in overrides if o != f"eval.shard={job}/2"])
    assert sum("results: " in text for text in logs.values()) == 1  # one shard merged
    assert comparable(merged) == comparable(tmp_path / "local")

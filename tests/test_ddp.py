"""DDP on CPU (gloo): data.batch_size is the global batch, so 2 processes train like 1 on the same
images per step; the RD sweep runs once.

Both runs round (straight-through) instead of drawing quantization noise (tests/helpers_ddp.py): the
ranks' noise draws cannot match one process's, and any difference left is then the DDP arithmetic.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch

from tests.conftest import SMOKE, run_cli

COMMON = (*SMOKE, "trainer.max_steps=4", "trainer.val_check_interval=2", "data.val_limit=1", "data.val_crop=64",
          "data.eval_limit=1", "data.eval_crop=64", "trainer.accelerator=cpu",
          "+callbacks.deterministic={_target_:tests.helpers_ddp.RoundInsteadOfNoise}",
          "+callbacks.record={_target_:tests.helpers_ddp.RecordBatches}", "data.batch_size=16")


def _val_losses(run_dir) -> dict[int, float]:
    rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
    return {int(r["step"]): float(r["val/loss"]) for r in rows if r.get("val/loss")}


def _weights(run_dir) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if v.is_floating_point()}


def _batches(run_dir, rank: int) -> dict[int, list[float]]:
    return {int(k): v for k, v in json.loads((run_dir / f"batches_rank{rank}.json").read_text()).items()}


def test_two_gloo_processes_train_on_the_global_batch_follow_one_process_and_sweep_once(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_cli(*COMMON, "callbacks.rd_sweep=null", f"hydra.run.dir={one}")
    proc = run_cli(*COMMON, "trainer=ddp", "trainer.devices=2", f"hydra.run.dir={two}")
    # data.batch_size=16 is the global batch: 8 images per rank, and together the one process's 16
    alone, ranks = _batches(one, 0), [_batches(two, r) for r in (0, 1)]
    assert sorted(alone) == sorted(ranks[0]) == sorted(ranks[1]) == [0, 1, 2, 3]
    for step, images in alone.items():
        assert len(images) == 16 and [len(r[step]) for r in ranks] == [8, 8]
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(images)
    single, ddp = _val_losses(one), _val_losses(two)
    assert sorted(single) == sorted(ddp) == [1, 3]  # validation after steps 2 and 4 (0-based step index)
    print("val/loss 1 process:", single, "2 processes:", ddp)
    for step in single:
        assert ddp[step] == pytest.approx(single[step], rel=1e-4)
    w1, w2 = _weights(one), _weights(two)
    diff = torch.cat([(w1[k] - w2[k]).abs().flatten() for k in w1])
    lr = torch.load(one / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["hyper_parameters"]["lr"]
    print("weight difference: max", float(diff.max()), "mean", float(diff.mean()), "lr", lr)
    # Adam moves a weight by about lr per step whatever its gradient's size, so an element whose gradient
    # is ~0 may step the other way on float noise: a handful may differ by up to that, the rest must agree.
    # Measured: max 6.4e-7 with 2 ranks; one process of half the batch moves 34 % of the weights by > lr/10.
    assert float(diff.max()) <= 2 * lr * 4 * 1.01
    assert float((diff > lr / 100).float().mean()) <= 1e-4
    last = torch.load(two / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 4 and (two / "results.json").is_file()
    out = proc.stdout + proc.stderr
    assert out.count("training cheng2020_attn") == 2  # both ranks' logs are in the output ...
    assert out.count("RD sweep on kodak4") == 1  # ... and the RD sweep ran on one of them


@pytest.mark.slow
def test_ddp_trains_adapters_on_a_frozen_backbone_without_find_unused_parameters(tmp_path):
    run_cli("experiment=demo_calice", "debug=smoke", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            "trainer.max_steps=2", "trainer.val_check_interval=2", "data.val_limit=1", "data.eval_limit=1",
            "eval.max_points=2", f"hydra.run.dir={tmp_path}")
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 2 and state["hyper_parameters"]["lmbda_min"] > 0
    assert (tmp_path / "results.json").is_file()

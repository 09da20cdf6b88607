"""GPU suite, training: every experiment trains a few paper-size steps with ``trainer=gpu`` (bf16-mixed), and
one fp32 step under one-process DDP on the GPU equals the same step on the CPU within stated tolerances.

``make test-gpu`` runs these on CUDA; ``CTRLIC_TEST_DEVICE=cpu pytest -m gpu`` rehearses them on the CPU at
tiny size (bf16 through CPU autocast; the "device" side with oneDNN off on one thread). CALLIC trains
nothing (``trainer.max_steps: 0``): its per-image fit runs on the GPU in ``test_gpu_coding.py``.
"""

from __future__ import annotations

import math

import pytest

from tests.helpers_gpu import (
    BF16_STEPS,
    COMPARE_BATCH,
    DDP_EXTRA,
    FP32_STEPS,
    GRAD_RTOL,
    LOSS_RTOL,
    STEPS,
    TENSOR_GRAD_RTOL,
    TRAINED,
    TrainingProbe,
    compare_steps,
    compose_experiment,
    full_fp32,
    report,
    target,
    train_steps,
)

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("experiment", list(TRAINED))
def test_bf16_steps_train_with_entropy_maths_in_fp32(experiment, tmp_path):
    tgt = target()
    cfg = compose_experiment(experiment, tmp_path, *tgt.bf16_overrides(), *TRAINED[experiment])
    assert cfg.trainer.precision == "bf16-mixed"
    steps = STEPS.get(experiment, BF16_STEPS)
    probe = train_steps(cfg, steps, TrainingProbe())
    changed, trainable, no_grad = probe.changed(), set(probe.before), set(probe.before) - probe.grad_seen
    report({"test": "bf16_steps", "experiment": experiment, "losses": probe.losses,
            "trainable_tensors": len(trainable), "changed_tensors": len(changed), "no_gradient": sorted(no_grad)[:20],
            "entropy_dtypes": sorted(probe.entropy_dtypes), "parameter_dtypes": sorted(probe.parameter_dtypes),
            "other_dtypes": sorted(probe.other_dtypes)})
    assert len(probe.losses) == steps and all(math.isfinite(v) for v in probe.losses), probe.losses
    assert probe.grad_seen and changed == probe.grad_seen  # Adam moved exactly the tensors that got a gradient
    # at paper size every trainable tensor gets a gradient; at tiny size some hyperprior windows see a 1×1 map
    if tgt.paper:
        assert not no_grad, f"no gradient in {steps} steps: {sorted(no_grad)}"
    assert "torch.bfloat16" in probe.other_dtypes  # autocast really ran the network in bf16 ...
    assert probe.entropy_dtypes == {"torch.float32"}  # ... and the likelihoods (codewords) stayed fp32
    assert probe.parameter_dtypes <= {"torch.float32"}  # means and scales too, where the backbone has them
    assert probe.loss_dtypes <= {"torch.float32"}


@pytest.mark.parametrize("experiment", list(TRAINED))
def test_fp32_ddp_step_equals_the_cpu_step(experiment, tmp_path):
    tgt = target()
    extra = TRAINED[experiment]
    ddp_cfg = compose_experiment(experiment, tmp_path / "ddp", *tgt.ddp_overrides(), *extra,
                                 *DDP_EXTRA.get(experiment, ()), f"data.batch_size={COMPARE_BATCH}")
    cpu_cfg = compose_experiment(experiment, tmp_path / "cpu", "trainer=cpu", *extra, f"data.batch_size={COMPARE_BATCH}")
    assert ddp_cfg.trainer.precision == cpu_cfg.trainer.precision == "32-true"
    with full_fp32(), tgt.arithmetic():
        device = train_steps(ddp_cfg, FP32_STEPS, TrainingProbe(comparable=True))
    cpu = train_steps(cpu_cfg, 1, TrainingProbe(comparable=True))
    result = compare_steps(device, cpu)
    report({"test": "fp32_vs_cpu", "experiment": experiment, "ddp_losses": device.losses, **result,
            "tolerances": {"loss_rel": LOSS_RTOL, "grad_rel": GRAD_RTOL, "tensor_grad_rel": TENSOR_GRAD_RTOL}})
    print(experiment, result)
    assert len(device.losses) == FP32_STEPS and all(math.isfinite(v) for v in device.losses)
    assert not result["grad_names_differ"], result["grad_names_differ"]
    assert result["loss_rel"] <= LOSS_RTOL, result
    assert result["grad_rel"] <= GRAD_RTOL, result
    assert result["worst_tensor_rel"] <= TENSOR_GRAD_RTOL, result

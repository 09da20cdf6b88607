"""LPM training: progressive order and warm starts, only the active prompt set learns, the smoke run
(one RD point per prompt set plus λ₀ from real bitstreams), task=assemble and task=info."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ctrlic.codecs import bitstream
from ctrlic.codecs.build import build_codec, load_codec
from ctrlic.evaluation.results import load_results
from ctrlic.lightning_modules.prompt import (
    ProgressivePromptModule,
    PromptTrainingError,
    progressive_order,
    warm_start_source,
)
from ctrlic.tasks.assemble import AssembleError, assemble_prompt_sets
from tests.conftest import assert_info_without_data, fresh_clone_offline, info_in_process, run_cli
from tests.helpers_lpm import backbone_config, control_config, randomize_prompts, tiny_lpm_codec
from tests.helpers_report import check_report
from tests.test_backbone_stf import smooth_images

PAPER = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483)  # knob values 0..5; λ₀ = 0.0067 at 2


def test_progressive_order_starts_next_to_the_anchor():
    assert progressive_order(PAPER, 2, [0, 1, 3, 4, 5]) == [1, 3, 0, 4, 5]
    assert progressive_order(PAPER, 2, [5, 0]) == [0, 5]


def test_warm_start_takes_the_nearest_trained_set_on_the_same_side():
    order = [1, 3, 0, 4, 5]
    assert [warm_start_source(order, k, 2) for k in range(5)] == [None, None, 1, 3, 4]


def module_at(codec, step: int, max_steps: int = 4, **kwargs) -> ProgressivePromptModule:
    module = ProgressivePromptModule(codec, scheduler=None, **kwargs)
    module._trainer = SimpleNamespace(global_step=step, max_steps=max_steps)
    return module


def test_sets_train_one_after_another_with_warm_starts():
    codec = tiny_lpm_codec()
    randomize_prompts(codec)
    scheme = codec.control
    first, second = scheme.prompt_set(0), scheme.prompt_set(2)
    assert progressive_order(scheme.all_lambdas, 1, [0, 2]) == [0, 2]  # equally far from λ₀: index order
    assert [module_at(codec, s).training_knobs() for s in (0, 1)] == [{"prompt": 0.0}] * 2
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))
    assert module_at(codec, 2).training_knobs() == {"prompt": 2.0}  # other side of λ₀: no warm start
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))
    assert module_at(codec, 9).training_knobs() == {"prompt": 2.0}  # past max_steps: the last set
    assert module_at(codec, 3, steps_per_set=3).training_knobs() == {"prompt": 2.0}
    assert module_at(codec, 1).lmbda_for({"prompt": 2.0}) == 0.013


def test_only_the_active_prompt_set_learns():
    codec = tiny_lpm_codec()
    module = module_at(codec, 2)
    assert not any(p.requires_grad for n, p in codec.backbone.named_parameters() if not n.startswith("prompt_sets"))
    knobs = codec.set_knobs(module.training_knobs())
    x = smooth_images(2, 64, 64)
    module.criterion(codec.train()(x), x, module.lmbda_for(knobs))["loss"].backward()
    assert all(p.grad is not None for p in codec.control.prompt_set(2).parameters())
    assert all(p.grad is None for p in codec.control.prompt_set(0).parameters())


def test_unknown_prompt_sets_are_refused():
    with pytest.raises(PromptTrainingError, match=r"the prompt sets are \[0, 2\]"):
        ProgressivePromptModule(tiny_lpm_codec(), sets=[1], scheduler=None)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("lpm_smoke")
    proc = run_cli("experiment=lpm_tic", "debug=smoke", "data=demo", f"hydra.run.dir={out}")
    assert "RANDOM weights" in proc.stdout + proc.stderr  # no anchor given: loud warning
    return out


def test_smoke_run_gives_one_point_per_prompt_set_and_the_anchor(smoke):
    results = load_results(smoke / "results.json")
    assert results["results"]["prompt"] == [0.0, 1.0, 2.0]
    assert results["meta"]["knobs"] == ["prompt"]
    for point in range(3):
        files = sorted((smoke / "bitstreams" / "kodak4" / f"point{point:02d}").glob("*.ctl"))
        assert len(files) == 2
        assert all(bitstream.unpack(f.read_bytes())[0].knobs == {"prompt": float(point)} for f in files)
        bpp = sum(8 * f.stat().st_size / (128 * 128) for f in files) / 2
        assert bpp == pytest.approx(results["results"]["bpp"][point])
    checkpoint = torch.load(smoke / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["ctrlic"]["trained_prompt_sets"] == [0, 2]
    images = check_report(smoke)["sets"][0]["images"]  # TIC-hyperprior's maps, one per prompt set
    assert [p["knobs"] for p in images[0]["points"]] == [{"prompt": float(k)} for k in range(3)]


def split_checkpoint(smoke, tmp_path):
    """Two checkpoints as a multirun with module.sets=[0] / [2] would leave (set 2 retrained)."""
    checkpoint = torch.load(smoke / "checkpoints" / "last.ckpt", weights_only=True)
    first = {**checkpoint, "ctrlic": {**checkpoint["ctrlic"], "trained_prompt_sets": [0]}}
    state = {k: v * 0.5 if k.startswith("model.backbone.prompt_sets.2.") else v
             for k, v in checkpoint["state_dict"].items()}
    second = {**checkpoint, "state_dict": state, "ctrlic": {**checkpoint["ctrlic"], "trained_prompt_sets": [2]}}
    paths = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    for path, obj in zip(paths, (first, second), strict=True):
        torch.save(obj, path)
    return paths, checkpoint["state_dict"]


def test_assemble_joins_the_sets_of_several_runs(smoke, tmp_path):
    (a, b), original = split_checkpoint(smoke, tmp_path)
    out = tmp_path / "lpm.codec.pt"
    run_cli("experiment=lpm_tic", "debug=smoke", "data=demo", "task=assemble", f"assemble.inputs=[{a},{b}]",
            f"assemble.output={out}", f"hydra.run.dir={tmp_path / 'run'}")
    codec = load_codec(out)
    state = codec.backbone.state_dict()
    for key, value in original.items():
        key = key.removeprefix("model.backbone.")
        expected = value * 0.5 if key.startswith("prompt_sets.2.") else value
        if not key.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table")):
            assert torch.equal(state[key], expected), key
    x = smooth_images(1, 64, 64)
    assert codec.decompress(codec.compress(x, {"prompt": 2})).shape == x.shape


def test_assemble_refuses_missing_sets_and_other_anchors(smoke, tmp_path):
    (a, b), _ = split_checkpoint(smoke, tmp_path)
    with pytest.raises(AssembleError, match=r"no run trained prompt set\(s\) \[2\]"):
        assemble_prompt_sets([a])
    other = torch.load(b, weights_only=True)
    other["state_dict"]["model.backbone.g_a0.bias"] = other["state_dict"]["model.backbone.g_a0.bias"] * 0.5
    torch.save(other, b)
    with pytest.raises(AssembleError, match="trained on another anchor"):
        assemble_prompt_sets([a, b])


def test_info_prints_backbone_and_per_set_prompt_parameters_offline_without_data(tmp_path, monkeypatch):
    """As on a fresh clone without data/div2k_flickr2k or Kodak: the missing folders are reported."""
    env = fresh_clone_offline(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _, out = info_in_process(tmp_path / "run", "experiment=lpm_tic", "debug=smoke")
    info = assert_info_without_data(tmp_path / "run", out, env)
    assert info["data"]["folders"]["eval_sets.kodak"]["exists"] is False
    backbone = tiny_lpm_codec().backbone
    frozen = sum(p.numel() for n, p in backbone.named_parameters() if not n.startswith("prompt_sets."))
    assert info["parameters"]["backbone"] == {"trainable": 0, "frozen": frozen}
    per_set = info["control_groups"]
    assert list(per_set) == ["prompt=0 (λ=0.0035)", "prompt=2 (λ=0.013)"]
    assert sum(per_set.values()) == info["parameters"]["control"]["trainable"]
    assert f"prompt=0 (λ=0.0035): {per_set['prompt=0 (λ=0.0035)']:,} parameters" in out


def test_paper_size_storage_one_tic_and_five_prompt_sets():
    codec = build_codec(backbone_config("tic", "q1_4"), control_config("layer_prompts_tic"))
    backbone = sum(p.numel() for n, p in codec.backbone.named_parameters() if not n.startswith("prompt_sets."))
    assert backbone == 10_227_299
    assert list(codec.control.parameter_groups().values()) == [1_081_730] * 5

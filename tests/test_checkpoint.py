"""The one checkpoint loader: every container shape, prefix and old key name; clear errors otherwise."""

from __future__ import annotations

import re

import pytest
import torch

from ctrlic.codecs.backbones.cheng import Cheng2020Attn
from ctrlic.codecs.checkpoint import CheckpointError, load_weights, resolve_source


def old_style(state: dict) -> dict:
    """Rename entropy-bottleneck parameters to CompressAI < 1.2 names (``_matrix0``, ``_bias0``...)."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"entropy_bottleneck\.(matrices|biases|factors)\.(\d+)", key)
        if m:
            key = "entropy_bottleneck._" + {"matrices": "matrix", "biases": "bias", "factors": "factor"}[
                m.group(1)] + m.group(2)
        out[key] = value
    return out


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    model = Cheng2020Attn(N=32)
    model.update(force=True)
    return model.state_dict()


SHAPES = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3, "optimizer": {}},
    "lightning": lambda sd: {"state_dict": {f"model.backbone.{k}": v for k, v in sd.items()},
                             "global_step": 5, "pytorch-lightning_version": "2.6.6"},
    "dataparallel": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    "old_names": lambda sd: {"state_dict": old_style(sd)},
    "compressai_examples": lambda sd: {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in old_style(sd).items()},
                                       "aux_optimizer": {}, "lr_scheduler": {}},
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_checkpoint_shape_loads_strictly_from_file(shape, source, tmp_path):
    path = tmp_path / "ckpt.pth.tar"
    torch.save(SHAPES[shape](source), path)
    model = Cheng2020Attn(N=32)
    assert load_weights(model, path) == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_old_entropy_bottleneck_names_are_renamed(source):
    assert "entropy_bottleneck._matrix0" in old_style(source)
    model = Cheng2020Attn(N=32)
    load_weights(model, old_style(source))
    assert torch.equal(model.entropy_bottleneck.matrices[0], source["entropy_bottleneck.matrices.0"])


def test_file_url_is_read_through_the_hub_loader(source, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    path = tmp_path / "cheng2020_attn-mse-1-465f2b64.pth.tar"
    torch.save(source, path)
    model = Cheng2020Attn(N=32)
    assert load_weights(model, path.as_uri()) == []


def test_zoo_names_resolve_to_compressai_urls():
    url = resolve_source("zoo:cheng2020-attn-mse-6")
    assert url.startswith("https://") and "cheng2020_attn-mse-6" in url
    with pytest.raises(CheckpointError, match="no such CompressAI zoo model"):
        resolve_source("zoo:cheng2020-attn-mse-9")


def test_wrong_architecture_says_what_does_not_fit(source):
    with pytest.raises(CheckpointError, match=r"shape mismatches .*checkpoint \(32, 1, 3\) vs model \(48, 1, 3\)"):
        load_weights(Cheng2020Attn(N=48), source)


def test_missing_and_unexpected_keys_are_reported(source):
    partial = {k: v for k, v in source.items() if not k.startswith("g_s.")}
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing \(e\.g\. g_s.*unexpected \(e\.g\. extra\.weight"):
        load_weights(Cheng2020Attn(N=32), partial)


def test_non_checkpoint_files_give_clear_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_weights(Cheng2020Attn(N=32), text)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(Cheng2020Attn(N=32), tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"epoch": 1, "config": {"a": 1}}, other)
    with pytest.raises(CheckpointError, match="no state dict found: top-level keys are 'epoch', 'config'"):
        load_weights(Cheng2020Attn(N=32), other)

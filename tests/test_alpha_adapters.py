"""CALICE α-adapters: checkpoint layout per backbone, exact anchor at α = 0, exact merging, errors."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from compressai.layers import subpel_conv3x3
from torch import nn

from ctrlic.codecs.backbones.cheng import Cheng2020Attn
from ctrlic.codecs.backbones.stf import SymmetricalTransFormer
from ctrlic.codecs.backbones.tcm import TCM as TCMBackbone
from ctrlic.codecs.checkpoint import load_weights
from ctrlic.codecs.control.adapters import ConvAdapter, LoRALinear, SubpelConvAdapter
from ctrlic.codecs.control.alpha_adapters import AlphaAdapters
from ctrlic.codecs.control.base import KnobError
from tests.conftest import alpha_adapters_config
from tests.manifests import parse_shape, read_manifest, synthetic_state_dict

TOL = {"atol": 1e-5, "rtol": 1e-5}


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def preset(name: str) -> dict:
    """The constructor keywords of ``conf/control/alpha_adapters_<name>.yaml``."""
    return {k: v for k, v in alpha_adapters_config(name).items() if k != "_target_"}


def check_against_calice(backbone: nn.Module, name: str, adapters_manifest: str, backbone_manifest: str,
                         n_adapters: int, n_params: int) -> None:
    """Attach the config preset and compare with CALICE's manifest: new keys, moved keys, the rest, a strict load."""
    before = shapes(backbone)
    scheme = AlphaAdapters(**preset(name))
    scheme.attach(backbone)
    after = shapes(backbone)
    rows = read_manifest(adapters_manifest)
    adapter_rows = {key: parse_shape(shape) for section, key, shape, *_ in rows if section == "ADAPTER"}
    moved = {row[4]: row[1] for row in rows if row[0] == "MOVED"}

    assert {k: v for k, v in after.items() if re.search(r"\.(adapter|lora)\.", k)} == adapter_rows
    for old, new in moved.items():
        assert old not in after and after[new] == before[old]
    untouched = {k: v for k, v in before.items() if k not in moved}
    assert {k: v for k, v in after.items() if k in untouched} == untouched
    assert len(after) == len(before) + len(adapter_rows)
    assert len(scheme.adapters) == n_adapters
    assert sum(p.numel() for p in scheme.attached_parameters()) == n_params
    assert {id(p) for p in scheme.trainable_parameters()} == \
        {id(p) for p in scheme.attached_parameters()}

    # a released CALICE checkpoint = anchor keys renamed per MOVED + the ADAPTER tensors
    state = synthetic_state_dict(backbone_manifest)
    state = {moved.get(k, k): v for k, v in state.items()}
    state.update({k: torch.randn(v) for k, v in adapter_rows.items()})
    assert load_weights(backbone, state) == []
    key = next(iter(adapter_rows))
    assert torch.equal(backbone.state_dict()[key], state[key])


def test_cheng_preset_matches_calice_manifest():
    check_against_calice(Cheng2020Attn(N=192), "cheng", "calice_cheng_8_1_all_adapters.tsv",
                         "cheng2020_attn_q6.tsv", n_adapters=50, n_params=145_840)


def test_stf_preset_matches_calice_manifest():
    check_against_calice(SymmetricalTransFormer(), "stf", "calice_stf_8_8_all_adapters.tsv",
                         "stf_SymmetricalTransFormer.tsv", n_adapters=48, n_params=353_280)


def test_tcm_preset_matches_calice_manifest():
    check_against_calice(TCMBackbone(N=64), "tcm", "calice_tcm_8_1_all_adapters.tsv", "tcm_N64_M320.tsv",
                         n_adapters=84, n_params=164_352)


# -- behaviour on a tiny Cheng2020-attn --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    anchor = Cheng2020Attn(N=32).eval()
    adapted = copy.deepcopy(anchor)
    scheme = AlphaAdapters(**preset("cheng"))
    scheme.attach(adapted)
    with torch.no_grad():
        for p in scheme.attached_parameters():
            p.normal_(0, 0.1)
    return anchor, adapted, scheme, torch.rand(1, 3, 64, 64)


@torch.no_grad()
def test_alpha_zero_equals_anchor(tiny):
    anchor, adapted, scheme, x = tiny
    scheme.apply({"alpha": 0.0})
    want, got = anchor(x), adapted(x)
    assert torch.equal(got["x_hat"], want["x_hat"])
    for name in ("y", "z"):
        assert torch.equal(got["likelihoods"][name], want["likelihoods"][name])
    # the entropy coder sees the same symbols and tables: the same payload bytes, the same decoded image
    anchor.update(force=True)
    adapted.update(force=True)
    sections = adapted.encode(x)
    assert sections == anchor.encode(x)
    assert torch.equal(adapted.decode(sections, 64, 64), anchor.decode(sections, 64, 64))
    scheme.apply({"alpha": 0.5})
    assert adapted.encode(x) != sections  # the payload does see α (the adapters are non-zero)


@torch.no_grad()
def test_alpha_changes_output_and_merge_is_exact(tiny):
    anchor, adapted, scheme, x = tiny
    adapted, scheme = copy.deepcopy((adapted, scheme))  # one copy: the scheme keeps its references
    scheme.apply({"alpha": 0.7})
    y = adapted.g_a(x)
    assert not torch.allclose(y, anchor.g_a(x))
    x_hat = adapted.g_s(y)
    assert not torch.allclose(x_hat, anchor.g_s(y))

    scheme.merge()
    assert not any(isinstance(m, (ConvAdapter, SubpelConvAdapter)) for m in adapted.modules())
    assert shapes(adapted) == shapes(anchor)
    torch.testing.assert_close(adapted.g_a(x), y, **TOL)
    torch.testing.assert_close(adapted.g_s(y), x_hat, **TOL)
    assert scheme.resolve() == {"alpha": 0.7}
    with pytest.raises(KnobError):
        scheme.resolve({"alpha": 0.5})


def test_lora_layer_and_merge():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(12, 20), rank=4)
    assert layer.lora["W_a"].shape == (12, 4) and layer.lora["W_b"].shape == (4, 20)
    assert not layer.lora["W_b"].any()
    assert abs(LoRALinear(nn.Linear(1000, 4), rank=8).lora["W_a"].std() - 8**-0.5) < 0.02
    assert set(layer.state_dict()) == {"linear.weight", "linear.bias", "lora.W_a", "lora.W_b"}
    nn.init.normal_(layer.lora["W_b"])
    x = torch.randn(2, 5, 12)
    layer.scale = 0.0
    assert torch.equal(layer(x), layer.linear(x))
    layer.scale = 0.7 * 8
    want = layer.linear(x) + 5.6 * x @ layer.lora["W_a"] @ layer.lora["W_b"]
    torch.testing.assert_close(layer(x), want, **TOL)
    torch.testing.assert_close(layer.merge()(x), layer(x), **TOL)


@pytest.mark.parametrize("in_ch, stride, groups", [(3, 2, 1), (16, 1, 1), (16, 2, 2)])
def test_conv_adapter_and_merge(in_ch, stride, groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(in_ch, 24, 3, stride=stride, padding=1, groups=groups)
    layer = ConvAdapter(conv, rank=8, scale=0.7)
    assert layer.adapter.conv1.groups == (8 if in_ch % 8 == 0 else 1)
    assert layer.adapter.conv1.stride == (stride, stride)
    x = torch.randn(2, in_ch, 9, 11)
    torch.testing.assert_close(layer(x), conv(x) + 0.7 * layer.adapter.conv2(layer.adapter.conv1(x)), **TOL)
    merged = layer.merge()
    assert type(merged) is nn.Conv2d
    torch.testing.assert_close(merged(x), layer(x), **TOL)
    layer.scale = 0.0
    assert torch.equal(layer(x), conv(x))


def test_subpel_adapter_and_merge():
    torch.manual_seed(0)
    layer = SubpelConvAdapter(subpel_conv3x3(16, 24, 2), rank=8, scale=0.7)
    assert set(layer.state_dict()) == {"subpel_conv.0.weight", "subpel_conv.0.bias", "adapter.conv1.weight",
                                       "adapter.conv1.bias", "adapter.conv2.weight", "adapter.conv2.bias"}
    assert layer.adapter.conv1.weight.shape == (32, 2, 3, 3)
    x = torch.randn(2, 16, 7, 5)
    assert layer(x).shape == (2, 24, 14, 10)
    merged = layer.merge()
    assert set(merged.state_dict()) == {"0.weight", "0.bias"}
    torch.testing.assert_close(merged(x), layer(x), **TOL)


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"conv": [r"g_a\.\d+\.conv9"]}, r"conv pattern .* matches no module"),
    ({"lora": [r"g_a\.0\.conv1"]}, r"matches 'g_a\.0\.conv1', a Conv2d; lora adapters wrap nn\.Linear"),
    ({"subpel": [r"g_s\.2"]}, r"a ResidualBlockUpsample"),
    ({"conv": [r"g_s\.2\.subpel_conv\.0"], "subpel": [r"g_s\.2\.subpel_conv"]}, "lies inside"),
    ({"conv": ["g_a.("]}, "not a valid regular expression"),
    ({}, "no lora, conv or subpel patterns"),
])
def test_bad_patterns_raise_clear_errors(kwargs, message):
    backbone = Cheng2020Attn(N=16)
    with pytest.raises(ValueError, match=message):
        AlphaAdapters(**kwargs).attach(backbone)


def test_knob_declaration_and_range():
    scheme = AlphaAdapters(**preset("cheng"))
    (knob,) = scheme.knobs
    assert (knob.name, knob.low, knob.high, knob.default, knob.rate_increases) == ("alpha", 0, 1, 0, False)
    assert [p["alpha"] for p in scheme.sweep_points()] == [1, .9, .8, .6, .45, .35, .25, .15, .05, 0]
    assert scheme.resolve() == {"alpha": 0.0}
    for bad in (1.5, -0.1):
        with pytest.raises(KnobError, match="out of range"):
            scheme.resolve({"alpha": bad})
    with pytest.raises(KnobError, match="unknown knob"):
        scheme.resolve({"beta": 0.5})

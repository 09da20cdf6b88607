"""Layer-adaptive prompts: prompted window attention against a hand-computed reference, the anchor
reproduced exactly without prompts, the prompt set recorded in real bitstreams, config errors."""

from __future__ import annotations

import math

import pytest
import torch

from ctrlic.codecs import bitstream
from ctrlic.codecs.backbones.stf import WindowAttention
from ctrlic.codecs.backbones.swin import (
    prompt_shift_mask,
    prompt_windows,
    prompted_window_attention,
    window_attention,
    windowed,
)
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.control.layer_prompts import LayerPrompts, LayerPromptsError, PromptedAttention
from ctrlic.codecs.rate_search import search_target
from tests.conftest import tiny_stf_with_adapters
from tests.helpers_lpm import backbone_config, control_config, randomize_prompts, tiny_lpm_codec
from tests.test_backbone_stf import smooth_images


def naive_prompted_attention(x, prompt, attn, window, shift, down):
    """Prompted Swin attention written out window by window from the LPM/TransTIC description.

    Image and prompt maps are rolled by −shift and −shift/down; in each window the queries are the
    w² image tokens, keys/values the (w/down)² prompt tokens of the same area followed by the image
    tokens; prompt columns get no relative-position bias; across the shift seams of the last window
    row/column, image and prompt keys from the other side are dropped.
    """
    b, height, width, c = x.shape
    heads = attn.heads
    d = c // heads
    small = window // down
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    prows, pcols = torch.meshgrid(torch.arange(small), torch.arange(small), indexing="ij")
    prows, pcols = prows.flatten() * down, pcols.flatten() * down  # image row/col each prompt starts at
    table = attn.relative_position_bias_table
    index = (rows[:, None] - rows[None] + window - 1) * (2 * window - 1) + cols[:, None] - cols[None] + window - 1
    rel = table[index].permute(2, 0, 1)  # (heads, w², w²)
    x = torch.roll(x, (-shift, -shift), (1, 2))
    prompt = torch.roll(prompt, (-(shift // down), -(shift // down)), (1, 2))
    out = torch.empty_like(x)
    boundary = window - shift
    for r0 in range(0, height, window):
        for c0 in range(0, width, window):
            tokens = x[:, r0:r0 + window, c0:c0 + window].reshape(b, -1, c)
            ptokens = prompt[:, r0 // down:r0 // down + small, c0 // down:c0 // down + small].reshape(b, -1, c)
            q = attn.qkv(tokens).view(b, -1, 3, heads, d)[:, :, 0].transpose(1, 2)
            kv = attn.qkv(torch.cat((ptokens, tokens), 1)).view(b, -1, 3, heads, d)
            k, v = kv[:, :, 1].transpose(1, 2), kv[:, :, 2].transpose(1, 2)
            logits = q @ k.transpose(-1, -2) / math.sqrt(d)
            logits = logits + torch.cat((torch.zeros(heads, window * window, small * small), rel), -1)
            key_rows, key_cols = torch.cat((prows, rows)), torch.cat((pcols, cols))
            mask = torch.zeros(window * window, key_rows.numel(), dtype=torch.bool)
            if shift and r0 == height - window:
                mask |= (rows[:, None] < boundary) != (key_rows[None] < boundary)
            if shift and c0 == width - window:
                mask |= (cols[:, None] < boundary) != (key_cols[None] < boundary)
            att = torch.softmax(logits.masked_fill(mask, -math.inf), -1) @ v
            out[:, r0:r0 + window, c0:c0 + window] = attn.proj(att.transpose(1, 2).reshape(b, -1, c)).view(
                b, window, window, c)
    return torch.roll(out, (shift, shift), (1, 2))


@pytest.mark.parametrize("shift", [0, 2])
def test_prompted_window_attention_matches_hand_computed_reference(shift):
    torch.manual_seed(0)
    window, down, heads, c = 4, 2, 2, 8
    attn = PromptedAttention(WindowAttention(c, window, heads))
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    x, prompt = torch.randn(2, 8, 12, c), torch.randn(2, 4, 6, c)
    mask = prompt_shift_mask(8, 12, window, shift, down, x.device) if shift else None
    attn.prompt = (prompt_windows(prompt, window, shift, down), mask)
    with torch.no_grad():
        ours = windowed(x, window, shift, attn)
        reference = naive_prompted_attention(x, prompt, attn, window, shift, down)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_no_prompt_tokens_is_plain_window_attention():
    torch.manual_seed(0)
    plain = WindowAttention(8, 4, 2)
    windows, bias = torch.randn(2, 3, 16, 8), torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        empty = prompted_window_attention(windows, windows[:, :, :0], plain.qkv, plain.proj, 2, bias, None)
        torch.testing.assert_close(empty, window_attention(windows, plain.qkv, plain.proj, 2, bias))
        assert torch.equal(PromptedAttention(plain)(windows, None), plain(windows, None))


def test_anchor_setting_reproduces_the_plain_tic_exactly():
    codec = tiny_lpm_codec()
    randomize_prompts(codec)
    plain = build_codec(backbone_config("tic"))
    plain.backbone.load_state_dict({k: v for k, v in codec.backbone.state_dict().items()
                                    if not k.startswith("prompt_sets.")})
    x = smooth_images(1, 64, 64)
    anchor = codec.control.anchor_index
    with torch.no_grad():
        codec.eval().set_knobs({"prompt": anchor})
        assert torch.equal(codec(x)["x_hat"], plain.eval()(x)["x_hat"])
        codec.set_knobs({"prompt": 2})
        assert not torch.allclose(codec(x)["x_hat"], plain(x)["x_hat"], atol=1e-3)
    _, ours = bitstream.unpack(codec.compress(x, {"prompt": anchor}))
    _, theirs = bitstream.unpack(plain.compress(x))
    assert ours == theirs


def test_backbone_keys_unchanged_and_one_prompt_module_per_lambda():
    codec = tiny_lpm_codec()
    plain = build_codec(backbone_config("tic")).backbone.state_dict()
    ours = codec.backbone.state_dict()
    assert [k for k in ours if not k.startswith("prompt_sets.")] == list(plain)
    assert sorted({k.split(".")[1] for k in ours if k.startswith("prompt_sets.")}) == ["0", "2"]
    groups = codec.control.parameter_groups()
    assert list(groups) == ["prompt=0 (λ=0.0035)", "prompt=2 (λ=0.013)"]
    assert sum(groups.values()) == sum(p.numel() for p in codec.control.attached_parameters())


def test_knob_indexes_lambdas_in_rising_rate_order():
    scheme = LayerPrompts([0.0483, 0.0018, 0.013], 0.0067, {}, {})
    assert scheme.all_lambdas == (0.0018, 0.0067, 0.013, 0.0483)
    assert scheme.anchor_index == 1 and scheme.set_indices == (0, 2, 3)
    (knob,) = scheme.knobs
    assert (knob.name, knob.discrete, knob.rate_increases, knob.default) == ("prompt", True, True, 1.0)
    assert knob.sweep == (0.0, 1.0, 2.0, 3.0)
    assert scheme.rate_path().points == tuple({"prompt": float(i)} for i in range(4))
    assert [scheme.lmbda(i) for i in range(4)] == [0.0018, 0.0067, 0.013, 0.0483]


@pytest.mark.parametrize("prompt", [0, 2])
def test_bitstream_records_the_prompt_set_and_decodes_to_the_prompted_model(prompt):
    codec = tiny_lpm_codec("tic_hyperprior", "layer_prompts_tic_hyperprior")
    randomize_prompts(codec)
    codec.prepare()
    x = smooth_images(1, 64, 128)
    data = codec.compress(x, {"prompt": prompt})
    header, _ = bitstream.unpack(data)
    assert header.knobs == {"prompt": float(prompt)}
    x_hat = codec.decompress(data)
    with torch.no_grad():
        codec.set_knobs({"prompt": prompt})
        torch.testing.assert_close(x_hat, codec(x)["x_hat"].clamp(0, 1), atol=1e-5, rtol=0)
        codec.set_knobs({"prompt": codec.control.anchor_index})
        assert not torch.allclose(x_hat, codec(x)["x_hat"].clamp(0, 1), atol=1e-3)


def test_tic_with_prompts_round_trips_each_set_differently():
    codec = tiny_lpm_codec()
    randomize_prompts(codec)
    x = smooth_images(1, 64, 64)
    decoded = [codec.decompress(codec.compress(x, {"prompt": i})) for i in range(3)]
    assert torch.equal(codec.decompress(codec.compress(x, {"prompt": 2})), decoded[2])
    assert not torch.equal(decoded[0], decoded[1]) and not torch.equal(decoded[1], decoded[2])


def test_target_rate_search_moves_over_prompt_sets():
    codec = tiny_lpm_codec("tic_hyperprior", "layer_prompts_tic_hyperprior")
    x = smooth_images(1, 64, 64)
    result = search_target(codec, x, target=1e-3)
    assert result.knobs in [{"prompt": 0.0}, {"prompt": 2.0}] and not result.in_range
    assert codec.decompress(result.data).shape == x.shape


def test_stf_is_prompted_by_configuration():
    backbone, _ = tiny_stf_with_adapters()
    codec = build_codec(backbone, control_config("layer_prompts_stf", lambdas=[0.013], anchor_lambda=0.0483,
                                                 width=4))
    randomize_prompts(codec)
    x = smooth_images(1, 64, 64)
    with torch.no_grad():
        codec.eval().set_knobs({"prompt": 1})
        anchor = codec(x)["x_hat"]
        codec.set_knobs({"prompt": 0})
        prompted = codec(x)["x_hat"]
    assert prompted.shape == anchor.shape and not torch.allclose(prompted, anchor, atol=1e-3)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"encoder_stages": {"g_a9": 1}}, "no module 'g_a9'"),
    ({"decoder_stages": {"g_s0": 1}}, "holds no Swin blocks"),
    ({"encoder_input": "nothing"}, "no module 'nothing'"),
])
def test_bad_configs_fail_with_a_clear_message(overrides, message):
    with pytest.raises(LayerPromptsError, match=message):
        tiny_lpm_codec(**overrides)


@pytest.mark.parametrize("lambdas", [[0.0067, 0.013], [], [0.013, 0.013]])
def test_bad_lambdas_fail_with_a_clear_message(lambdas):
    with pytest.raises(LayerPromptsError, match="must be distinct, non-empty, and must not contain anchor_lambda"):
        LayerPrompts(lambdas, 0.0067, {}, {})

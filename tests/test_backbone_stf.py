"""STF backbone: official state-dict layout, strict loading of a released-style checkpoint, window
attention against a direct reading of the official code, and real coding round trips.

The ``check_*`` helpers here are shared with ``test_backbone_tcm.py``.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctrlic.codecs.backbones.base import Backbone
from ctrlic.codecs.backbones.stf import SymmetricalTransFormer
from ctrlic.codecs.backbones.swin import windowed
from ctrlic.codecs.checkpoint import load_weights
from tests.manifests import manifest_total_params, parse_shape, read_manifest, synthetic_state_dict

MANIFEST = "stf_SymmetricalTransFormer.tsv"
TINY = {"embed_dim": 6, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 2, 4), "num_slices": 4, "charm_widths": (24,)}
#: bits of CompressAI's quantised CDFs (``EntropyModel.entropy_coder_precision``): the most a symbol costs
CDF_PRECISION = 16
#: entropy-bottleneck names of pip CompressAI ≥ 1.2.6 and of older releases / the STF fork
EB_NAMES = (("matrices.", "_matrix"), ("biases.", "_bias"), ("factors.", "_factor"))


def to_new_eb_names(key: str) -> str:
    for new, old in EB_NAMES:
        key = re.sub(rf"^entropy_bottleneck\.{old}(\d+)$", rf"entropy_bottleneck.{new}\1", key)
    return key


def to_old_eb_names(key: str) -> str:
    for new, old in EB_NAMES:
        key = re.sub(rf"^entropy_bottleneck\.{re.escape(new)}(\d+)$", rf"entropy_bottleneck.{old}\1", key)
    return key


def check_official_layout(model: nn.Module, manifest: str) -> None:
    """Same keys, shapes and dtypes as the official model (EB names mapped), in the same order
    outside the entropy bottleneck, and the same parameter count."""
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    theirs = [(to_new_eb_names(k), parse_shape(s), d) for k, s, d in read_manifest(manifest)]
    assert set(ours) == set(theirs)
    assert len(ours) == len(theirs)
    not_eb = [row for row in ours if not row[0].startswith("entropy_bottleneck.")]
    assert not_eb == [row for row in theirs if not row[0].startswith("entropy_bottleneck.")]
    assert sum(p.numel() for p in model.parameters()) == manifest_total_params(manifest)


def released_checkpoint(manifest: str) -> dict:
    """A stand-in for the authors' ``.pth.tar``: random tensors under the official names, old EB names,
    CDF tables filled as after ``update()``, DataParallel ``module.`` prefixes, ``{"state_dict": ...}``."""
    state = {to_old_eb_names(k): v for k, v in synthetic_state_dict(manifest).items()}
    channels = state["entropy_bottleneck.quantiles"].shape[0]
    for prefix, rows in (("entropy_bottleneck", channels), ("gaussian_conditional", 64)):
        state[f"{prefix}._quantized_cdf"] = torch.randint(0, 1 << 16, (rows, 37), dtype=torch.int32)
        state[f"{prefix}._offset"] = torch.randint(-20, 0, (rows,), dtype=torch.int32)
        state[f"{prefix}._cdf_length"] = torch.randint(3, 37, (rows,), dtype=torch.int32)
    state["gaussian_conditional.scale_table"] = torch.linspace(0.11, 256, 64)
    return {"epoch": 7, "state_dict": {f"module.{k}": v for k, v in state.items()}}


def check_loads_released_checkpoint(model: nn.Module, manifest: str) -> None:
    checkpoint = released_checkpoint(manifest)
    assert load_weights(model, checkpoint, strict=True) == []
    ours = model.state_dict()
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(ours[to_new_eb_names(key.removeprefix("module."))], value), key


def check_forward_shapes(model: Backbone, y_channels: int, z_channels: int) -> None:
    x = torch.rand(2, 3, 64, 64)
    out = model.train()(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, y_channels, 4, 4)
    assert out["likelihoods"]["z"].shape == (2, z_channels, 1, 1)
    for likelihood in out["likelihoods"].values():
        assert torch.isfinite(likelihood).all() and (likelihood > 0).all() and (likelihood <= 1).all()
    out["x_hat"].mean().backward()


def smooth_images(batch: int, height: int, width: int) -> torch.Tensor:
    """Random images with natural-ish statistics: bilinear upsampling of a 1/16-size noise image."""
    low = torch.rand(batch, 3, height // 16, width // 16)
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)


def train_briefly(model: Backbone, steps: int = 10) -> Backbone:
    """A few rate–distortion steps on 64×64 crops, then CDF tables: a model worth coding with."""
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        x = smooth_images(2, 64, 64)
        out = model(x)
        bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
        loss = bits / x[:, 0].numel() + 0.01 * 255**2 * torch.mean((out["x_hat"] - x) ** 2) + model.aux_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.update(force=True)
    return model


def check_coding(model: Backbone, height: int, width: int) -> None:
    """decode(encode(x)) is the eval-mode forward reconstruction, deterministic, at the estimated rate.

    The coder can only beat the likelihood estimate on outliers (escape-coded where the estimate
    charges −log2(1e−9) bits), and loses a few per cent (table quantisation) and a flush per stream.
    """
    x = smooth_images(1, height, width)
    with torch.no_grad():
        out = model(x)
    sections = model.encode(x)
    assert len(sections) == 2 and all(isinstance(s, bytes) and s for s in sections)
    x_hat = model.decode(sections, height, width)
    assert x_hat.shape == x.shape
    torch.testing.assert_close(x_hat, out["x_hat"].clamp(0, 1), atol=1e-5, rtol=0)
    assert torch.equal(model.decode(sections, height, width), x_hat)
    assert model.encode(x) == sections
    real = 8 * sum(len(s) for s in sections)
    low, high = payload_bounds(out["likelihoods"], len(sections))
    assert low <= real <= high, (low, real, high)


def payload_bounds(likelihoods: dict[str, torch.Tensor], sections: int) -> tuple[float, float]:
    """The payload bits CompressAI's rANS coder may take for these likelihoods.

    Its CDFs have 16-bit precision, so no symbol costs it much more than 16 bits, while the estimate
    charges −log2 p up to 30 (the 1e−9 floor): the lower bound caps each symbol's charge at 16 bits.
    Above, it pays for the quantised CDFs, the 64-entry scale table and a flush per stream (measured
    on the tiny models: payload / estimate = 1.01 STF, 1.045 TCM).
    """
    bits = [-torch.log2(v.double()).flatten() for v in likelihoods.values()]
    estimate = float(sum(b.sum() for b in bits))
    assert math.isfinite(estimate)
    capped = float(sum(b.clamp(max=CDF_PRECISION).sum() for b in bits))
    return 0.99 * capped, 1.05 * estimate + 8 * 8 * sections


def check_bf16_autocast(model: Backbone) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 3, 64, 64))
    assert out["likelihoods"]["y"].dtype == out["likelihoods"]["z"].dtype == torch.float32
    assert all(torch.isfinite(v).all() for v in out["likelihoods"].values())


# -- paper size ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper() -> SymmetricalTransFormer:
    return SymmetricalTransFormer()


def test_state_dict_matches_official_manifest(paper):
    check_official_layout(paper, MANIFEST)
    assert paper.pad_multiple == 64
    assert len(paper.cc_mean_transforms) == 12 and paper.max_support_slices == 6


def test_released_checkpoint_loads_strictly(paper):
    check_loads_released_checkpoint(paper, MANIFEST)


def test_mlp_linears_are_reachable_by_name(paper):
    modules = dict(paper.named_modules())
    for path in ("layers.0.blocks.1.mlp.fc1", "layers.2.blocks.5.mlp.fc2", "syn_layers.1.blocks.5.mlp.fc1"):
        assert type(modules[path]) is nn.Linear


# -- window attention against the official definition -------------------------------------


def naive_window_attention(x, qkv, proj, heads, window, shift, bias, masked_logit=None):
    """Swin window attention written out window by window: roll, per-window softmax(qkᵀ/√d + B + M), unroll.

    ``bias(h, dr, dc)`` is the relative-position bias. M marks the pairs of the last window row or
    column that lie on different sides of the shift boundary: ``masked_logit`` is added to them
    (STF adds −100), or they are dropped when it is None (TCM fills −inf).
    """
    b, height, width, c = x.shape
    d = c // heads
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    rel = torch.stack([bias(h, rows[:, None] - rows[None], cols[:, None] - cols[None]) for h in range(heads)])
    x = torch.roll(x, (-shift, -shift), (1, 2))
    out = torch.empty_like(x)
    boundary = window - shift
    for r0 in range(0, height, window):
        for c0 in range(0, width, window):
            tokens = x[:, r0:r0 + window, c0:c0 + window].reshape(b, -1, c)
            q, k, v = qkv(tokens).view(b, -1, 3, heads, d).permute(2, 0, 3, 1, 4)
            logits = q @ k.transpose(-1, -2) / math.sqrt(d) + rel
            mask = torch.zeros(window * window, window * window, dtype=torch.bool)
            if shift and r0 == height - window:
                mask |= (rows[:, None] < boundary) != (rows[None] < boundary)
            if shift and c0 == width - window:
                mask |= (cols[:, None] < boundary) != (cols[None] < boundary)
            if masked_logit is None:
                logits = logits.masked_fill(mask, -math.inf)
            else:
                logits = logits + masked_logit * mask
            att = torch.softmax(logits, -1) @ v
            out[:, r0:r0 + window, c0:c0 + window] = proj(att.transpose(1, 2).reshape(b, -1, c)).view(
                b, window, window, c)
    return torch.roll(out, (shift, shift), (1, 2))


@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention_matches_official_definition(shift):
    torch.manual_seed(0)
    window, heads = 4, 2
    block = SymmetricalTransFormer(**TINY).layers[1].blocks[shift // 2]
    assert block.shift == shift
    attn = block.attn
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    x = torch.randn(2, 8, 12, 12)
    span = 2 * window - 1

    def bias(h, dr, dc):
        return attn.relative_position_bias_table[(dr + window - 1) * span + dc + window - 1, h]

    want = naive_window_attention(x, attn.qkv, attn.proj, heads, window, shift, bias, masked_logit=-100.0)
    torch.testing.assert_close(windowed(x, window, shift, attn), want, atol=1e-5, rtol=1e-5)


def test_odd_feature_maps_are_padded_to_windows():
    """Maps that windows and merges do not tile still run (the official blocks pad internally)."""
    model = SymmetricalTransFormer(**TINY).eval()
    x = torch.rand(1, 3, 72, 40)
    with torch.no_grad():
        y = model.analysis(x)
    assert y.shape == (1, 48, 5, 3)
    assert model.synthesis(y).shape == (1, 3, 80, 48)


# -- tiny size -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> SymmetricalTransFormer:
    torch.manual_seed(0)
    return train_briefly(SymmetricalTransFormer(**TINY))


def test_tiny_is_small():
    assert sum(p.numel() for p in SymmetricalTransFormer(**TINY).parameters()) < 1_000_000


def test_tiny_forward_shapes_and_likelihoods():
    torch.manual_seed(1)
    check_forward_shapes(SymmetricalTransFormer(**TINY), y_channels=48, z_channels=24)


def test_tiny_coding_round_trip(tiny):
    torch.manual_seed(2)
    check_coding(tiny, 128, 192)


def test_tiny_bf16_autocast_keeps_entropy_model_in_float32():
    torch.manual_seed(3)
    check_bf16_autocast(SymmetricalTransFormer(**TINY))


@pytest.mark.slow
def test_paper_size_trains_and_codes_256(paper):
    torch.manual_seed(4)
    x = torch.rand(2, 3, 256, 256)
    out = paper.train()(x)
    assert out["x_hat"].shape == x.shape
    bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
    (bits / x[:, 0].numel() + torch.mean((out["x_hat"] - x) ** 2)).backward()
    assert paper.layers[0].blocks[0].mlp.fc1.weight.grad is not None
    paper.zero_grad(set_to_none=True)
    paper.eval().update(force=True)
    check_coding(paper, 256, 256)

"""TCM backbone: official state-dict layout (N = 64 and 128), strict loading of a released-style
checkpoint, window attention against a direct reading of the official code, real coding round trips."""

from __future__ import annotations

import pytest
import torch
from compressai.layers import ResidualBlockUpsample, ResidualBlockWithStride
from torch import nn

from ctrlic.codecs.backbones.tcm import TCM
from tests.test_backbone_stf import (
    check_bf16_autocast,
    check_coding,
    check_forward_shapes,
    check_loads_released_checkpoint,
    check_official_layout,
    naive_window_attention,
    train_briefly,
)

TINY = {"config": (2,) * 6, "head_dim": (6,) * 6, "N": 12, "M": 48, "num_slices": 4, "max_support_slices": 2,
        "window_size": 4, "hyper_window_size": 2, "hyper_head_dim": 6, "z_channels": 16, "atten_dim": 16,
        "atten_head_dim": 8, "charm_widths": (32,)}


@pytest.fixture(scope="module")
def paper() -> dict[int, TCM]:
    return {n: TCM(N=n) for n in (64, 128)}


@pytest.mark.parametrize("n", [64, 128])
def test_state_dict_matches_official_manifest(paper, n):
    check_official_layout(paper[n], f"tcm_N{n}_M320.tsv")
    assert paper[n].pad_multiple == 128


@pytest.mark.parametrize("n", [64, 128])
def test_released_checkpoint_loads_strictly(paper, n):
    check_loads_released_checkpoint(paper[n], f"tcm_N{n}_M320.tsv")


def test_adapter_sites_have_the_official_module_types(paper):
    modules = dict(paper[64].named_modules())
    for name in ("g_a.1", "g_s.8"):
        mlp = modules[f"{name}.trans_block.mlp"]
        assert [type(m) for m in mlp] == [nn.Linear, nn.GELU, nn.Linear]
        for conv in ("conv1_1", "conv1_2", "conv_block.conv1", "conv_block.conv2"):
            assert type(modules[f"{name}.{conv}"]) is nn.Conv2d
    assert type(modules["g_a.3"]) is ResidualBlockWithStride
    assert type(modules["g_s.3"]) is ResidualBlockUpsample
    assert [type(m) for m in modules["g_s.3.subpel_conv"]] == [nn.Conv2d, nn.PixelShuffle]


@pytest.mark.parametrize("shifted", [False, True])
def test_window_attention_matches_official_definition(shifted):
    torch.manual_seed(0)
    msa = TCM(**TINY).g_a[2 if shifted else 1].trans_block.msa
    assert msa.shift == (2 if shifted else 0) and msa.heads == 2
    with torch.no_grad():
        msa.relative_position_params.normal_()
    x = torch.randn(2, 8, 12, 12)

    def bias(h, dr, dc):
        return msa.relative_position_params[h, dr + 3, dc + 3]

    want = naive_window_attention(x, msa.embedding_layer, msa.linear, 2, 4, msa.shift, bias)
    torch.testing.assert_close(msa(x), want, atol=1e-5, rtol=1e-5)


def test_windows_that_do_not_tile_are_padded():
    """Window 8 on a 64×64 image: SWAtten sees 4×4 maps, the hyperprior 2×2; the official blocks need 128."""
    model = TCM(**{**TINY, "window_size": 8, "hyper_window_size": 4})
    assert model.pad_multiple == 128
    out = model(torch.rand(1, 3, 64, 64))
    assert out["x_hat"].shape == (1, 3, 64, 64)
    assert torch.isfinite(out["likelihoods"]["y"]).all()


# -- tiny size -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> TCM:
    torch.manual_seed(0)
    return train_briefly(TCM(**TINY))


def test_tiny_is_small():
    model = TCM(**TINY)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert model.pad_multiple == 64


def test_tiny_forward_shapes_and_likelihoods():
    torch.manual_seed(1)
    check_forward_shapes(TCM(**TINY), y_channels=48, z_channels=16)


def test_tiny_coding_round_trip(tiny):
    torch.manual_seed(2)
    check_coding(tiny, 128, 192)


def test_tiny_bf16_autocast_keeps_entropy_model_in_float32():
    torch.manual_seed(3)
    check_bf16_autocast(TCM(**TINY))


@pytest.mark.slow
def test_paper_size_trains_and_codes_256(paper):
    torch.manual_seed(4)
    model = paper[64]
    x = torch.rand(2, 3, 256, 256)
    out = model.train()(x)
    assert out["x_hat"].shape == x.shape
    bits = sum(-torch.log2(v).sum() for v in out["likelihoods"].values())
    (bits / x[:, 0].numel() + torch.mean((out["x_hat"] - x) ** 2)).backward()
    assert model.g_a[1].trans_block.mlp[0].weight.grad is not None
    model.zero_grad(set_to_none=True)
    model.eval().update(force=True)
    check_coding(model, 256, 256)

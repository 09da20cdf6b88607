"""TIC backbones: official state-dict layout and strict loading, the causal attention context, and
wavefront coding against a serial raster-order reference."""

from __future__ import annotations

import hydra
import pytest
import torch

from ctrlic.codecs.backbones.tic import TIC, TICHyperprior
from ctrlic.codecs.build import architecture
from tests.helpers_lpm import backbone_config
from tests.test_backbone_stf import (
    check_bf16_autocast,
    check_coding,
    check_forward_shapes,
    check_loads_released_checkpoint,
    check_official_layout,
    smooth_images,
    train_briefly,
)


def tiny(name: str = "tic"):
    return hydra.utils.instantiate(architecture({**backbone_config(name), "size": "tiny"})["backbone"])


@pytest.mark.parametrize(("n", "m", "manifest"), [(128, 192, "tic_N128_M192.tsv"), (192, 320, "tic_N192_M320.tsv")])
def test_state_dict_matches_official_manifest(n, m, manifest):
    check_official_layout(TIC(N=n, M=m), manifest)


def test_released_checkpoint_loads_strictly():
    check_loads_released_checkpoint(TIC(), "tic_N128_M192.tsv")


def test_hyperprior_variant_is_the_papers_7_51m_tic():
    model = TICHyperprior()
    assert sum(p.numel() for p in model.parameters()) == 7_510_723
    assert not hasattr(model, "context_prediction")


def test_tiny_sizes_are_tiny():
    for name in ("tic", "tic_hyperprior"):
        assert sum(p.numel() for p in tiny(name).parameters()) < 1_000_000


def test_attention_masks_keep_official_shapes_and_other_sizes_still_work():
    model = tiny()
    masks = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("attn_mask")}
    assert masks["g_a1.residual_group.blocks.1.attn_mask"].shape == (256, 64, 64)
    assert masks["h_a3.residual_group.blocks.1.attn_mask"].shape == (4, 16, 16)
    check_forward_shapes(model, 48, 32)
    model.eval()(torch.rand(1, 3, 128, 192))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in masks.items())


def test_causal_context_ignores_the_current_and_later_latents():
    torch.manual_seed(0)
    cam = tiny().context_prediction.eval()
    y_hat = torch.randn(1, 48, 6, 7)
    changed = y_hat.clone()
    changed[:, :, 3, 4:] = torch.randn(48, 3)  # the current position and the rest of its row
    changed[:, :, 4:] = torch.randn(48, 2, 7)  # every later row
    with torch.no_grad():
        before, after = cam(y_hat), cam(changed)
    torch.testing.assert_close(before[:, :, :3], after[:, :, :3])
    torch.testing.assert_close(before[:, :, 3, :5], after[:, :, 3, :5])
    assert not torch.allclose(before[:, :, 3, 5], after[:, :, 3, 5])  # (3, 5) sees (3, 4)


def serial_reconstruction(model: TIC, x: torch.Tensor) -> torch.Tensor:
    """The official coding order: one latent at a time in raster order, context from the whole map."""
    with torch.no_grad():
        y = model.g_a(x)
        z = model.h_a(y)
        eb = model.entropy_bottleneck
        params = model.h_s(eb.decompress(eb.compress(z), z.shape[-2:]))
        y_hat = torch.zeros_like(y)
        for h in range(y.shape[2]):
            for w in range(y.shape[3]):
                feats = torch.cat((params, model.context_prediction(y_hat)), dim=1)
                _, means = model.entropy_parameters(feats).chunk(2, 1)
                y_hat[:, :, h, w] = torch.round(y[:, :, h, w] - means[:, :, h, w]) + means[:, :, h, w]
        return model.g_s(y_hat).clamp(0, 1)


def test_wavefront_coding_matches_the_serial_raster_reference():
    torch.manual_seed(0)
    model = train_briefly(tiny(), steps=3)
    x = smooth_images(1, 64, 128)
    sections = model.encode(x)
    x_hat = model.decode(sections, 64, 128)
    torch.testing.assert_close(x_hat, serial_reconstruction(model, x), atol=1e-5, rtol=0)
    assert torch.equal(model.decode(sections, 64, 128), x_hat)
    assert model.encode(x) == sections


def test_hyperprior_variant_round_trips():
    torch.manual_seed(0)
    model = train_briefly(tiny("tic_hyperprior"), steps=3)
    check_coding(model, 64, 128)


@pytest.mark.parametrize("name", ["tic", "tic_hyperprior"])
def test_bf16_autocast_keeps_likelihoods_in_float32(name):
    check_bf16_autocast(tiny(name))

"""Granularity control: patch entropy, entropy-ordered grain masks, knobs and the query-table rate path."""

from __future__ import annotations

import pytest
import torch

from ctrlic.codecs.backbones.grain_masks import grain_masks, patch_entropy
from ctrlic.codecs.backbones.vqgan_blocks import upsample_mask
from ctrlic.codecs.control.base import KnobError, SchemeFitError
from ctrlic.codecs.control.granularity import Granularity, theoretical_bpp, tokens_per_pixel

README_TABLE = [(0.0, 0.5, 0.5), (0.0, 0.8, 0.2), (0.1, 0.8, 0.1), (0.3, 0.6, 0.1), (0.5, 0.4, 0.1), (0.9, 0.1, 0.0)]


def textured_image(seed: int = 0, size: tuple[int, int] = (64, 96)) -> torch.Tensor:
    """[−1, 1] image whose left part is flat and right part noisy: entropy rises to the right."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    ramp = torch.linspace(0, 1, w).view(1, 1, 1, w)
    noise = torch.rand(1, 3, h, w, generator=gen) * 2 - 1
    return (noise * ramp**2).clamp(-1, 1)


def test_flat_patch_has_zero_entropy_and_noise_has_more():
    flat = -torch.ones(1, 3, 16, 16)  # on a bin centre (0 would split between two bins: ln 2)
    noisy = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert patch_entropy(flat, 16).item() < 1e-6
    assert patch_entropy(noisy, 16).item() > 2.5  # ~ln 32 = 3.47 for spread-out values


@pytest.mark.parametrize("ratios", [(0.5, 0.4, 0.1), (0.0, 0.5, 0.5), (1.0, 0.0, 0.0), (0.3, 0.2, 0.5)])
def test_masks_partition_the_image_at_the_requested_areas(ratios):
    x = textured_image()
    mask_c, mask_m, mask_f = grain_masks(x, ratios, router="exact")
    assert mask_c.shape[-2:] == (4, 6) and mask_m.shape[-2:] == (8, 12) and mask_f.shape[-2:] == (16, 24)
    cover = upsample_mask(mask_c, 4) + upsample_mask(mask_m, 2) + mask_f.float()
    assert torch.equal(cover, torch.ones_like(cover))  # every H/4 cell belongs to exactly one grain
    areas = (mask_c.float().mean(), mask_m.float().mean() / 1, mask_f.float().mean())
    fine, medium, coarse = ratios
    assert areas[0].item() == pytest.approx(coarse, abs=1 / 24)
    assert areas[1].item() == pytest.approx(medium, abs=1 / 96 + 1e-6)
    assert areas[2].item() == pytest.approx(fine, abs=2 / 24)


@pytest.mark.parametrize("router", ["official", "exact"])
def test_coarse_grain_goes_to_the_lowest_entropy_patches(router):
    x = textured_image()
    mask_c, mask_m, mask_f = grain_masks(x, (0.3, 0.2, 0.5), router=router)
    e16 = patch_entropy(x, 16)[0]
    assert e16[mask_c[0, 0]].max() <= e16[~mask_c[0, 0]].min()
    assert mask_c[0, 0, :, 0].all() and mask_f[0, 0, :, -1].all()  # flat left is coarse, noisy right fine


def test_ratios_must_sum_to_one():
    scheme = Granularity(README_TABLE)
    with pytest.raises(KnobError, match="sum to 1"):
        scheme.resolve({"fine": 0.9, "medium": 0.1, "coarse": 0.1})
    assert scheme.resolve({"fine": 0.9, "medium": 0.1, "coarse": 0.0})["fine"] == 0.9


def test_theoretical_bpp_matches_the_published_bounds():
    bounds_1024 = [0.102, 0.137, 0.211, 0.305, 0.398, 0.594]  # research notes §3.5 (raw masks, 10-bit codes)
    for row, bound in zip(README_TABLE, bounds_1024, strict=True):
        assert theoretical_bpp(row, 10.0) == pytest.approx(bound, abs=0.003)


def test_rate_path_follows_the_query_table_in_order():
    path = Granularity(README_TABLE).rate_path()
    assert path.at(0.0) == pytest.approx(dict(zip(("fine", "medium", "coarse"), README_TABLE[0], strict=True)))
    assert path.at(1.0) == pytest.approx(dict(zip(("fine", "medium", "coarse"), README_TABLE[-1], strict=True)))
    rates = [tokens_per_pixel(tuple(path.at(t / 20).values())) for t in range(21)]
    assert all(b > a for a, b in zip(rates, rates[1:], strict=False))  # t is linear in the index rate
    assert rates[10] == pytest.approx((rates[0] + rates[-1]) / 2, rel=1e-6)
    assert sum(path.at(0.37).values()) == pytest.approx(1.0)


def test_rate_path_does_not_depend_on_the_code_length():
    short, long = Granularity(README_TABLE, mean_code_length=1.5), Granularity(README_TABLE, mean_code_length=14)
    assert short.rate_path().at(0.6) == long.rate_path().at(0.6)


def test_unordered_query_table_is_rejected():
    scheme = Granularity(list(reversed(README_TABLE)))
    with pytest.raises(KnobError, match="rising rate"):
        scheme.rate_path()


def test_sweep_points_are_the_table_rows():
    scheme = Granularity(README_TABLE)
    assert [tuple(p.values()) for p in scheme.sweep_points()] == README_TABLE


def test_scheme_refuses_a_backbone_without_grains():
    with pytest.raises(SchemeFitError, match="vqgan"):
        Granularity(README_TABLE).attach(torch.nn.Conv2d(3, 3, 1))

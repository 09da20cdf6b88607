"""Control-GIC's mask rules: ``router: official`` against the authors' router, ``exact``, and fine = 0.

``reference_router`` is written here from reading ``TripleGrainFixedEntropyRouter.forward``
(lianqi1008/Control-GIC @ e1c3afe, CGIC/modules/vqvae/RouterTriple.py) for one image, in numpy
and with the authors' mode numbers, independently of ``ctrlic.codecs.backbones.grain_masks``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrlic.codecs.backbones.grain_masks import RouterError, exact_masks, official_masks
from ctrlic.codecs.build import build_codec
from ctrlic.errors import user_error
from tests.helpers_control_gic import tiny_codec, tiny_configs

#: the old README's query table, (fine, medium, coarse) (git show 3043d89:README.md)
README_QUERY_TABLE = [(0.0, 0.5, 0.5), (0.0, 0.8, 0.2), (0.1, 0.8, 0.1), (0.3, 0.6, 0.1), (0.5, 0.4, 0.1),
                      (0.9, 0.1, 0.0)]
#: the current README's fine-control table and its constant-bitrate example
README_FINE_CONTROL = [(0.301, 0.599, 0.1), (0.302, 0.598, 0.1), (0.303, 0.597, 0.1), (0.304, 0.596, 0.1),
                       (0.1, 0.8, 0.1)]
#: one triple per router mode 0-6 (all grains; no coarse; no medium; no fine; coarse, medium, fine alone)
MODE_ROWS = [(0.5, 0.4, 0.1), (0.7, 0.3, 0.0), (0.5, 0.0, 0.5), (0.0, 0.7, 0.3), (0.0, 0.0, 1.0),
             (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]
ROWS = README_QUERY_TABLE + README_FINE_CONTROL + MODE_ROWS


def reference_router(e16: np.ndarray, e8: np.ndarray, fine: float, medium: float, coarse: float):
    """(mode, coarse, medium, fine masks) by the authors' rule for one image's float32 entropy maps."""
    def up(a, f):
        return np.kron(a, np.ones((f, f), dtype=a.dtype))

    def threshold(values, k):  # their x_sorted[k - 1 if k != 0 else k]
        return np.sort(values.ravel())[k - 1 if k != 0 else k]

    n16, n8 = e16.size, e8.size
    zero_c = np.zeros(e16.shape, np.float32)
    zero_m = np.zeros(e8.shape, np.float32)
    zeros = (fine == 0) + (medium == 0) + (coarse == 0)
    if zeros == 0:
        mode = 0
        gate_c = (e16 < threshold(e16, round(n16 * coarse))).astype(np.float32)
        masked = e8 * (1 - up(gate_c, 2))
        k = round(4 * n16 * coarse + n8 * medium)
        gate_m = (e8 < threshold(masked, k)).astype(np.float32) * (1 - up(gate_c, 2))
        gate_f = 1 - up(gate_c, 4) - up(gate_m, 2)
    elif zeros == 1 and coarse == 0:
        mode = 1
        gate_m = (e8 < threshold(e8, round(n8 * medium))).astype(np.float32)
        gate_c, gate_f = zero_c, 1 - up(gate_m, 2)
    elif zeros == 1 and medium == 0:
        mode = 2
        gate_c = (e16 < threshold(e16, round(n16 * coarse))).astype(np.float32)
        gate_m, gate_f = zero_m, 1 - up(gate_c, 4)
    elif zeros == 1:
        mode = 3
        gate_c = (e16 < threshold(e16, round(n16 * coarse))).astype(np.float32)
        gate_m, gate_f = 1 - up(gate_c, 2), up(zero_m, 2)
    elif coarse != 0:
        mode, gate_c, gate_m, gate_f = 4, zero_c + 1, zero_m, up(zero_m, 2)
    elif medium != 0:
        mode, gate_c, gate_m, gate_f = 5, zero_c, zero_m + 1, up(zero_c, 4)
    else:
        mode, gate_c, gate_m, gate_f = 6, zero_c, zero_m, up(zero_m, 2) + 1
    return mode, gate_c != 0, gate_m != 0, gate_f != 0


def entropy_maps(kind: str, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed float32 entropy maps (h, w) and (2h, 2w): distinct values, or many ties and zeros."""
    rng = np.random.default_rng(seed)
    e16 = rng.uniform(0, np.log(32), (h, w)).astype(np.float32)
    e8 = rng.uniform(0, np.log(32), (2 * h, 2 * w)).astype(np.float32)
    if kind == "ties":
        e16, e8 = np.round(e16 * 2) / 2, np.round(e8 * 2) / 2  # steps of 0.5 nats, zeros included
    return e16, e8


MAPS = [("distinct", 4, 6, 0), ("distinct", 8, 12, 1), ("distinct", 3, 5, 2), ("ties", 4, 6, 3),
        ("ties", 8, 12, 4), ("distinct", 1, 13, 5)]


@pytest.mark.parametrize("maps", MAPS, ids=[f"{k}-{h}x{w}" for k, h, w, _ in MAPS])
def test_official_router_equals_the_authors_rule_on_every_table_row(maps):
    e16, e8 = entropy_maps(*maps)
    modes = set()
    for fine, medium, coarse in ROWS:
        mode, *expected = reference_router(e16, e8, fine, medium, coarse)
        modes.add(mode)
        ours = official_masks(torch.from_numpy(e16)[None], torch.from_numpy(e8)[None], (fine, medium, coarse))
        for grain, mine, theirs in zip(("coarse", "medium", "fine"), ours, expected, strict=True):
            assert mine.shape == (1, 1, *theirs.shape)
            assert np.array_equal(mine[0, 0].numpy(), theirs), f"{grain} mask differs at {(fine, medium, coarse)}"
    assert modes == set(range(7))


def test_official_router_keeps_one_coarse_patch_fewer_than_exact():
    e16, e8 = (torch.from_numpy(m)[None] for m in entropy_maps("distinct", 4, 6, 0))
    official = official_masks(e16, e8, (0.5, 0.4, 0.1))
    exact = exact_masks(e16, e8, (0.5, 0.4, 0.1))
    assert int(exact[0].sum()) == round(24 * 0.1) == 2 and int(official[0].sum()) == 1
    # medium: entries strictly below the round(4·24·0.1 + 96·0.4) = 48th of the zeroed list, minus coarse cells
    assert int(official[1].sum()) == 48 - 1 - 4 * 1


@pytest.mark.parametrize("router", [official_masks, exact_masks])
@pytest.mark.parametrize("maps", MAPS, ids=[f"{k}-{h}x{w}" for k, h, w, _ in MAPS])
def test_fine_zero_codes_no_fine_cell(router, maps):
    e16, e8 = (torch.from_numpy(m)[None] for m in entropy_maps(*maps))
    for coarse in (0.1, 0.2, 0.3, 0.5, 0.9):
        mask_c, mask_m, mask_f = router(e16, e8, (0.0, 1 - coarse, coarse))
        assert not mask_f.any()
        cover = mask_c.repeat_interleave(2, -1).repeat_interleave(2, -2) ^ mask_m
        assert cover.all()  # every 8×8 cell is coarse or medium, never both


def test_exact_router_gave_leftover_fine_cells_by_rounding_before():
    """1×13 patches at (0, 0.9, 0.1): round(1.3)=1 coarse (4 cells) + round(46.8)=47 medium leaves 1 of 52."""
    e16, e8 = (torch.from_numpy(m)[None] for m in entropy_maps("distinct", 1, 13, 5))
    mask_c, mask_m, mask_f = exact_masks(e16, e8, (0.0, 0.9, 0.1))
    assert int(mask_c.sum()) == 1 and int(mask_m.sum()) == 48 and not mask_f.any()


def test_the_authors_derived_fine_ratio_is_not_always_zero():
    """They compute fine = 1 − coarse − medium in float64; we take the knob's own zero (docs/fidelity.md)."""
    assert 1 - 0.7 - 0.3 != 0 and 1 - 0.2 - 0.8 == 0 and 1 - 0.5 - 0.5 == 0  # 1 − coarse − medium
    e16, e8 = entropy_maps("distinct", 4, 6, 0)
    mode, *theirs = reference_router(e16, e8, 1 - 0.7 - 0.3, 0.3, 0.7)
    assert mode == 0 and theirs[2].any()  # their code sends (0, 0.3, 0.7) through mode 0: a fine cell
    ours = official_masks(torch.from_numpy(e16)[None], torch.from_numpy(e8)[None], (0.0, 0.3, 0.7))
    assert not ours[2].any()


def test_official_router_ranks_each_image_of_a_batch_alone():
    maps = [entropy_maps("distinct", 4, 6, s) for s in (7, 8)]
    batch = official_masks(torch.stack([torch.from_numpy(m[0]) for m in maps]),
                           torch.stack([torch.from_numpy(m[1]) for m in maps]), (0.3, 0.6, 0.1))
    for i, (e16, e8) in enumerate(maps):
        alone = official_masks(torch.from_numpy(e16)[None], torch.from_numpy(e8)[None], (0.3, 0.6, 0.1))
        assert all(torch.equal(b[i], a[0]) for b, a in zip(batch, alone, strict=True))


def test_router_setting_reaches_the_backbone_and_only_changes_the_encoder():
    assert tiny_codec().backbone.router == "official"  # conf/control/granularity.yaml default
    backbone_cfg, control_cfg = tiny_configs()
    torch.manual_seed(0)
    exact = build_codec(backbone_cfg, {**control_cfg, "router": "exact"}).backbone.eval()
    assert exact.router == "exact"
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    exact.ratios = (0.5, 0.4, 0.1)
    with torch.no_grad():
        sections = exact.encode(x)
        decoded = exact.decode(sections, 64, 96)
        exact.router = "official"
        assert exact.encode(x)[:2] != sections[:2]  # other masks on this image
        assert torch.equal(exact.decode(sections, 64, 96), decoded)  # masks are in the bitstream


def test_fine_zero_writes_an_empty_fine_section():
    codec = tiny_codec()
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        codec.set_knobs({"fine": 0.0, "medium": 0.7, "coarse": 0.3})
        sections = codec.backbone.encode(x)
        assert not codec.backbone.grain_masks(x * 2 - 1)[2].any()
    assert sections[4] == codec.backbone.huffman.encode(np.zeros(0, dtype=np.int64))


def test_unknown_router_is_a_user_error():
    backbone_cfg, control_cfg = tiny_configs()
    with pytest.raises(Exception) as info:  # Hydra wraps errors raised while instantiating
        build_codec(backbone_cfg, {**control_cfg, "router": "fast"})
    err = user_error(info.value)
    assert isinstance(err, RouterError) and "official" in str(err)

"""The 3P scan, its masks, the mixture's integer tables and the range coder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrlic.codecs.lossless import mixture, scan
from ctrlic.codecs.lossless.coder import Decoder, Encoder
from tests.helpers_lossless import tiny_mgcf


def test_every_pixel_is_coded_once_in_3p_minus_2_steps():
    p = 9
    table = scan.step_table(p)
    assert table.max().item() == scan.num_steps(p) == 3 * p - 2
    seen = torch.zeros(p, p, dtype=torch.int64)
    for t in range(1, scan.num_steps(p) + 1):
        rows, cols = scan.group(p, t)
        assert (table[rows, cols] == t).all()
        seen[rows, cols] += 1
    assert (seen == 1).all()


def test_masks_reach_only_earlier_steps():
    mask7 = scan.context_mask(7, include_centre=False)
    assert int(mask7.sum()) == 22  # DLPR's "3P" 7×7 mask
    assert torch.equal(scan.context_mask(3, include_centre=False),
                       torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]]))
    assert scan.context_mask(7, include_centre=True)[3, 3] == 1
    dy, dx = torch.nonzero(mask7, as_tuple=True)
    assert ((2 * (dy - 3) + (dx - 3)) < 0).all()  # strictly earlier steps
    with pytest.raises(scan.ScanError):
        scan.context_mask(4, include_centre=False)


def test_model_output_depends_only_on_earlier_steps():
    model = tiny_mgcf(depth=3)
    p = model.patch_size
    x = torch.rand(1, 3, p, p, requires_grad=True)
    params = model.mixture_params(x)
    i, j = 3, 2
    params[0, :, i, j].sum().backward()
    reached = x.grad[0].abs().sum(0) > 0
    table = scan.step_table(p)
    assert reached.any()
    assert (table[reached] < table[i, j]).all()


def test_patchify_round_trips_odd_sizes():
    x = torch.rand(2, 3, 13, 21)
    patches, grid = scan.patchify(x, 8)
    assert patches.shape == (2 * 2 * 3, 3, 8, 8)
    assert torch.equal(scan.unpatchify(patches, grid, 13, 21), x)


def test_coding_pmf_equals_training_likelihood():
    torch.manual_seed(0)
    k = 5
    params = torch.randn(6, 10 * k, 1, 1) * 0.5
    x_int = torch.randint(0, 256, (6, 3, 1, 1)).float()
    x_int[0] = 0
    x_int[1] = 255  # the open edge bins
    ll = mixture.log_likelihood(params, x_int, k)[:, :, 0, 0]
    p = params[:, :, 0, 0].double().numpy()
    symbols = x_int[:, :, 0, 0].long().numpy()
    for c in range(3):
        pmf = mixture.channel_pmf(p, c, symbols[:, :c], k)
        assert np.allclose(pmf.sum(1), 1.0)
        assert np.allclose(np.log(pmf[np.arange(6), symbols[:, c]]), ll[:, c].double().numpy(), atol=1e-4)


def test_integer_tables_sum_to_the_precision_with_a_floor():
    pmf = np.zeros((3, 256))
    pmf[:, 7] = 1.0
    pmf[1] = 1 / 256
    freq = mixture.integer_pmf(pmf, 16)
    assert (freq.sum(1) == 1 << 16).all() and freq.min() >= 1
    with pytest.raises(ValueError, match="precision"):
        mixture.integer_pmf(pmf, 8)


def test_range_coder_round_trips_under_changing_tables():
    rng = np.random.default_rng(0)
    tables = [mixture.integer_pmf(rng.dirichlet(np.ones(256) * 0.1, size=50), 16) for _ in range(4)]
    symbols = [np.array([rng.choice(256, p=t / t.sum()) for t in tab]) for tab in tables]
    enc = Encoder(16)
    for s, t in zip(symbols, tables, strict=True):
        enc.encode(s, t)
    dec = Decoder(enc.finish(), 16)
    for s, t in zip(symbols, tables, strict=True):
        assert np.array_equal(dec.decode(t), s)

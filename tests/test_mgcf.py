"""MGCF: paper size, CCI equal to the full forward, bit-exact round trips, real bits near the estimate."""

from __future__ import annotations

import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from ctrlic.codecs.build import build_codec
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.lossless import mixture, scan
from ctrlic.codecs.lossless.cci import CachedScan
from ctrlic.lightning_modules.lossless import LosslessModule
from ctrlic.metrics.quality import bits_per_subpixel
from tests.conftest import ROOT, run_cli
from tests.helpers_lossless import as_uint8, kodak_crop, tiny_mgcf


def test_paper_size_has_575k_parameters():
    cfg = OmegaConf.load(ROOT / "conf" / "backbone" / "mgcf.yaml")
    codec = build_codec(cfg)
    assert sum(p.numel() for p in codec.backbone.parameters()) == 574_514  # paper: 575K
    assert codec.lossless and codec.backbone.patch_size == 64


def test_cci_probabilities_equal_the_full_forward():
    model = tiny_mgcf(depth=3)
    x_int = torch.round(kodak_crop(16, 24) * 255)
    patches, _ = scan.patchify(mixture.normalize(x_int), model.patch_size)
    full = model.mixture_params(patches)
    state = CachedScan(model, len(patches))
    pixels = torch.round((patches + 1) * 127.5).long().permute(0, 2, 3, 1)
    for t in range(1, scan.num_steps(model.patch_size) + 1):
        rows, cols = state.group(t)
        torch.testing.assert_close(state.params(t), full[:, :, rows, cols].permute(0, 2, 1), atol=1e-5, rtol=1e-5)
        state.write(t, pixels[:, rows, cols])


@pytest.mark.parametrize("shape", [(24, 32), (13, 21), (1, 1)], ids=["multiple", "odd", "one-pixel"])
def test_kodak_crops_round_trip_bit_exactly(shape):
    codec = Codec(tiny_mgcf(), name="mgcf")
    x = kodak_crop(*shape)
    data = codec.compress(x)
    assert torch.equal(as_uint8(codec.decompress(data)), as_uint8(x))


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_flat_and_noisy_images_round_trip(kind):
    codec = Codec(tiny_mgcf(), name="mgcf")
    if kind == "flat":  # zero red and blue, full green at full scale: both ends of the symbol range
        x = torch.zeros(1, 3, 12, 17)
        x[:, 1] = 1.0
    else:
        x = torch.randint(0, 256, (1, 3, 12, 17), generator=torch.Generator().manual_seed(1)) / 255
    assert torch.equal(as_uint8(codec.decompress(codec.compress(x))), as_uint8(x))


def test_real_bits_match_the_likelihood_estimate():
    model = tiny_mgcf()
    x = kodak_crop(32, 32)
    section = model.encode(x)[0]
    estimate = bits_per_subpixel(model(x), x).item() * x.numel()
    assert abs(8 * len(section) - estimate) < 0.01 * estimate + 64


def test_same_image_gives_the_same_bitstream_and_other_weights_are_refused():
    x = kodak_crop(16, 16)
    codec = Codec(tiny_mgcf(), name="mgcf")
    assert codec.compress(x) == codec.compress(x)
    other = Codec(tiny_mgcf(seed=1), name="mgcf")
    with pytest.raises(ValueError, match="fingerprint|weights"):
        other.decompress(codec.compress(x))


def test_training_likelihood_is_a_probability_over_all_symbols():
    model = tiny_mgcf()
    params = torch.randn(1, 10 * model.mixtures, 1, 1)
    values = torch.arange(256.0)
    x_int = values.view(256, 1, 1, 1).expand(256, 3, 1, 1)
    ll = mixture.log_likelihood(params.expand(256, -1, -1, -1), x_int, model.mixtures)
    assert math.isclose(ll[:, 0].exp().sum().item(), 1.0, rel_tol=1e-4)


def test_bf16_autocast_computes_the_mixture_likelihood_in_fp32():
    model = tiny_mgcf()
    x = kodak_crop(16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        x_int = torch.round(x * 255)
        patches, grid = scan.patchify(mixture.normalize(x_int), model.patch_size)
        params = model.mixture_params(patches)
    assert params.dtype == torch.bfloat16  # the network ran in bf16 ...
    expected = mixture.log_likelihood(params.float(), torch.round((patches + 1) * 127.5), model.mixtures)
    assert out["log_likelihoods"].dtype == torch.float32  # ... the likelihood maths in fp32, on its outputs
    assert torch.equal(out["log_likelihoods"], scan.unpatchify(expected, grid, 16, 16))


def test_lossless_module_lowers_bpsp_in_a_few_steps():
    codec = Codec(tiny_mgcf(), name="mgcf")
    module = LosslessModule(codec, lr=5e-3)
    optimizer = torch.optim.Adam(module.net_params, lr=5e-3)
    x = kodak_crop(16, 16)
    losses = []
    for _ in range(8):
        loss = bits_per_subpixel(codec(x), x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3
    assert module.aux_params == [] and len(module.net_params) == len(list(codec.backbone.parameters()))


@pytest.mark.slow
def test_mgcf_smoke_run_trains_and_writes_bpsp(tmp_path):
    run_cli("experiment=mgcf", "debug=smoke", "data=demo", f"hydra.run.dir={tmp_path}")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["meta"]["codec"] == "mgcf" and len(saved["results"]["bpsp"]) == 1
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()

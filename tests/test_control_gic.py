"""Control-GIC end to end: VQ-GAN training, rate moving with the ratios, target-bpp coding, the smoke run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ctrlic.codecs.huffman import HuffmanCode
from ctrlic.codecs.rate_search import search_target
from ctrlic.lightning_modules.checkpoint import open_codec
from tests.conftest import run_cli
from tests.helpers_control_gic import kodak_image, tiny_codec, train_tiny
from tests.helpers_report import check_report

STEPS = 8


@pytest.fixture(scope="module")
def trained():
    """A tiny VQGAN after a few VQ-GAN steps (fixed seed), with its Lightning trainer and module."""
    codec = tiny_codec(seed=0)
    before = {k: v.clone() for k, v in codec.state_dict().items()}
    module, trainer = train_tiny(codec, STEPS, seed=0)
    codec.eval()
    return codec, module, trainer, before


def test_one_generator_and_one_discriminator_step_per_batch(trained):
    codec, module, trainer, before = trained
    assert trainer.global_step == STEPS  # counts generator steps only
    assert module.loss.discriminator.main[0].weight.abs().sum() > 0
    disc_state = module.loss.discriminator.state_dict()
    assert disc_state["main.3.num_batches_tracked"].item() > 0  # the discriminator ran in training mode
    after = codec.state_dict()
    assert not torch.equal(after["backbone.decoder.conv_out.weight"], before["backbone.decoder.conv_out.weight"])
    assert codec.backbone.quantize.counts.sum().item() > 0


def test_bpp_rises_with_the_fine_ratio_at_fixed_coarse(trained):
    codec = trained[0]
    x = kodak_image()[..., 128:384, 192:576]
    bpps = [8 * len(codec.compress(x, {"fine": f, "medium": 0.9 - f, "coarse": 0.1})) / x[0, 0].numel()
            for f in (0.1, 0.3, 0.5, 0.7, 0.9)]
    assert all(b > a for a, b in zip(bpps, bpps[1:], strict=False)), bpps


def test_statistical_huffman_codes_fewer_bits_than_uniform(trained):
    backbone = trained[0].backbone
    counts = backbone.quantize.counts.numpy()
    x = kodak_image()[..., :128, :192] * 2 - 1
    with torch.no_grad():
        masks = backbone.grain_masks(x)
        _, _, indices = backbone.quantize_image(x, masks)
    from ctrlic.codecs.backbones.vqgan import native_tokens

    tokens = native_tokens(indices, masks).numpy()
    statistical, uniform = HuffmanCode.from_counts(counts), HuffmanCode.uniform(counts.size)
    assert statistical.mean_length(counts) < uniform.mean_length(counts) == pytest.approx(10.0)
    assert len(statistical.encode(tokens)) < len(uniform.encode(tokens))
    assert np.array_equal(statistical.decode(statistical.encode(tokens), tokens.size), tokens)


def reachable(codec, x, fraction: float) -> float:
    """A target bpp at ``fraction`` of the way between the path's ends on this image."""
    path = codec.control.rate_path()
    lo, hi = (8 * len(codec.compress(x, path.at(t))) / x[0, 0].numel() for t in (0.0, 1.0))
    return lo + fraction * (hi - lo)


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_round_trip_at_a_target_bpp(trained, fraction):
    codec = trained[0]
    x = kodak_image()[..., :128, :192]
    result = search_target(codec, x, reachable(codec, x, fraction))
    assert result.in_range and result.relative_error < 0.05  # a small crop moves in coarse steps
    x_hat = codec.decompress(result.data)
    assert x_hat.shape == x.shape and 0 <= x_hat.min() and x_hat.max() <= 1
    assert sum(result.knobs.values()) == pytest.approx(1.0, abs=1e-4)


def test_target_bpp_lands_within_one_percent_on_a_kodak_image(trained):
    codec = trained[0]
    x = kodak_image()  # 768×512
    result = search_target(codec, x, reachable(codec, x, 0.55), tolerance=0.005)
    assert result.in_range, result.message
    assert result.relative_error <= 0.01, result.message
    assert result.bpp == pytest.approx(8 * len(result.data) / (768 * 512))


def test_smoke_experiment_writes_an_rd_curve_over_ratio_settings(tmp_path):
    run_cli("experiment=control_gic", "debug=smoke", "data=demo", f"hydra.run.dir={tmp_path}")
    results = json.loads((tmp_path / "results.json").read_text())
    bpp = results["results"]["bpp"]
    assert len(bpp) >= 3 and all(b > a for a, b in zip(bpp, bpp[1:], strict=False))
    assert len(results["results"]["lpips"]) == len(bpp)
    assert {"fine", "medium", "coarse"} <= set(results["meta"]["points"][0])
    codec = open_codec(tmp_path / "checkpoints" / "last.ckpt")
    stream = sorted((tmp_path / "bitstreams").rglob("*.ctl"))[0]
    assert codec.decompress(stream.read_bytes()).shape[:2] == (1, 3)  # the checkpoint decodes the run's files
    points = check_report(tmp_path)["sets"][0]["images"][0]["points"]  # Huffman lengths + the grain mask
    assert all((tmp_path / p["overlay"]).is_file() and sum(p["grains"].values()) > 0 for p in points)
    assert points[0]["grains"] != points[-1]["grains"]  # the granularity row moves the mask

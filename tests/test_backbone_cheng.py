"""Cheng2020-attn: CompressAI zoo weights load strictly, outputs match, real coding round-trips."""

from __future__ import annotations

import pytest
import torch
from compressai.zoo import cheng2020_attn

from ctrlic.codecs.backbones.cheng import Cheng2020Attn
from ctrlic.codecs.checkpoint import load_weights
from tests.manifests import manifest_shapes, manifest_total_params

CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


@pytest.mark.parametrize(("quality", "n"), [(1, 128), (6, 192)])
def test_state_dict_matches_official_manifest(quality, n):
    ours = {k: tuple(v.shape) for k, v in Cheng2020Attn(N=n).state_dict().items()}
    manifest = manifest_shapes(f"cheng2020_attn_q{quality}.tsv")
    assert list(ours) == list(manifest)
    assert {k: s for k, s in ours.items() if not k.endswith(CDF_BUFFERS)} == {
        k: s for k, s in manifest.items() if not k.endswith(CDF_BUFFERS)}
    total = sum(p.numel() for p in Cheng2020Attn(N=n).parameters())
    assert total == manifest_total_params(f"cheng2020_attn_q{quality}.tsv")


@pytest.mark.parametrize("quality", [1, 4])
def test_compressai_zoo_state_dict_loads_strictly_and_outputs_match(quality):
    torch.manual_seed(quality)
    reference = cheng2020_attn(quality=quality, pretrained=False).eval()
    reference.update(force=True)  # a zoo checkpoint holds filled CDF tables
    ours = Cheng2020Attn(N=reference.N).eval()
    missing = load_weights(ours, reference.state_dict())
    assert missing == []
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = reference(x), ours(x)
    torch.testing.assert_close(a["x_hat"], b["x_hat"])
    for key in ("y", "z"):
        torch.testing.assert_close(a["likelihoods"][key], b["likelihoods"][key])


def test_forward_is_bit_identical_to_compressai():
    """docs/fidelity.md: x̂ and both likelihood tensors are bit for bit CompressAI's."""
    torch.manual_seed(2)
    reference = cheng2020_attn(quality=1, pretrained=False).eval()
    ours = Cheng2020Attn(N=reference.N).eval()
    assert load_weights(ours, reference.state_dict()) == []
    x = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = reference(x), ours(x)
    assert torch.equal(a["x_hat"], b["x_hat"])
    assert all(torch.equal(a["likelihoods"][k], b["likelihoods"][k]) for k in ("y", "z"))


def test_wavefront_coding_matches_compressai_bitstream_size_and_reconstruction():
    torch.manual_seed(0)
    ours = Cheng2020Attn(N=32).eval()
    ours.update(force=True)
    reference = cheng2020_attn(quality=1, pretrained=False)
    reference = type(reference)(N=32).eval()
    reference.load_state_dict(ours.state_dict())
    reference.update(force=True)
    x = torch.rand(1, 3, 128, 192)
    sections = ours.encode(x)
    theirs = reference.compress(x)
    assert len(sections[0]) == len(theirs["strings"][0][0])
    assert sections[1] == theirs["strings"][1][0]
    x_hat = ours.decode(sections, 128, 192)
    ref_hat = reference.decompress(theirs["strings"], theirs["shape"])["x_hat"]
    torch.testing.assert_close(x_hat, ref_hat, atol=1e-5, rtol=0)


def test_decode_is_deterministic():
    torch.manual_seed(1)
    model = Cheng2020Attn(N=32).eval()
    model.update(force=True)
    x = torch.rand(1, 3, 64, 128)
    sections = model.encode(x)
    assert torch.equal(model.decode(sections, 64, 128), model.decode(sections, 64, 128))
    assert model.encode(x) == sections


def test_bf16_autocast_keeps_likelihoods_in_float32():
    model = Cheng2020Attn(N=32)
    x = torch.rand(1, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out["likelihoods"]["y"].dtype == torch.float32
    assert out["likelihoods"]["z"].dtype == torch.float32

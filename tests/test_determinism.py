"""Decode determinism: the same bitstream decodes to the same bytes, the same image encodes to the same
bitstream, on the plain path and on the device-robust (CPU float64) entropy-parameter path."""

from __future__ import annotations

import pytest
import torch

from ctrlic.codecs import bitstream
from ctrlic.codecs.build import build_codec, export_codec, load_codec
from ctrlic.codecs.entropy.robust import EXTRAS_KEY, EntropyPathError
from ctrlic.metrics.quality import psnr
from tests.conftest import tiny_stf_with_adapters
from tests.helpers_cli import kodak_crop


@pytest.fixture(scope="module")
def codec_file(tmp_path_factory):
    torch.manual_seed(0)
    backbone_cfg, control_cfg = tiny_stf_with_adapters()
    return export_codec(build_codec(backbone_cfg, control_cfg), tmp_path_factory.mktemp("det") / "stf.codec.pt")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from ctrlic.datamodules.image_io import load_rgb8, to_tensor

    return to_tensor(load_rgb8(kodak_crop(tmp_path_factory.mktemp("img") / "crop.png"))[0])[None]


@pytest.mark.parametrize("path", ["native", "cpu64"])
def test_same_image_same_bitstream_and_same_decoded_bytes(codec_file, image, path):
    first, second = load_codec(codec_file), load_codec(codec_file)  # two independent loads, as two runs
    first.set_options(entropy_path=path)
    second.set_options(entropy_path=path)
    data = first.compress(image, {"alpha": 0.4})
    assert second.compress(image, {"alpha": 0.4}) == data
    a, b = first.decompress(data), second.decompress(data)
    assert torch.equal(a, b)
    assert torch.equal(first.decompress(data), a)


def test_robust_path_is_recorded_and_followed_by_the_decoder(codec_file, image):
    codec = load_codec(codec_file)
    codec.set_options(entropy_path="cpu64")
    robust = codec.compress(image)
    assert bitstream.read_header(robust).extras[EXTRAS_KEY] == "cpu64"
    codec.set_options(entropy_path="native")
    plain = codec.compress(image)
    assert EXTRAS_KEY not in bitstream.read_header(plain).extras
    # a native-path codec decodes the robust stream (the header decides) to nearly the plain result
    assert psnr(codec.decompress(robust), codec.decompress(plain)) > 40
    assert abs(len(robust) - len(plain)) < 0.02 * len(plain)


def _tiny(name: str):
    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    torch.manual_seed(0)
    cfg = {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "backbone" / f"{name}.yaml")), "size": "tiny"}
    return build_codec(cfg)


@pytest.mark.parametrize("name", ["cheng2020_attn", "tic"])
def test_wavefront_backbones_code_on_the_robust_path(name, image):
    codec = _tiny(name)
    codec.set_options(entropy_path="cpu64")
    robust = codec.compress(image)
    assert bitstream.read_header(robust).extras[EXTRAS_KEY] == "cpu64"
    decoded = codec.decompress(robust)
    assert torch.equal(_tiny(name).decompress(robust), decoded)  # another load, the same pixels
    codec.set_options(entropy_path="native")
    plain = codec.compress(image)
    assert psnr(decoded, codec.decompress(plain)) > 35  # float64 vs float32 means: the same image, nearly


def test_backbone_without_robust_path_refuses_it():
    codec = _tiny("mgcf")
    assert not codec.backbone.robust_entropy
    with pytest.raises(EntropyPathError, match="no device-robust"):
        codec.set_options(entropy_path="cpu64")

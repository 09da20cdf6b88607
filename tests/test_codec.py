"""The byte-level codec: round trips of any image size, and every refusal of a foreign bitstream."""

from __future__ import annotations

import pytest
import torch

from ctrlic.codecs import bitstream
from ctrlic.codecs.backbones.cheng import Cheng2020Attn
from ctrlic.codecs.bitstream import BitstreamError
from ctrlic.codecs.build import build_codec, export_codec, load_codec
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.control.base import KnobError

BACKBONE = {"_target_": "ctrlic.codecs.backbones.cheng.Cheng2020Attn", "name": "cheng2020_attn",
            "size": "tiny", "sizes": {"tiny": {"N": 32}}, "checkpoint": None}


@pytest.fixture(scope="module")
def codec() -> Codec:
    torch.manual_seed(0)
    codec = build_codec(BACKBONE)
    codec.prepare()
    return codec


@pytest.mark.parametrize(("h", "w"), [(64, 64), (67, 45), (1, 1), (130, 70)])
def test_round_trip_keeps_the_image_size(codec, h, w):
    x = torch.rand(1, 3, h, w)
    data = codec.compress(x)
    x_hat = codec.decompress(data)
    assert x_hat.shape == (1, 3, h, w)
    header = bitstream.read_header(data)
    assert (header.height, header.width, header.codec) == (h, w, "cheng2020_attn")
    assert codec.decompress(data).equal(x_hat)


def test_decoded_image_matches_the_eval_forward_pass(codec):
    x = torch.rand(1, 3, 64, 64)
    x_hat = codec.decompress(codec.compress(x))
    with torch.no_grad():
        forward = codec(x)["x_hat"].clamp(0, 1)
    # compress quantises around the predicted means, forward rounds y: close, not identical
    assert (x_hat - forward).abs().mean() < 0.05


def test_truncated_bitstream_raises(codec):
    data = codec.compress(torch.rand(1, 3, 64, 64))
    with pytest.raises(BitstreamError, match="truncated"):
        codec.decompress(data[: len(data) // 2])


def test_corrupted_bitstream_raises(codec):
    data = bytearray(codec.compress(torch.rand(1, 3, 64, 64)))
    data[-10] ^= 0xFF
    with pytest.raises(BitstreamError, match="checksum mismatch"):
        codec.decompress(bytes(data))


def test_foreign_bitstream_raises(codec):
    with pytest.raises(BitstreamError, match="wrong magic"):
        codec.decompress(b"\x89PNG\r\n\x1a\n" + bytes(64))


def test_other_weights_raise(codec):
    data = codec.compress(torch.rand(1, 3, 64, 64))
    torch.manual_seed(1)
    other = build_codec(BACKBONE)
    with pytest.raises(BitstreamError, match="other weights"):
        other.decompress(data)


def test_other_codec_and_version_raise(codec):
    header, sections = bitstream.unpack(codec.compress(torch.rand(1, 3, 64, 64)))
    renamed = bitstream.pack(bitstream.Header(**{**header.__dict__, "codec": "stf"}), sections)
    with pytest.raises(BitstreamError, match="made by codec 'stf'"):
        codec.decompress(renamed)
    data = bytearray(bitstream.pack(header, sections))
    data[4] = 9
    with pytest.raises(BitstreamError, match="format version 9"):
        codec.decompress(bytes(data))


def test_other_architecture_config_raises(codec):
    header, sections = bitstream.unpack(codec.compress(torch.rand(1, 3, 64, 64)))
    changed = bitstream.Header(**{**header.__dict__, "config_hash": b"\x00\x01\x02\x03"})
    with pytest.raises(BitstreamError, match="config"):
        codec.decompress(bitstream.pack(changed, sections))


def test_fixed_rate_codec_refuses_knobs(codec):
    with pytest.raises(KnobError, match="unknown knob"):
        codec.compress(torch.rand(1, 3, 64, 64), {"alpha": 0.5})


def test_exported_codec_decodes_bitstreams_of_the_original(codec, tmp_path):
    data = codec.compress(torch.rand(1, 3, 64, 96))
    path = export_codec(codec, tmp_path / "codec.pt")
    loaded = load_codec(path)
    assert loaded.fingerprint == codec.fingerprint
    assert torch.equal(loaded.decompress(data), codec.decompress(data))


def test_training_invalidates_the_fingerprint(codec):
    model = Codec(Cheng2020Attn(N=32), name="cheng2020_attn")
    first = model.fingerprint
    model.train()
    with torch.no_grad():
        model.backbone.g_a[0].conv1.weight.add_(1.0)
    assert model.fingerprint != first

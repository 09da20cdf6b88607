"""CALLIC: per-image increments fitted at encode time, coded before the image, decoded bit-exactly."""

from __future__ import annotations

import pytest
import torch

from ctrlic.codecs.backbones.cheng import Cheng2020Attn
from ctrlic.codecs.bitstream import unpack
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.control.base import KnobError
from ctrlic.codecs.control.instance_lora import InstanceLoRA, InstanceLoRAError, rpft_fraction
from tests.helpers_lossless import TINY_LORA, as_uint8, kodak_crop, tiny_callic, tiny_mgcf


def _state(codec: Codec) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in codec.backbone.state_dict().items()}


def test_adapted_bitstream_round_trips_and_weights_come_back():
    codec = tiny_callic()
    before = _state(codec)
    x = kodak_crop(24, 20)
    data = codec.compress(x, {"steps": 3})
    header, sections = unpack(data)
    assert header.extras["side"] == 1 and len(sections) == 2  # increments, then the image
    assert all(torch.equal(v, before[k]) for k, v in codec.backbone.state_dict().items())
    assert torch.equal(as_uint8(codec.decompress(data)), as_uint8(x))
    assert all(torch.equal(v, before[k]) for k, v in codec.backbone.state_dict().items())


def test_decoder_uses_the_encoders_increments():
    codec = tiny_callic()
    x = kodak_crop(16, 16)
    data = bytearray(codec.compress(x, {"steps": 3}))
    header, sections = unpack(bytes(data))
    side = codec.control
    side.decode_side(sections[:1], {"steps": 3})
    adapted = {n: p.clone() for n, p in codec.backbone.named_parameters()}
    side.release()
    changed = [n for n, p in codec.backbone.named_parameters() if not torch.equal(p, adapted[n])]
    assert changed and all(n.endswith("weight") for n in changed)


def test_steps_zero_codes_the_pretrained_model_without_side_information():
    codec = tiny_callic()
    x = kodak_crop(16, 16)
    plain = Codec(tiny_mgcf(), name="mgcf")
    header, sections = unpack(codec.compress(x, {"steps": 0}))
    assert "side" not in header.extras
    assert sections == unpack(plain.compress(x))[1]


def test_adaptation_lowers_the_rate_increments_included():
    codec = tiny_callic(lr=5e-2)
    x = kodak_crop(32, 32, name="kodim15.png")
    base = len(unpack(codec.compress(x, {"steps": 0}))[1][0])
    side, image = unpack(codec.compress(x, {"steps": 15}))[1]
    assert len(image) < 0.95 * base and len(side) + len(image) < base


def test_rpft_schedule_grows_from_b_to_all_patches():
    assert rpft_fraction(0, 50, 0.2, 0.1, 1.0) == pytest.approx(0.2)
    assert rpft_fraction(45, 50, 0.2, 0.1, 1.0) == pytest.approx(1.0)
    shares = [rpft_fraction(t, 50, 0.2, 0.1, 1.0) for t in range(50)]
    assert shares == sorted(shares)


def test_steps_knob_is_declared_with_rate_falling():
    knob = InstanceLoRA(**TINY_LORA).knobs[0]
    assert knob.name == "steps" and knob.discrete and not knob.rate_increases
    with pytest.raises(KnobError):
        tiny_callic().compress(kodak_crop(8, 8), {"steps": 2.5})


def test_bad_layer_choices_raise_one_line_errors():
    with pytest.raises(InstanceLoRAError, match="matches no layer"):
        Codec(tiny_mgcf(), InstanceLoRA(lora=[{"pattern": "nothing", "rank": 2}]), name="mgcf")
    with pytest.raises(InstanceLoRAError, match="not a depthwise"):
        Codec(tiny_mgcf(), InstanceLoRA(tucker=[{"pattern": r"blocks\.0\.mcg\.w_a", "ranks": [1, 1, 1]}]), name="mgcf")
    with pytest.raises(InstanceLoRAError, match="both empty"):
        InstanceLoRA()


def test_attaches_to_a_lossy_backbone_and_its_rate_counts_the_increments():
    torch.manual_seed(0)
    scheme = InstanceLoRA(lora=[{"pattern": r"g_s\.8\.conv1", "rank": 1}], sweep=[0, 1])
    codec = Codec(Cheng2020Attn(N=16), scheme, name="cheng2020_attn")
    x = kodak_crop(64, 64)
    plain, adapted = codec.compress(x, {"steps": 0}), codec.compress(x, {"steps": 1})
    header, sections = unpack(adapted)
    assert header.extras["side"] == 1 and len(sections[0]) > 0
    assert len(adapted) > sum(len(s) for s in sections) >= len(sections[0]) + len(unpack(plain)[1][0]) // 2
    assert codec.decompress(adapted).shape == x.shape

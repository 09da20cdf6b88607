"""Tests for the ctrlic bitstream container."""

import random
import struct
import zlib

import pytest
import torch

from ctrlic.codecs.bitstream import (
    FORMAT_VERSION,
    MAGIC,
    BitstreamError,
    Header,
    config_hash,
    header_size,
    pack,
    read_header,
    unpack,
    weights_fingerprint,
)

CONFIG_HASH = b"\x01\x02\x03\x04"
FINGERPRINT = bytes(range(0xA0, 0xA8))


def make_header(**overrides) -> Header:
    fields = dict(
        codec="cheng2020_attn",
        config_hash=CONFIG_HASH,
        fingerprint=FINGERPRINT,
        knobs={"alpha": 0.5},
        height=512,
        width=768,
    )
    fields.update(overrides)
    return Header(**fields)


def valid_stream() -> bytes:
    return pack(
        make_header(knobs={"alpha": 0.5, "beta": -2.0}, extras={"tiles": [2, 3]}),
        [b"y" * 300, b"", b"z" * 5],
    )


def with_crc(body: bytes) -> bytes:
    """Append a correct CRC, to reach checks that come after the checksum."""
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    ("header", "sections"),
    [
        (make_header(), [b"abc", b"defg"]),
        (make_header(knobs={}, extras={}), []),
        (make_header(knobs={}, channels=1), [b""]),
        (make_header(extras={"tiles": [2, 3], "note": "ünïcode"}), [b"", b"\x00" * 1000, b"x"]),
        (make_header(knobs={"alpha": 0.25, "beta": 1.0, "gamma": -3.5}), [bytes(range(256)) * 3]),
        (make_header(height=1, width=100_000, channels=255), [b"p" * 129]),
    ],
)
def test_round_trip_preserves_header_and_sections(header, sections):
    header_out, sections_out = unpack(pack(header, sections))
    assert header_out == header
    assert sections_out == sections


def test_round_trip_knob_values_are_rounded_to_float32():
    header, _ = unpack(pack(make_header(knobs={"alpha": 0.1}), []))
    assert header.knobs["alpha"] == struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert header.knobs["alpha"] == pytest.approx(0.1, rel=1e-7)


def test_round_trip_preserves_knob_order():
    knobs = {"zeta": 1.0, "alpha": 2.0, "mid": 3.0}
    header, _ = unpack(pack(make_header(knobs=knobs), []))
    assert list(header.knobs) == ["zeta", "alpha", "mid"]


def test_large_section_uses_multibyte_varint():
    small = pack(make_header(), [b"a" * 127])
    large = pack(make_header(), [b"a" * 128])
    assert len(large) - len(small) == 2  # one payload byte plus one extra varint byte
    assert unpack(large)[1] == [b"a" * 128]


def test_read_header_skips_expect_checks():
    header = read_header(pack(make_header(codec="other"), [b"x"]))
    assert header.codec == "other"


def test_header_size_of_typical_header_is_under_64_bytes():
    sections = [b"y" * 4000, b"z" * 900]
    data = pack(make_header(), sections)
    size = header_size(data)
    assert size == len(data) - 4900
    assert size < 64


def test_empty_extras_take_one_byte():
    without = pack(make_header(extras={}), [])
    with_extras = pack(make_header(extras={"a": 1}), [])
    assert len(with_extras) - len(without) == len('{"a":1}')


def test_empty_bitstream_raises():
    with pytest.raises(BitstreamError, match="empty bitstream"):
        unpack(b"")


def test_too_short_bitstream_raises():
    with pytest.raises(BitstreamError, match="too short"):
        unpack(b"CTL")


def test_wrong_magic_raises():
    data = b"JUNK" + valid_stream()[4:]
    with pytest.raises(BitstreamError, match="not a ctrlic bitstream \\(wrong magic"):
        unpack(data)


def test_unsupported_version_raises():
    data = bytearray(valid_stream())
    data[len(MAGIC)] = FORMAT_VERSION + 1
    with pytest.raises(BitstreamError, match=f"made by format version {FORMAT_VERSION + 1}.*upgrade ctrlic"):
        unpack(bytes(data))


def test_truncated_bitstream_raises():
    data = valid_stream()
    with pytest.raises(BitstreamError, match=r"truncated: expected 4 more bytes at offset \d+ \(CRC32\)"):
        unpack(data[:-4])
    with pytest.raises(BitstreamError, match=r"truncated: expected 300 more bytes at offset \d+"):
        unpack(data[:80])


@pytest.mark.parametrize("length", range(len(MAGIC) + 1))
def test_truncation_before_version_raises_too_short(length):
    with pytest.raises(BitstreamError, match="empty bitstream|too short"):
        unpack(valid_stream()[:length])


def test_every_truncation_point_raises_truncated():
    data = valid_stream()
    for length in range(len(MAGIC) + 1, len(data)):
        with pytest.raises(BitstreamError, match="truncated: expected"):
            unpack(data[:length])


def test_trailing_garbage_raises():
    with pytest.raises(BitstreamError, match="trailing garbage"):
        unpack(valid_stream() + b"\x00\x00")


def test_flipped_payload_byte_raises_checksum_mismatch():
    data = bytearray(valid_stream())
    data[-20] ^= 0x01  # inside the last section's payload
    with pytest.raises(BitstreamError, match="checksum mismatch: the file is corrupted"):
        unpack(bytes(data))


def test_flipped_crc_byte_raises_checksum_mismatch():
    data = bytearray(valid_stream())
    data[-1] ^= 0xFF
    with pytest.raises(BitstreamError, match="checksum mismatch"):
        unpack(bytes(data))


def test_overlong_varint_raises():
    data = MAGIC + bytes([FORMAT_VERSION]) + b"\xff" * 20
    with pytest.raises(BitstreamError, match="malformed varint"):
        unpack(data)


def test_invalid_utf8_codec_name_with_valid_crc_raises_malformed():
    body = pack(make_header(codec="ab"), [])[:-4]
    body = body.replace(b"\x02ab", b"\x02\xff\xfe", 1)
    with pytest.raises(BitstreamError, match="malformed header"):
        unpack(with_crc(body))


def test_invalid_extras_json_with_valid_crc_raises_malformed():
    body = pack(make_header(extras={"k": 1}), [])[:-4]
    body = body.replace(b'{"k":1}', b'{"k":1,', 1)
    with pytest.raises(BitstreamError, match="malformed header"):
        unpack(with_crc(body))


def test_other_codec_raises():
    data = pack(make_header(codec="mbt2018"), [])
    with pytest.raises(BitstreamError, match="made by codec 'mbt2018', but this model is 'cheng2020_attn'"):
        unpack(data, expect_codec="cheng2020_attn")


def test_other_config_hash_raises():
    data = pack(make_header(), [])
    with pytest.raises(BitstreamError, match="another architecture config.*01020304 vs 05060708"):
        unpack(data, expect_config_hash=b"\x05\x06\x07\x08")


def test_other_weights_fingerprint_raises():
    data = pack(make_header(), [])
    other = bytes(8)
    with pytest.raises(
        BitstreamError,
        match=f"made with other weights \\(fingerprint {FINGERPRINT.hex()} vs {other.hex()}\\): "
        "decode it with the model that wrote it",
    ):
        unpack(data, expect_fingerprint=other)


def test_matching_expectations_pass():
    data = pack(make_header(), [b"s"])
    header, sections = unpack(
        data, expect_codec="cheng2020_attn", expect_config_hash=CONFIG_HASH, expect_fingerprint=FINGERPRINT
    )
    assert header == make_header()
    assert sections == [b"s"]


def test_structural_errors_are_reported_before_expect_checks():
    data = pack(make_header(codec="mbt2018"), [b"payload"])
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(data[:-1], expect_codec="cheng2020_attn")


def test_random_bytes_only_raise_bitstream_error():
    rng = random.Random(1234)
    for _ in range(300):
        data = rng.randbytes(rng.randrange(0, 200))
        with pytest.raises(BitstreamError):
            unpack(data)


def test_random_bytes_after_valid_prefix_only_raise_bitstream_error():
    rng = random.Random(5678)
    prefix = MAGIC + bytes([FORMAT_VERSION])
    for _ in range(300):
        data = prefix + rng.randbytes(rng.randrange(0, 200))
        with pytest.raises(BitstreamError):
            unpack(data)


def test_random_corruptions_of_valid_stream_only_raise_bitstream_error():
    rng = random.Random(91011)
    data = valid_stream()
    for _ in range(300):
        corrupted = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            corrupted[rng.randrange(len(MAGIC) + 1, len(corrupted))] = rng.randrange(256)
        if bytes(corrupted) == data:
            continue
        with pytest.raises(BitstreamError):
            unpack(bytes(corrupted))


@pytest.mark.parametrize(
    "overrides",
    [
        {"height": 0},
        {"width": -1},
        {"fingerprint": b"\x00" * 7},
        {"config_hash": b"\x00" * 5},
        {"channels": 0},
        {"channels": 256},
        {"codec": ""},
        {"knobs": {"alpha": 1e40}},
        {"extras": {"bad": object()}},
    ],
)
def test_pack_rejects_invalid_header(overrides):
    with pytest.raises(ValueError):
        pack(make_header(**overrides), [])


def test_config_hash_is_key_order_independent():
    a = {"N": 128, "M": 192, "sub": {"x": 1, "y": [1, 2]}}
    b = {"sub": {"y": [1, 2], "x": 1}, "M": 192, "N": 128}
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 4


def test_config_hash_changes_when_a_value_changes():
    assert config_hash({"N": 128, "M": 192}) != config_hash({"N": 128, "M": 320})


def make_state_dict() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=gen),
        "conv.bias": torch.randn(4, generator=gen).to(torch.bfloat16),
        "counter": torch.arange(5, dtype=torch.int64),
    }


def test_weights_fingerprint_is_stable_across_calls():
    assert weights_fingerprint(make_state_dict()) == weights_fingerprint(make_state_dict())
    assert len(weights_fingerprint(make_state_dict())) == 8


@pytest.mark.parametrize("key", ["conv.weight", "conv.bias", "counter"])
def test_weights_fingerprint_changes_when_one_weight_changes(key):
    base = weights_fingerprint(make_state_dict())
    state = make_state_dict()
    state[key] = state[key].clone()
    state[key].view(-1)[0] += 1
    assert weights_fingerprint(state) != base


def test_weights_fingerprint_depends_on_dtype_and_shape():
    base = weights_fingerprint({"w": torch.zeros(4, dtype=torch.int32)})
    assert weights_fingerprint({"w": torch.zeros(4, dtype=torch.float32)}) != base
    assert weights_fingerprint({"w": torch.zeros(2, 2, dtype=torch.int32)}) != base


def test_weights_fingerprint_handles_grad_and_non_contiguous_tensors():
    weight = torch.randn(3, 5, requires_grad=True)
    assert weights_fingerprint({"w": weight.t()}) == weights_fingerprint({"w": weight.detach().t().clone()})

"""Compact binary container that every ctrlic codec writes and reads.

The container size counts in the reported bits-per-pixel, so the fixed fields use a binary layout with
unsigned LEB128 varints instead of JSON. Layout (all multi-byte integers little-endian)::

    MAGIC | version u8 | codec name (varint length + utf-8) | config_hash 4B | fingerprint 8B
    | knob count varint, per knob: name (varint length + utf-8) + float32
    | height varint | width varint | channels u8
    | extras (varint length + compact JSON utf-8; length 0 when empty)
    | section count varint, per section: varint length + bytes
    | CRC32 u32 (zlib.crc32 of everything before it)

Knob values are stored as float32, so they round-trip as the nearest float32, not the exact Python float.
Extras round-trip through JSON, so tuples come back as lists.
"""

import hashlib
import json
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ctrlic.errors import UserError

MAGIC: bytes = b"CTLC"
FORMAT_VERSION: int = 1

_CONFIG_HASH_LEN = 4
_FINGERPRINT_LEN = 8
_CRC_LEN = 4
_MAX_VARINT_BYTES = 10
_MIN_KNOB_BYTES = 1 + 4  # empty-name length varint + float32
_FLOAT32 = struct.Struct("<f")
_CRC32 = struct.Struct("<I")


class BitstreamError(UserError):
    """Raised for any bitstream that cannot be decoded; the message says why and what to do."""


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the payload sections."""

    codec: str
    config_hash: bytes
    fingerprint: bytes
    knobs: dict[str, float]
    height: int
    width: int
    channels: int = 3
    extras: dict[str, Any] = field(default_factory=dict)


def _validate(header: Header) -> None:
    """Raise ValueError if ``header`` cannot be written (or was not written) by :func:`pack`."""
    if not isinstance(header.codec, str) or not header.codec:
        raise ValueError(f"codec must be a non-empty str, got {header.codec!r}")
    if not isinstance(header.config_hash, bytes) or len(header.config_hash) != _CONFIG_HASH_LEN:
        raise ValueError(f"config_hash must be {_CONFIG_HASH_LEN} bytes, got {header.config_hash!r}")
    if not isinstance(header.fingerprint, bytes) or len(header.fingerprint) != _FINGERPRINT_LEN:
        raise ValueError(f"fingerprint must be {_FINGERPRINT_LEN} bytes, got {header.fingerprint!r}")
    for name, size in (("height", header.height), ("width", header.width)):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"{name} must be an int >= 1, got {size!r}")
    if not isinstance(header.channels, int) or not 1 <= header.channels <= 255:
        raise ValueError(f"channels must be an int in 1..255, got {header.channels!r}")
    if not all(isinstance(k, str) for k in header.knobs):
        raise ValueError(f"knob names must be str, got {list(header.knobs)!r}")
    if not isinstance(header.extras, dict) or not all(isinstance(k, str) for k in header.extras):
        raise ValueError(f"extras must be a dict with str keys, got {header.extras!r}")


def _varint(value: int) -> bytes:
    """Encode a non-negative int as unsigned LEB128."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _blob(raw: bytes) -> bytes:
    """Length-prefix ``raw`` with a varint."""
    return _varint(len(raw)) + raw


def pack(header: Header, sections: Sequence[bytes]) -> bytes:
    """Serialise ``header`` and payload ``sections`` into one checksummed bitstream."""
    _validate(header)
    out = bytearray(MAGIC)
    out.append(FORMAT_VERSION)
    out += _blob(header.codec.encode("utf-8"))
    out += header.config_hash + header.fingerprint
    out += _varint(len(header.knobs))
    for name, value in header.knobs.items():
        try:
            packed = _FLOAT32.pack(float(value))
        except (OverflowError, TypeError) as exc:
            raise ValueError(f"knob {name!r}={value!r} is not representable as float32: {exc}") from exc
        out += _blob(name.encode("utf-8")) + packed
    out += _varint(header.height) + _varint(header.width)
    out.append(header.channels)
    if header.extras:
        try:
            extras = json.dumps(header.extras, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"extras must be JSON-serialisable: {exc}") from exc
        out += _blob(extras.encode("utf-8"))
    else:
        out += _varint(0)
    out += _varint(len(sections))
    for i, section in enumerate(sections):
        if not isinstance(section, bytes | bytearray | memoryview):
            raise TypeError(f"section {i} must be bytes-like, got {type(section).__name__}")
        out += _blob(bytes(section))
    out += _CRC32.pack(zlib.crc32(out))
    return bytes(out)


class _Reader:
    """Bounds-checked cursor over the raw bytes; every overrun raises a 'truncated' BitstreamError."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def need(self, n: int, what: str) -> None:
        """Raise unless at least ``n`` bytes are left for ``what``."""
        if n > self.remaining:
            raise BitstreamError(
                f"truncated: expected {n} more bytes at offset {self.pos} ({what}), but only "
                f"{self.remaining} remain; the file was cut short, write or copy it again"
            )

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def varint(self, what: str) -> int:
        """Read an unsigned LEB128 varint of at most ``_MAX_VARINT_BYTES`` bytes."""
        start = self.pos
        value = 0
        for shift in range(0, 7 * _MAX_VARINT_BYTES, 7):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise BitstreamError(
            f"malformed varint for {what} at offset {start} (longer than {_MAX_VARINT_BYTES} bytes); "
            "the file is corrupted"
        )

    def blob(self, what: str) -> bytes:
        return self.take(self.varint(f"{what} length"), what)


@dataclass
class _Raw:
    """Undecoded fields, split out of the container by structure alone."""

    codec: bytes
    config_hash: bytes
    fingerprint: bytes
    knobs: list[tuple[bytes, bytes]]
    height: int
    width: int
    channels: int
    extras: bytes
    sections: list[bytes]


def _split(data: bytes) -> _Raw:
    """Check magic, version, structure, trailing bytes and CRC (in that order) and split the fields."""
    if not data:
        raise BitstreamError("empty bitstream (0 bytes); pass the contents of a file written by ctrlic")
    prefix_len = len(MAGIC) + 1
    if len(data) < prefix_len:
        raise BitstreamError(
            f"too short to be a ctrlic bitstream ({len(data)} bytes, need at least {prefix_len}); "
            "pass the contents of a file written by ctrlic"
        )
    if data[: len(MAGIC)] != MAGIC:
        raise BitstreamError(
            f"not a ctrlic bitstream (wrong magic {data[: len(MAGIC)]!r}, expected {MAGIC!r}); "
            "pass a file written by ctrlic"
        )
    version = data[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise BitstreamError(
            f"made by format version {version}, this ctrlic reads version {FORMAT_VERSION}; upgrade ctrlic"
        )
    r = _Reader(data, prefix_len)
    codec = r.blob("codec name")
    config_hash = r.take(_CONFIG_HASH_LEN, "config hash")
    fingerprint = r.take(_FINGERPRINT_LEN, "weights fingerprint")
    n_knobs = r.varint("knob count")
    r.need(n_knobs * _MIN_KNOB_BYTES, f"{n_knobs} knobs")
    knobs = [(r.blob("knob name"), r.take(_FLOAT32.size, "knob value")) for _ in range(n_knobs)]
    height = r.varint("height")
    width = r.varint("width")
    channels = r.take(1, "channels")[0]
    extras = r.blob("extras")
    n_sections = r.varint("section count")
    r.need(n_sections, f"{n_sections} section lengths")
    sections = [r.blob(f"section {i}") for i in range(n_sections)]
    crc_offset = r.pos
    (stored_crc,) = _CRC32.unpack(r.take(_CRC_LEN, "CRC32"))
    if r.remaining:
        raise BitstreamError(
            f"{r.remaining} bytes of trailing garbage after the checksum at offset {r.pos}; "
            "the file was padded or concatenated, strip the extra bytes"
        )
    if zlib.crc32(data[:crc_offset]) != stored_crc:
        raise BitstreamError("checksum mismatch: the file is corrupted; write or copy it again")
    return _Raw(codec, config_hash, fingerprint, knobs, height, width, channels, extras, sections)


def _decode_header(raw: _Raw) -> Header:
    """Decode the checksummed raw fields into a Header; content errors mean the writer was not pack()."""
    try:
        knobs: dict[str, float] = {}
        for name_raw, value_raw in raw.knobs:
            name = name_raw.decode("utf-8")
            if name in knobs:
                raise ValueError(f"duplicate knob {name!r}")
            knobs[name] = _FLOAT32.unpack(value_raw)[0]
        extras = json.loads(raw.extras.decode("utf-8")) if raw.extras else {}
        header = Header(
            codec=raw.codec.decode("utf-8"),
            config_hash=raw.config_hash,
            fingerprint=raw.fingerprint,
            knobs=knobs,
            height=raw.height,
            width=raw.width,
            channels=raw.channels,
            extras=extras,
        )
        _validate(header)
    except (ValueError, RecursionError) as exc:
        raise BitstreamError(
            f"malformed header ({exc}); the file was not written by ctrlic's pack(), re-encode the image"
        ) from exc
    return header


def read_header(data: bytes) -> Header:
    """Parse and CRC-check ``data`` and return its header, without checking which model it needs."""
    return parse(data)[0]


def header_size(data: bytes) -> int:
    """Bytes of ``data`` that are container overhead (everything except the payload section bytes)."""
    raw = _split(bytes(data))
    _decode_header(raw)
    return len(data) - sum(len(s) for s in raw.sections)


def parse(data: bytes) -> tuple[Header, list[bytes]]:
    """Parse and CRC-check ``data`` once: its header and payload sections, whoever wrote it."""
    raw = _split(bytes(data))
    return _decode_header(raw), raw.sections


def check_origin(
    header: Header,
    *,
    expect_codec: str | None = None,
    expect_config_hash: bytes | None = None,
    expect_fingerprint: bytes | None = None,
) -> None:
    """Raise unless ``header`` was written by this codec, architecture config and weights."""
    if expect_codec is not None and header.codec != expect_codec:
        raise BitstreamError(
            f"made by codec {header.codec!r}, but this model is {expect_codec!r}; "
            f"decode it with a {header.codec!r} model"
        )
    if expect_config_hash is not None and header.config_hash != expect_config_hash:
        raise BitstreamError(
            f"made with another architecture config (config hash {header.config_hash.hex()} vs "
            f"{expect_config_hash.hex()}): decode it with the model config that wrote it"
        )
    if expect_fingerprint is not None and header.fingerprint != expect_fingerprint:
        raise BitstreamError(
            f"made with other weights (fingerprint {header.fingerprint.hex()} vs "
            f"{expect_fingerprint.hex()}): decode it with the model that wrote it"
        )


def unpack(data: bytes, **expect: object) -> tuple[Header, list[bytes]]:
    """``parse`` and ``check_origin`` (``expect_codec``, ``expect_config_hash``, ``expect_fingerprint``)."""
    header, sections = parse(data)
    check_origin(header, **expect)
    return header, sections


def _json_default(obj: object) -> object:
    """Let json.dumps handle non-dict mappings and non-list sequences (e.g. OmegaConf containers)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return list(obj)
    raise TypeError(f"config value of type {type(obj).__name__} is not JSON-serialisable")


def config_hash(config: Mapping) -> bytes:
    """4-byte hash of an architecture config, independent of key order."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(canonical.encode("utf-8")).digest()[:_CONFIG_HASH_LEN]


def weights_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """8-byte hash of a state dict's names, dtypes, shapes and raw bytes, to tell weights apart."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        meta = f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode()
        h.update(_varint(len(meta)) + meta)
        # Viewing the flat tensor as bytes also covers dtypes numpy lacks (bfloat16, float8).
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return h.digest()[:_FINGERPRINT_LEN]

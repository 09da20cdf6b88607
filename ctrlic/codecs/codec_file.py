"""The exported codec file: safetensors weights (CDF tables included) and a JSON header, no pickle.

The header lives in the safetensors metadata: ``format`` (``ctrlic-codec/2``), ``arch`` (the
architecture as JSON: backbone and control-scheme constructors) and ``fingerprint`` (the weights
fingerprint, hex). Reading one never runs code; what the architecture names is checked separately
(``codecs.recorded``) before anything is built.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor

from ctrlic.errors import UserError
from ctrlic.utils.atomic_file import atomic_write

CODEC_FORMAT = "ctrlic-codec/2"
#: the name ``task=export`` and ``task=assemble`` give a codec file by default
CODEC_SUFFIX = ".codec.safetensors"
#: safetensors files start with the 8-byte little-endian length of their JSON header, then ``{``
_HEADER_LEN = struct.Struct("<Q")


class CodecFileError(UserError):
    """A safetensors file whose ctrlic header is missing or malformed; the message says what."""


def is_safetensors(path: str | Path) -> bool:
    """True when ``path`` starts like a safetensors file (a header length that fits, then a JSON object)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_LEN.size + 1)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(head) < _HEADER_LEN.size + 1:
        return False
    (length,) = _HEADER_LEN.unpack(head[: _HEADER_LEN.size])
    return 2 <= length <= size - _HEADER_LEN.size and head[-1:] == b"{"


def write_codec_file(path: str | Path, arch: Mapping, state: Mapping[str, Tensor], fingerprint: str) -> Path:
    """Write weights and header atomically (``utils.atomic_file``: a temporary file, then renamed)."""
    from safetensors.torch import save_file

    metadata = {"format": CODEC_FORMAT, "arch": json.dumps(arch, sort_keys=True), "fingerprint": fingerprint}
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}  # no shared storage
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def read_safetensors(path: str | Path) -> dict:
    """A safetensors file as ``{"format", "arch", "fingerprint", "state_dict"}`` when it carries a ctrlic
    header, else as its plain tensor mapping (weights from elsewhere)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open is no Mapping
    except (SafetensorError, OSError, ValueError) as err:
        raise CodecFileError(f"'{path}' is not a readable safetensors file ({err})") from None
    if "format" not in metadata:
        return tensors
    try:
        arch = json.loads(metadata.get("arch", ""))
    except ValueError:
        raise CodecFileError(f"'{path}': the codec header's architecture is not valid JSON; the file is "
                             "corrupted or was not written by ctrlic") from None
    return {"format": metadata["format"], "arch": arch, "fingerprint": metadata.get("fingerprint"),
            "state_dict": tensors}


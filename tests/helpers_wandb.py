"""Read the records of an offline W&B run file (``run-<id>.wandb``), to check what a run logged.

The file is W&B's LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks, each with a
7-byte header (CRC32, length, type: full / first / middle / last) around protobuf ``Record``s.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # the rest of a block too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def history(path: Path) -> dict[str, list]:
    """Every logged key with its values, in order (tables and images are JSON references)."""
    logged: dict[str, list] = {}
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                logged.setdefault(key, []).append(json.loads(item.value_json))
    return logged


def run_info(path: Path) -> pb.RunRecord:
    return next(r.run for r in records(path) if r.WhichOneof("record_type") == "run")


def config_keys(path: Path) -> set[str]:
    keys = set()
    for record in records(path):
        if record.WhichOneof("record_type") == "config":
            keys.update(item.key or "/".join(item.nested_key) for item in record.config.update)
    return keys


def history_rows(path: Path) -> list[dict]:
    """Each logged history row as one dict (key: value), in order."""
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for record in records(path) if record.WhichOneof("record_type") == "history"]

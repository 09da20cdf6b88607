"""Per-image evaluation records: one JSON file per (set, image, knob setting), written as soon as it is measured.

Every evaluation goes through them: workers and shards write records, a merge builds each set's results
from the records alone, and a rerun skips what exists — so a killed evaluation continues where it stopped,
and a sharded one equals an unsharded one. A record is only reused when it was made by the same codec
(name, config, weights), at the same knob values, with the same measurements, of the same image content.

Layout: ``<records>/<set>/<image index>/image.json`` (what does not depend on the knobs) and
``p<point>.json`` (one knob setting), plus ``features_*.pt`` (Inception patch features for FID/KID).
Files are written to a temporary name and renamed, so a killed writer leaves no half record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ctrlic.codecs.codec import Codec
from ctrlic.evaluation.files import unpack_item

#: the records folder inside an evaluation's output folder (unless ``eval.records`` names another)
RECORDS = "records"
#: record format; bump when the meaning of a field changes so old records are recomputed
VERSION = 1


def digest(obj: Any) -> str:
    """A short stable hash of JSON-able data."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def image_digest(x: Tensor) -> str:
    """Hash of an image's values and shape: a changed crop or file makes its records stale."""
    h = hashlib.sha256(str(tuple(x.shape)).encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def codec_key(codec: Codec, kind: str, measured: Mapping[str, Any], knobs: Mapping[str, float]) -> str:
    """What a record at ``knobs`` depends on besides the image: the codec, its weights, its coding options
    (tiles, entropy path, scale table) and the measurements."""
    return digest({"version": VERSION, "kind": kind, "codec": codec.name, "config": codec.config_hash.hex(),
                   "weights": codec.fingerprint.hex(), "options": codec.options.plain(),
                   "knobs": dict(knobs), "measured": dict(measured)})


def _folder_name(set_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", set_name) or "set"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class RecordStore:
    """The records of one evaluation under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def image_dir(self, set_name: str, index: int) -> Path:
        return self.root / _folder_name(set_name) / f"{index:06d}"

    def point_path(self, set_name: str, index: int, point: int) -> Path:
        return self.image_dir(set_name, index) / f"p{point:03d}.json"

    def image_path(self, set_name: str, index: int) -> Path:
        return self.image_dir(set_name, index) / "image.json"

    def features_path(self, set_name: str, index: int, point: int | None) -> Path:
        """Inception patch features of the decoded image at ``point`` (None: of the original)."""
        return self.image_dir(set_name, index) / ("features_real.pt" if point is None else f"features_p{point:03d}.pt")

    @staticmethod
    def read(path: Path) -> dict | None:
        """A record, or None when it is missing or unreadable (a record being replaced counts as missing)."""
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def write(path: Path, record: Mapping[str, Any]) -> None:
        atomic_write_bytes(path, json.dumps(record, indent=1, sort_keys=True).encode())

    @staticmethod
    def write_tensor(path: Path, tensor: Tensor) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(tensor.detach().cpu().contiguous(), tmp)
        os.replace(tmp, path)

    @staticmethod
    def read_tensor(path: Path) -> Tensor | None:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError):
            return None

    @contextlib.contextmanager
    def merge_lock(self) -> Iterator[None]:
        """Inside the block no other job merges these records (shards that finish together wait in turn);
        the lock goes with the process, so a killed merger leaves none behind."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".merge.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def merged(self, state: str) -> bool:
        """Whether the records of ``state`` (``SetJob.state`` of every set) were merged already."""
        return (self.root / ".merged").is_file() and (self.root / ".merged").read_text() == state

    def mark_merged(self, state: str) -> None:
        atomic_write_bytes(self.root / ".merged", state.encode())

    def count(self) -> int:
        """How many point records exist (for progress)."""
        return sum(1 for _ in self.root.glob("*/*/p*.json")) if self.root.is_dir() else 0


@dataclass
class SetJob:
    """What coding the images of one set needs besides the codec and the image itself."""

    set_name: str
    points: list[dict]  # knob settings, in sweep order
    keys: list[str]  # ``codec_key`` of each knob setting
    store: RecordStore
    out_dir: Path  # bitstreams go under it (``files.bitstream_file``)
    keep_bitstreams: bool

    def missing(self, data, check_content: bool = True) -> int:
        """How many images of ``data`` (the set's items) lack a current record at some knob setting: none, one
        made by another codec or settings, or (``check_content``: each image read again) one made of other
        image content (0: ready to merge)."""
        missing = 0
        for index in range(len(data)):
            records = [self.store.read(self.store.point_path(self.set_name, index, i)) for i in range(len(self.points))]
            if any(r is None or r.get("key") != key for r, key in zip(records, self.keys, strict=True)):
                missing += 1
            elif check_content:
                digest = image_digest(unpack_item(data[index])[0])
                missing += any(r.get("digest") != digest for r in records)
        return missing

"""The files an evaluation writes: one naming rule per set, the CSV writer, and coding through a file."""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from ctrlic.codecs.codec import Codec


def set_file(out_dir: Path, stem: str, suffix: str, index: int, set_name: str) -> Path:
    """``<stem><suffix>`` for the first evaluation set, ``<stem>_<set><suffix>`` for the others."""
    return Path(out_dir) / (f"{stem}{suffix}" if index == 0 else f"{stem}_{set_name}{suffix}")


def bitstream_file(out_dir: Path, set_name: str, point: int, image: str) -> Path:
    """Where the bitstream of one image at one knob setting goes."""
    return Path(out_dir) / "bitstreams" / set_name / f"point{point:02d}" / f"{Path(image).stem}.ctl"


def unpack_item(item: Mapping) -> tuple[torch.Tensor, str]:
    """(image (1, 3, H, W), name) of an evaluation item, from a Dataset or a batch-1 DataLoader."""
    x, name = item["x"], item["name"]
    return (x if x.dim() == 4 else x[None]), (name[0] if isinstance(name, list | tuple) else name)


def code_through_file(codec: Codec, x: torch.Tensor, knobs: Mapping, path: Path,
                      keep: bool) -> tuple[bytes, torch.Tensor, float, float]:
    """Compress to a file and decode that file back: (bitstream, decoded image, encode s, decode s)."""
    start = time.perf_counter()
    data = codec.compress(x, knobs)
    enc = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    start = time.perf_counter()
    x_hat = codec.decompress(path.read_bytes())
    dec = time.perf_counter() - start
    if not keep:
        path.unlink()
    return data, x_hat, enc, dec


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as CSV, columns in first-seen order (rows may differ in their keys)."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

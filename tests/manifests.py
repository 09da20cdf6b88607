"""Read the official state-dict manifests in ../shared/reference/state_dicts (or the bundled copy)."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.conftest import ROOT

MANIFEST_DIRS = (ROOT / "tests" / "manifests",)  # copies of ../shared/reference/state_dicts
DTYPES = {"float32": torch.float32, "int64": torch.int64, "int32": torch.int32, "float64": torch.float64}


def manifest_path(name: str) -> Path:
    for folder in MANIFEST_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"manifest {name} not found in {', '.join(map(str, MANIFEST_DIRS))}")


def read_manifest(name: str) -> list[tuple]:
    """Rows of a manifest: (key, shape, dtype) or, for CALICE files, (section, key, shape, dtype[, original])."""
    rows = []
    for line in manifest_path(name).read_text().splitlines():
        if line and not line.startswith("#"):
            fields = line.split("\t")
            rows.append(tuple(fields))
    return rows


def parse_shape(text: str) -> tuple[int, ...]:
    text = text.strip("[]")
    return tuple(int(v) for v in text.split(",")) if text else ()


def manifest_shapes(name: str) -> dict[str, tuple[int, ...]]:
    return {row[0]: parse_shape(row[1]) for row in read_manifest(name)}


def manifest_total_params(name: str) -> int:
    for line in manifest_path(name).read_text().splitlines():
        if "total parameters" in line:
            return int(line.rsplit(":", 1)[1].strip().replace(",", "").split()[0])
    raise ValueError(f"no parameter total in {name}")


def synthetic_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the manifest's keys, shapes and dtypes (a stand-in for the real checkpoint)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape, dtype, *_ in read_manifest(name):
        dims = parse_shape(shape)
        dt = DTYPES.get(dtype, torch.float32)
        out[key] = (torch.rand(dims, generator=gen) if dt.is_floating_point
                    else torch.randint(0, 5, dims, generator=gen).to(dt))
    return out

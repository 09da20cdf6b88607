"""Copy and convert the reference RD curves of /work/shared/reference into ctrlic/reference_curves/.

CompressAI's files are copied byte for byte. Files from other repositories (STF, TinyLIC, CALICE, LIC_TCM)
use other layouts, so they are converted to CompressAI's results format, one JSON per curve, named
``<Repo>__<curve>.json`` with ``meta.source`` naming the original file. Re-running replaces every JSON in
the destination dataset folders except the classical curves measured here (``imagecodecs__*.json``, made
by ``benchmarks/classical_floor.py``). Usage: ``python benchmarks/import_reference_curves.py [--source DIR]``.
"""

import argparse
import csv
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from ctrlic.evaluation.references import DATASETS, REFERENCE_ROOT
from ctrlic.evaluation.results import make_results, write_results

DEFAULT_SOURCE = Path("/work/shared/reference")
#: curves measured by benchmarks/classical_floor.py, not imported: a re-import keeps them
MEASURED_PREFIX = "imagecodecs__"
# Per-repo key renames to CompressAI names. STF's "ms-ssim" arrays are in dB, so they map to the dB key.
_CALICE_KEYS = {"psnr": "psnr-rgb", "mssim": "ms-ssim-rgb", "lpips": "lpips"}
_TINYLIC_KEYS = {"psnr": "psnr-rgb", "ms-ssim": "ms-ssim-rgb", "bpp": "bpp"}
_STF_NAMES = {"stf": "STF", "cnn": "STF CNN baseline (WACNN)"}
_REPOS = {
    "STF": "Googolxx/STF",
    "TinyLIC": "lumingzzz/TinyLIC",
    "CALICE": "EIDOSLAB/CALICE",
    "LIC_TCM": "jmliu206/LIC_TCM",
}

Curve = tuple[str, dict]  # (output file stem, CompressAI-format dict)


def _slug(text: str) -> str:
    """File-name-safe version of a curve label: runs of other characters become one underscore."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


def _points(columns: dict[str, list[float]]) -> list[dict[str, float]]:
    """Turn column lists (metric -> values) into the per-point dicts make_results expects."""
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _meta(source: Path, repo_prefix: str, dataset: str, **extra: object) -> dict:
    """Provenance for a converted curve: original file, repository and dataset."""
    return {"source": source.name, "repo": _REPOS[repo_prefix], "dataset": dataset, **extra}


def _convert_stf(path: Path, dataset: str) -> Iterator[Curve]:
    """STF files are flat {metric: [...], "bpp": [...]}; every non-bpp array of an ms-ssim file is MS-SSIM dB."""
    data = json.loads(path.read_text())
    model, objective, _ = path.stem.split("__", 1)[1].split("_")
    key = "ms-ssim-db-rgb" if objective == "ms-ssim" else "psnr-rgb"
    columns = {("bpp" if k == "bpp" else key): v for k, v in data.items()}
    note = "; MS-SSIM in dB, -10*log10(1-MS-SSIM)" if objective == "ms-ssim" else ""
    yield (
        path.stem,
        make_results(
            f"{_STF_NAMES[model]} ({objective})",
            f"Published results of Googolxx/STF (Zou et al., CVPR 2022){note}",
            _points(columns),
            _meta(path, "STF", dataset, opt_metric=objective),
        ),
    )


def _convert_tinylic(path: Path, dataset: str) -> Iterator[Curve]:
    """TinyLIC files are CompressAI-like but use the legacy "psnr"/"ms-ssim" keys and one name for both."""
    data = json.loads(path.read_text())
    objective = path.stem.split("__", 1)[1].rsplit("_", 1)[0]
    columns = {_TINYLIC_KEYS[k]: v for k, v in data["results"].items()}
    yield (
        path.stem,
        make_results(
            f"TinyLIC ({objective})",
            "Published results of lumingzzz/TinyLIC (Lu & Ma, arXiv 2204.11448); not TIC",
            _points(columns),
            _meta(path, "TinyLIC", dataset, opt_metric=objective),
        ),
    )


def _convert_calice(path: Path, dataset: str) -> Iterator[Curve]:
    """CALICE files map label -> {metric: [...]}; the RDP file nests one more level (model -> beta)."""
    data = json.loads(path.read_text())
    flat: dict[str, dict] = {}
    for label, value in data.items():
        if "bpp" in value:
            flat[label] = value
        else:
            flat.update({f"{label} {inner}": curve for inner, curve in value.items()})
    for label, curve in flat.items():
        columns = {_CALICE_KEYS.get(k, k): v for k, v in curve.items()}
        yield (
            f"CALICE__{_slug(label)}",
            make_results(
                label,
                "Published results of EIDOSLAB/CALICE (Spadaro et al.), variable-rate adapters",
                _points(columns),
                _meta(path, "CALICE", dataset),
            ),
        )


def _convert_tcm_csv(path: Path, dataset: str) -> Iterator[Curve]:
    """LIC_TCM CSVs (transcribed from RD_data.md) hold one row per point of TCM-Large/Middle/Small."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for model in dict.fromkeys(row["model"] for row in rows):
        model_rows = sorted((r for r in rows if r["model"] == model), key=lambda r: int(r["point"]))
        points = [{"bpp": float(r["bpp"]), "psnr-rgb": float(r["psnr_rgb_db"])} for r in model_rows]
        yield (
            f"LIC_TCM__{model}",
            make_results(
                model,
                "Published results of jmliu206/LIC_TCM (Liu et al., CVPR 2023), MSE-optimised",
                points,
                _meta(path, "LIC_TCM", dataset, N=int(model_rows[0]["N"]), opt_metric="mse"),
            ),
        )


_CONVERTERS = {
    "STF": _convert_stf,
    "TinyLIC": _convert_tinylic,
    "CALICE": _convert_calice,
    "LIC_TCM": _convert_tcm_csv,
}


def import_dataset(source: Path, dest: Path) -> list[str]:
    """Copy/convert one dataset folder (top level only); return the names of the files written."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.json"):
        if not old.name.startswith(MEASURED_PREFIX):
            old.unlink()
    written = []
    for path in sorted(source.iterdir()):
        if not path.is_file() or path.suffix not in (".json", ".csv"):
            continue
        prefix = path.name.split("__", 1)[0] if "__" in path.name else None
        if prefix is None:
            if path.suffix == ".json":  # CompressAI file: keep byte for byte
                shutil.copyfile(path, dest / path.name)
                written.append(path.name)
        elif prefix in _CONVERTERS:
            for stem, curve in _CONVERTERS[prefix](path, source.name):
                write_results(dest / f"{stem}.json", curve)
                written.append(f"{stem}.json")
        else:
            print(f"  skipped {path.name} (not an RD curve this script converts)")
    return written


def main() -> None:
    """Import every dataset and report how many files and bytes were written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--dest", type=Path, default=REFERENCE_ROOT)
    args = parser.parse_args()
    for dataset in DATASETS:
        print(f"{dataset}:")
        written = import_dataset(args.source / dataset, args.dest / dataset)
        print(f"  wrote {len(written)} files")
    total = sum(p.stat().st_size for p in args.dest.rglob("*.json"))
    print(f"total JSON size: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

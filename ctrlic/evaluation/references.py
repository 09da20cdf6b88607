"""Published reference RD curves shipped with ctrlic (CompressAI-format JSON under ``reference_curves/``).

Where the files come from is described in ``ctrlic/reference_curves/README.md``; they are (re)built by
``benchmarks/import_reference_curves.py``.
"""

import math
import re
from pathlib import Path

from ctrlic.evaluation.results import load_results

REFERENCE_ROOT: Path = Path(__file__).resolve().parent.parent / "reference_curves"
DATASETS: tuple[str, ...] = (
    "kodak",
    "clic2020-professional",
    "clic2020-mobile",
    "clic-professional-valid",
    "tecnick",
)

# Classical (non-learned) codecs, matched as whole tokens so e.g. "bmshj2018" does not match "hm".
_CLASSICAL = re.compile(r"(?<![a-z0-9])(jpeg2000|jpeg|webp|bpg|vtm|hm|av1)(?![a-z0-9])", re.IGNORECASE)
_MSSSIM, _MSSSIM_DB = "ms-ssim-rgb", "ms-ssim-db-rgb"


def curve_kind(name: str) -> str:
    """'classical' when the curve name is a hand-designed codec (JPEG, JPEG2000, WebP, BPG, VTM, HM, AV1)."""
    return "classical" if _CLASSICAL.search(name) else "learned"


def reference_dir(dataset: str, root: Path | None = None) -> Path | None:
    """Folder holding the reference curves of ``dataset``, or None when there is none."""
    folder = (REFERENCE_ROOT if root is None else Path(root)) / dataset
    return folder if folder.is_dir() else None


def _with_msssim_variants(curve: dict) -> dict:
    """Add linear MS-SSIM from its dB form (-10*log10(1-x)) or back, so papers that report only one appear."""
    results = curve["results"]
    if _MSSSIM_DB in results and _MSSSIM not in results:
        results[_MSSSIM] = [1.0 - 10.0 ** (-v / 10.0) for v in results[_MSSSIM_DB]]
    elif _MSSSIM in results and _MSSSIM_DB not in results:
        results[_MSSSIM_DB] = [-10.0 * math.log10(1.0 - v) if v < 1.0 else math.inf for v in results[_MSSSIM]]
    return curve


def _load_all(dataset: str, root: Path | None) -> list[dict]:
    """Every curve of ``dataset``, annotated with "kind" and "file" (the JSON file's stem)."""
    folder = reference_dir(dataset, root)
    if folder is None:
        return []
    curves = []
    for path in sorted(folder.glob("*.json")):
        curve = _with_msssim_variants(load_results(path))
        curve["kind"] = curve_kind(curve["name"])
        curve["file"] = path.stem
        curves.append(curve)
    return curves


def load_reference_curves(dataset: str, root: Path | None = None, metric: str = "psnr-rgb") -> list[dict]:
    """Reference curves of ``dataset`` that report ``metric`` and "bpp", each with "kind" and "file" added."""
    return [c for c in _load_all(dataset, root) if metric in c["results"] and "bpp" in c["results"]]


def find_reference_curve(dataset: str, name: str, root: Path | None = None) -> dict:
    """One reference curve, by file stem (e.g. "vtm") or, failing that, by its "name" (case-insensitive)."""
    curves = _load_all(dataset, root)
    if not curves:
        raise ValueError(
            f"no reference curves for dataset {dataset!r}; shipped datasets: {', '.join(DATASETS)}"
        )
    matches = [c for c in curves if c["file"] == name]
    if not matches:
        wanted = name.lower()
        matches = [c for c in curves if c["file"].lower() == wanted or c["name"].lower() == wanted]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(
            f"{name!r} matches several {dataset} reference curves; use a file stem: "
            + ", ".join(c["file"] for c in matches)
        )
    available = ", ".join(f"{c['file']} ({c['name']})" for c in curves)
    raise ValueError(f"no {dataset} reference curve named {name!r}; available: {available}")

"""The run report: one ``report.html`` (plus ``report_assets/``) built from a run directory's files alone.

It reads ``results*.json``, ``per_image*.csv``, ``provenance/`` and, when the sweep saved them,
``report_assets/manifest.json`` (thumbnails, bit maps: ``report_assets.py``); it needs no model, no
network and no server, and stays readable when the folder is copied elsewhere. ``inline=True`` puts
the slider pictures into the page itself (no full-size images), for W&B's ``wandb.Html``.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
import math
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from ctrlic.codecs.codec import Codec
from ctrlic.errors import UserError
from ctrlic.evaluation.bd_metrics import AXES, axis_values
from ctrlic.evaluation.references import load_reference_curves, reference_dir
from ctrlic.evaluation.report_assets import (
    ASSETS,
    MANIFEST,
    ReportSettings,
    report_settings,
    write_report_assets,
)
from ctrlic.evaluation.report_page import page
from ctrlic.evaluation.results import load_results

log = logging.getLogger("ctrlic")

REPORT = "report.html"
#: provenance files shown in the collapsed block, and how many characters of each at most
PROVENANCE = {"git_commit.txt": 4000, "config.yaml": 60000, "git_diff.patch": 20000}
#: reference curves drawn when the run names none (all of a data set's curves would crowd the plot)
MAX_REFERENCES = 12


class ReportError(UserError):
    """A folder that holds no evaluated run."""


def _read_csv(path: Path) -> dict:
    if not path.is_file():
        return {"columns": [], "rows": []}
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {"columns": [], "rows": []}

    def cell(v: str):
        try:
            return float(v)
        except ValueError:
            return v

    return {"columns": rows[0], "rows": [[cell(v) for v in r] for r in rows[1:]]}


def _config(run_dir: Path) -> dict:
    path = run_dir / "provenance" / "config.yaml"
    try:
        return yaml.safe_load(path.read_text()) or {} if path.is_file() else {}
    except yaml.YAMLError:
        return {}


def _plot_names(manifest: dict, config: dict) -> list[str] | None:
    if manifest.get("plot_references") is not None:
        return list(manifest["plot_references"])
    sweep = ((config.get("callbacks") or {}).get("rd_sweep") or {})
    return sweep.get("plot_references")


def _references(results: dict, names: list[str] | None, axes: Iterable[str]) -> dict[str, list[dict]]:
    """The published curves to draw beside ours, per quality axis (bpp and that axis only)."""
    dataset = results.get("meta", {}).get("reference_dataset")
    if not dataset or reference_dir(dataset) is None:
        return {}
    wanted = {n.lower() for n in names} if names is not None else None
    out = {}
    for axis in axes:
        key = "ms-ssim-db-rgb" if axis == "ms-ssim-db" else AXES[axis][2]
        curves = [c for c in load_reference_curves(dataset, metric=key)
                  if wanted is None or c["file"].lower() in wanted or c["name"].lower() in wanted]
        out[axis] = [{"name": c["name"], "kind": c["kind"], "bpp": c["results"]["bpp"],
                      "quality": c["results"][key]} for c in curves[:MAX_REFERENCES]]
    return out


def _curves(results: dict) -> list[dict]:
    """Our curve(s) on every measured axis: one per family value for a family sweep."""
    meta = results.get("meta", {})
    family = meta.get("family")
    values = results["results"].get(family) if family else None
    groups = {v: [i for i, x in enumerate(values) if x == v] for v in dict.fromkeys(values)} if values else \
        {None: list(range(len(next(iter(results["results"].values())))))}
    curves = []
    for value, keep in groups.items():
        axes = {axis: [vals[i] for i in keep] for axis in AXES if (vals := axis_values(results, axis))}
        name = results["name"] if value is None else f"{results['name']} {family}={value:g}"
        curves.append({"name": name, "points": keep, "bpp": [results["results"].get("bpp", [0] * (max(keep) + 1))[i]
                                                             for i in keep], "quality": axes})
    return curves


def _set_data(run_dir: Path, results_file: str, csv_file: str, manifest_set: dict | None, names: list[str] | None,
              inline: bool) -> dict:
    results = load_results(run_dir / results_file)
    meta = results.get("meta", {})
    curves = _curves(results)
    axes = [a for a in AXES if any(a in c["quality"] for c in curves)]
    images = (manifest_set or {}).get("images", [])
    if inline:
        images = [_inline(run_dir, image) for image in images]
    rd_png = results_file.replace("results", "rd").replace(".json", ".png")
    bpsp_png = rd_png.replace("rd", "bpsp", 1)
    plot = next((p for p in (rd_png, bpsp_png) if (run_dir / p).is_file()), None)
    return {"name": meta.get("dataset", results_file), "label": results["name"], "results": results["results"],
            "meta": meta, "knobs": meta.get("knobs", []), "points": meta.get("points", []), "curves": curves,
            "axes": axes, "references": _references(results, names, axes), "per_image": _read_csv(run_dir / csv_file),
            "images": images, "plot": plot}


def _data_uri(path: Path) -> str:
    mime = {".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg"}[path.suffix]
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _inline(run_dir: Path, image: dict) -> dict:
    """A manifest image with its thumbnails and maps as data URIs and no full-size links."""
    def fix(entry: dict) -> dict:
        out = dict(entry)
        for key in ("thumb", "bit_map", "overlay", "patch_map"):
            if out.get(key):
                out[key] = _data_uri(run_dir / out[key])
        out["full"] = None
        return out

    return {**image, "original": fix(image["original"]), "points": [fix(p) for p in image["points"]]}


def _provenance(run_dir: Path, sets: list[dict]) -> dict:
    out = {name: (run_dir / "provenance" / name).read_text()[:limit]
           for name, limit in PROVENANCE.items() if (run_dir / "provenance" / name).is_file()}
    metas = [s["meta"] for s in sets]
    out["weights_fingerprint"] = next((m.get("weights_fingerprint") for m in metas if m.get("weights_fingerprint")),
                                      None)
    return out


def report_data(run_dir: str | Path, inline: bool = False) -> dict:
    """Everything the page shows, as one JSON-able dict."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run_dir={str(run_dir)!r} is not a folder; point it at a run directory")
    files = sorted(run_dir.glob("results*.json"), key=lambda p: p.name != "results.json")
    if not files:
        raise ReportError(f"run_dir={str(run_dir)!r} holds no results.json; evaluate first (task=eval)")
    manifest_path = run_dir / ASSETS / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    config = _config(run_dir)
    names = _plot_names(manifest, config)
    by_results = {s["results"]: s for s in manifest.get("sets", [])}
    sets = [_set_data(run_dir, f.name, f.name.replace("results", "per_image").replace(".json", ".csv"),
                      by_results.get(f.name), names, inline) for f in files]
    title = f"{sets[0]['label']} — {run_dir.resolve().name}"
    return {"title": title, "sets": sets, "provenance": _provenance(run_dir, sets), "inline": inline,
            "axes": {axis: [label, unit, higher] for axis, (label, unit, _, higher) in AXES.items()},
            "thumb_size": manifest.get("thumb_size", ReportSettings.thumb_size)}


def render_report(run_dir: str | Path, inline: bool = False) -> str:
    """The report page as one HTML string (``inline``: pictures embedded, for W&B)."""
    data = report_data(run_dir, inline)
    for s in data["sets"]:
        if s["plot"] and not inline:
            s["plot"] = _copy_plot(Path(run_dir), s["plot"])
        elif s["plot"]:
            s["plot"] = _data_uri(Path(run_dir) / s["plot"])
    return page(html.escape(data["title"]), json.dumps(json_safe(data), allow_nan=False).replace("</", "<\\/"))


def json_safe(value):
    """JSON-safe copy: non-finite floats (an infinite MS-SSIM dB, a NaN) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _copy_plot(run_dir: Path, name: str) -> str:
    """The matplotlib RD plot, copied beside the other assets so the page travels with its folder."""
    (run_dir / ASSETS).mkdir(exist_ok=True)
    shutil.copyfile(run_dir / name, run_dir / ASSETS / name)
    return f"{ASSETS}/{name}"


def write_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` from the run's files; returns its path."""
    path = Path(run_dir) / REPORT
    path.write_text(render_report(run_dir), encoding="utf-8")
    return path


def build_report(codec: Codec, eval_sets: Mapping[str, Iterable[Mapping]], run_dir: str | Path,
                 settings) -> Path | None:
    """After a sweep: the chosen images' pictures and bit maps, then the page (None when ``report`` is off).

    ``settings`` is the sweep's ``SweepSettings`` (its ``report``, ``plot_references`` and ``metric``).
    """
    report: ReportSettings = report_settings(getattr(settings, "report", None))
    if not report.enabled:
        return None
    write_report_assets(codec, eval_sets, run_dir, report, getattr(settings, "plot_references", None),
                        getattr(settings, "metric", "psnr-rgb"))
    path = write_report(run_dir)
    log.info("report: %s", path)
    return path

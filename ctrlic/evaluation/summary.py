"""The multirun summary: every job of a multirun in one table (CSV + Markdown), one RD plot, and the best job.

Each job folder (``<multirun dir>/<n>/``) contributes its ``results.json`` (RD curve, BD-rate) and its
``final_metrics.json`` (final losses); ``.hydra/overrides.yaml`` names what the job changed. A comparison
of control schemes (``experiment=compare``: the jobs' results carry ``meta.compare``) gets its table
(``comparison.csv``, first in ``summary.md``) and its RD plot (PSNR and MS-SSIM, every scheme and the
anchors' curve) in place of the per-job curves (``evaluation.comparison``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import yaml

from ctrlic.errors import UserError
from ctrlic.evaluation.bd_metrics import SUMMARY_COLUMNS, summary_columns
from ctrlic.evaluation.comparison import COLUMNS as COMPARISON_COLUMNS
from ctrlic.evaluation.comparison import compare_jobs
from ctrlic.evaluation.plot import plot_rd, plot_rd_panels
from ctrlic.evaluation.references import load_reference_curves, reference_dir
from ctrlic.evaluation.results import load_results
from ctrlic.evaluation.summary_report import write_summary_report

log = logging.getLogger("ctrlic")

RESULTS, FINAL_METRICS = "results.json", "final_metrics.json"
COLUMNS = ("job", "overrides", "name", "dataset", "points", "mean_bpp", "mean_quality", "bd_rate",
           "bd_reference", "bd_reason", *SUMMARY_COLUMNS, "loss", "global_step")


class SummaryError(UserError):
    """The folder to summarize is missing or holds no job results."""


def _job_dirs(root: Path) -> list[Path]:
    jobs = [p for p in root.iterdir() if p.is_dir() and ((p / RESULTS).is_file() or (p / FINAL_METRICS).is_file())]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def _overrides(job: Path) -> list[str]:
    path = job / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def _row(job: Path, label: str, metric: str, loss_key: str) -> tuple[dict, dict | None, dict]:
    """One table row, the job's results dict (None without an RD sweep) and its final metrics."""
    results = load_results(job / RESULTS) if (job / RESULTS).is_file() else None
    final = json.loads((job / FINAL_METRICS).read_text()) if (job / FINAL_METRICS).is_file() else {}
    row = {"job": job.name, "overrides": label, "loss": final.get(loss_key),
           "global_step": final.get("global_step")}
    if results is not None:
        bd = results.get("meta", {}).get("bd_rate", {})
        row.update(name=results["name"], dataset=results.get("meta", {}).get("dataset"),
                   points=len(results["results"]["bpp"]), mean_bpp=_mean(results["results"]["bpp"]),
                   mean_quality=_mean(results["results"].get(metric, [])), bd_rate=bd.get("value"),
                   bd_reference=bd.get("reference"), bd_reason=bd.get("reason"), **summary_columns(results))
    return {c: row.get(c) for c in COLUMNS}, results, final


def best_job(rows: list[dict]) -> tuple[dict | None, str]:
    """The job with the lowest BD-rate, else (no BD-rate anywhere) the lowest loss; and by which."""
    with_bd = [r for r in rows if r["bd_rate"] is not None]
    if with_bd:
        return min(with_bd, key=lambda r: r["bd_rate"]), "bd_rate"
    with_loss = [r for r in rows if r["loss"] is not None]
    if with_loss:
        return min(with_loss, key=lambda r: r["loss"]), "loss"
    return None, "none"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[dict], columns: Sequence[str], header: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts) in the order of ``columns``."""
    lines = ["| " + " | ".join(header or columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_markdown(rows: list[dict], metric: str, loss_key: str) -> str:
    return markdown_table(rows, COLUMNS, [{"mean_quality": f"mean {metric}", "loss": loss_key}.get(c, c)
                                          for c in COLUMNS])


def _references(curves: list[dict], metric: str, wanted: Sequence[str]) -> list[dict]:
    dataset = next((c.get("meta", {}).get("reference_dataset") for c in curves), None)
    if not dataset or reference_dir(dataset) is None or not wanted:
        return []
    names = {n.lower() for n in wanted}
    return [c for c in load_reference_curves(dataset, metric=metric)
            if c["file"].lower() in names or c["name"].lower() in names]


def _write_csv(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _comparison_plot(root: Path, comparison: dict, plot_references: Sequence[str]) -> Path:
    """The comparison's RD plot: every scheme's curve and the anchors', PSNR and MS-SSIM panels."""
    curves = comparison["curves"]
    references = {c["file"]: c for metric in ("psnr-rgb", "ms-ssim-rgb")
                  for c in _references(curves, metric, plot_references)}
    return plot_rd_panels(curves, root / "summary_rd.png", ["psnr-rgb", "ms-ssim-rgb"], list(references.values()),
                          title=f"{len(curves)} curves against {comparison['reference']}")


def summarize(root: str | Path, metric: str = "psnr-rgb", loss: str = "val/loss",
              plot_references: Sequence[str] = (), bd_method: str = "pchip") -> dict:
    """Write ``summary.csv``, ``summary.md`` and ``summary_rd.png`` into ``root``; return rows and best.

    A comparison multirun also gets ``comparison.csv`` (BD-rates with ``bd_method`` against the anchors).
    """
    root = Path(root)
    if not root.is_dir():
        raise SummaryError(f"summary.dir={str(root)!r} is not a folder; set summary.dir=<multirun directory>")
    jobs = _job_dirs(root)
    if not jobs:
        raise SummaryError(f"summary.dir={str(root)!r} has no job folders with {RESULTS} or {FINAL_METRICS};"
                           " point it at a multirun directory (multirun/<date>/)")
    overrides = {job: _overrides(job) for job in jobs}
    shared = set.intersection(*(set(o) for o in overrides.values()))
    rows, curves, measured = [], [], []
    for job in jobs:
        label = " ".join(o for o in overrides[job] if o not in shared) or job.name
        row, results, final = _row(job, label, metric, loss)
        rows.append(row)
        if results is not None:
            measured.append({"job": job.name, "results": results, "final": final})
        if results is not None and metric in results["results"]:
            curves.append({**results, "name": f"{job.name}: {label}"})
    _write_csv(root / "summary.csv", rows, COLUMNS)
    comparison = compare_jobs(measured, bd_method)
    markdown = to_markdown(rows, metric, loss)
    plot = None
    if comparison is not None:
        _write_csv(root / "comparison.csv", comparison["rows"], COMPARISON_COLUMNS)
        markdown = (f"## Control schemes against {comparison['reference']} (BD-rate: {bd_method})\n\n"
                    + markdown_table(comparison["rows"], COMPARISON_COLUMNS) + "\n## Jobs\n\n" + markdown)
        plot = _comparison_plot(root, comparison, plot_references)
    elif curves:
        plot = plot_rd(curves, root / "summary_rd.png", metric=metric,
                       references=_references(curves, metric, plot_references), title=f"{len(curves)} jobs")
    (root / "summary.md").write_text(markdown)
    best, by = best_job(rows)
    page = write_summary_report(root, rows, COLUMNS, best, by, plot, comparison)
    return {"report": page, "rows": rows, "best": best, "by": by, "csv": root / "summary.csv",
            "markdown": root / "summary.md", "plot": plot, "comparison": comparison}


def summarize_with(root: str | Path, settings) -> dict:
    """``summarize`` with the ``summary`` config node (metric, loss, plot_references, bd_method)."""
    settings = settings or {}
    return summarize(root, settings.get("metric", "psnr-rgb"), settings.get("loss", "val/loss"),
                     list(settings.get("plot_references") or []), settings.get("bd_method", "pchip"))


def summary_text(summary: dict) -> str:
    """The Markdown table and the best job, as printed at the end of a multirun."""
    best, by = summary["best"], summary["by"]
    if best is None:
        line = "best: none (no job has a BD-rate or a loss)"
    else:
        value = f"BD-rate {best['bd_rate']:+.2f} %" if by == "bd_rate" else f"loss {best['loss']:.5g}"
        line = f"best by {by}: job {best['job']} ({best['overrides']}), {value}"
    return summary["markdown"].read_text() + line + f"\ntable: {summary['csv']}" + (
        f"\nRD plot: {summary['plot']}" if summary["plot"] else "") + f"\nreport: {summary['report']}"

"""A method's replication as a slice of ``experiment=compare``: its scheme beside the separately trained anchors.

The replications (CALICE's α-adapters, LPM's prompts) run the comparison multirun restricted to the anchors
and one scheme, in the CPU regime (``scale=cpu``: tiny models, 128² crops, the λ range reaching 5e-5; issue
#17 item 4) unless told otherwise, so their BD-rates are measured where the knob moves the rate. A sweep
folder whose jobs have all finished is summarised again instead of trained twice (``--sweep`` of a full
comparison reuses its jobs). Writes ``benchmarks/results/replicate_<method>_<backbone>.json`` and ``…_rd.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from benchmarks.common import RESULTS_DIR, run_py, write_json
from ctrlic.evaluation.plot import plot_rd
from ctrlic.evaluation.summary import SummaryError, summarize

#: what every replication runs on unless overridden: the bundled images and the CPU regime
REGIME = ("data=demo", "scale=cpu")
#: the classical and published curves drawn beside the comparison (compare.yaml's summary.plot_references)
PLOT_REFERENCES = ("vtm", "bpg_444_x265_ycbcr", "imagecodecs__jpeg")


def parser(description: str, method: str, backbones: tuple[str, ...]) -> argparse.ArgumentParser:
    """The replications' shared command line: backbone, sweep folder, and run.py overrides after them."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--backbone", choices=backbones, default=backbones[0])
    p.add_argument("--sweep", type=Path, help="the comparison's sweep folder (default: benchmarks/results/"
                   f"replicate_{method}_<backbone>/); a folder whose jobs have finished is only summarised")
    p.add_argument("overrides", nargs="*", help=f"run.py overrides after {' '.join(REGIME)}, e.g. scale=null "
                   "trainer=gpu for the papers' sizes on a GPU")
    return p


def by_curve(comparison: dict) -> tuple[dict, dict]:
    """The comparison's table rows and curves by curve name ("anchors", "alpha_adapters", …)."""
    rows = {row["curve"].split(" (")[0]: row for row in comparison["rows"]}
    return rows, {c["name"].split(" (")[0]: c for c in comparison["curves"]}


def summarized(sweep: Path) -> dict:
    """The multirun summary of a comparison's sweep folder; one line and exit when it holds no comparison."""
    try:
        summary = summarize(sweep, plot_references=PLOT_REFERENCES)
    except SummaryError as err:
        raise SystemExit(str(err)) from None
    if summary["comparison"] is None:
        raise SystemExit(f"{sweep} holds no comparison (no finished job tagged by experiment=compare)")
    return summary


def job_overrides(sweep: Path, job: str) -> list[str]:
    """The run.py overrides a job of the sweep ran with (its ``.hydra/overrides.yaml``; [] when absent)."""
    path = sweep / job / ".hydra" / "overrides.yaml"
    return list(yaml.safe_load(path.read_text()) or []) if path.is_file() else []


def _finished(sweep: Path, scheme: str) -> bool:
    """The scheme's job and every anchor job of the sweep folder have their results (the multirun ended)."""
    anchors = list(sweep.glob("anchor_*")) if sweep.is_dir() else []
    return (sweep / scheme / "results.json").is_file() and bool(anchors) and all(
        (job / "results.json").is_file() for job in anchors)


def run(method: str, scheme: str, args: argparse.Namespace) -> dict:
    """Train (or reuse) the anchors and ``scheme`` on ``args.backbone``; the comparison's rows and curves."""
    sweep = args.sweep or RESULTS_DIR / f"replicate_{method}_{args.backbone}"
    seconds = None
    if not _finished(sweep, scheme):
        seconds = run_py("-m", "experiment=compare", f"backbone={args.backbone}", *REGIME, *args.overrides,
                         f"compare.schemes={scheme}", f"hydra.sweep.dir={sweep}", log=sweep / "replication.log")
    summary = summarized(sweep)
    rows, curves = by_curve(summary["comparison"])
    plot = RESULTS_DIR / f"replicate_{method}_{args.backbone}_rd.png"
    plot_rd([curves[scheme], curves["anchors"]], plot, title=f"{method} replication ({args.backbone}, "
            f"{' '.join(REGIME + tuple(args.overrides))})")
    return {"backbone": args.backbone, "regime": [*REGIME, *args.overrides], "anchor_jobs": rows["anchors"]["jobs"],
            "sweep": str(sweep), "wall_seconds": seconds, "scheme": rows[scheme], "anchors": rows["anchors"],
            "scheme_job_overrides": job_overrides(sweep, scheme),
            "curves": {"anchors": curves["anchors"]["results"], scheme: curves[scheme]["results"]},
            "plot": str(plot), "summary_plot": str(summary["plot"])}


def report(method: str, scheme: str, payload: dict) -> Path:
    """Write ``replicate_<method>_<backbone>.json`` with the headline as one Markdown line."""
    row, anchors = payload["scheme"], payload["anchors"]

    def pct(value) -> str:
        return "none" if value is None else f"{value:+.2f} %"

    shared = {"scheme", "experiment", "backbone", "compare.schemes"}
    extra = [o for o in payload["scheme_job_overrides"] if o not in payload["regime"] and o.split("=")[0] not in shared]
    payload["markdown"] = (
        f"{method} replication ({payload['backbone']}, {' '.join(payload['regime'])}"
        + (f"; the {scheme} job with {' '.join(extra)}" if extra else "") + f"): {scheme} spans "
        f"{row['bpp_min']:.3f}–{row['bpp_max']:.3f} bpp ({row['bpp_span']:.2f}×), the {anchors['points']} anchors "
        f"{anchors['bpp_min']:.3f}–{anchors['bpp_max']:.3f} bpp (monotone: {anchors['monotone']}); BD-rate vs the "
        f"anchors PSNR {pct(row['bd_rate_psnr'])}, MS-SSIM {pct(row['bd_rate_ms_ssim'])}, on the Pareto fronts "
        f"{pct(row['bd_rate_psnr_pareto'])}" + (f" ({row['bd_reason']})" if row["bd_reason"] else ""))
    return write_json(f"replicate_{method}_{payload['backbone']}", payload)

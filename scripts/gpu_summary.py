"""Write OUT_DIR/gpu_check.json: one summary of a GPU check (scripts/gpu_check.sh).

It joins the phases' exit codes and seconds, the machine, every test's outcome (JUnit XML of pytest), what
the GPU tests measured (``gpu_report.jsonl``: cross-device decodes per codec, fp32-vs-CPU differences,
bf16 dtypes), and the GPU benchmark JSONs written since the check started. Standard library only.

    python scripts/gpu_summary.py OUT_DIR [--since EPOCH] [--phase NAME=EXIT:SECONDS ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GPU_FIGURES = ("coding_overhead_paper", "memory_gpu", "train_step_gpu", "codec_time_gpu")
PACKAGES = ("torch", "torchvision", "numpy", "lightning", "torchmetrics", "compressai", "hydra-core", "omegaconf",
            "constriction", "lpips", "pytorch-msssim", "bjontegaard", "scipy", "pillow")


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    try:
        import torch

        info["cuda_available"] = torch.cuda.is_available()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_cuda"] = torch.version.cuda
    except Exception as exc:  # noqa: BLE001 - the summary must be written even when torch is broken
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True).stdout.strip() or None
    except OSError:  # no git on the machine
        info["commit"] = None
    return info


def junit(path: Path) -> dict | None:
    """Counts and one row per test case (outcome, seconds, first line of the failure) of a JUnit XML file."""
    if not path.is_file():
        return None
    cases, counts = [], {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag == "failure" else tag
                text = (node.get("message") or node.text or "").strip()
                message = text.splitlines()[0][:400] if text else ""
                break
        counts[outcome] += 1
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": round(float(case.get("time") or 0), 2), "message": message})
    return {**counts, "cases": cases}


def measured(path: Path) -> dict:
    """The GPU tests' records grouped: cross-device decodes per codec, training per experiment, the rest."""
    out = {"cross_decode": {}, "lossless": {}, "bf16_steps": {}, "fp32_vs_cpu": {}, "other": []}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        record = json.loads(line)
        kind = record.get("test")
        if kind == "cross_decode":
            rows = record.pop("rows")
            out["cross_decode"][record["codec"]] = {**record, "rows": rows}
        elif kind == "lossless_cross_decode":
            out["lossless"][record["codec"]] = record
        elif kind in ("bf16_steps", "fp32_vs_cpu"):
            out[kind][record["experiment"]] = record
        else:
            out["other"].append(record)
    return out


def figures(since: float) -> dict:
    """The GPU benchmark JSONs written during this check (older files are another run's)."""
    found = {}
    for name in GPU_FIGURES:
        path = RESULTS / f"{name}.json"
        if path.is_file() and path.stat().st_mtime >= since:
            found[name] = json.loads(path.read_text())
        else:
            found[name] = None
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--since", type=float, default=0.0, help="epoch seconds the check started")
    parser.add_argument("--phase", action="append", default=[], dest="phases", help="NAME=EXIT_CODE:SECONDS")
    args = parser.parse_args(argv)
    phases = {}
    for item in args.phases:
        name, _, rest = item.partition("=")
        code, _, seconds = rest.partition(":")
        phases[name] = {"exit_code": int(code), "seconds": int(seconds or 0)}
    report = measured(args.out_dir / "gpu_report.jsonl")
    cross = {codec: {k: r[k] for k in ("robust_path", "images", "robust_ok", "native_mismatches")}
             for codec, r in report["cross_decode"].items()}
    summary = {
        "ok": bool(phases) and all(p["exit_code"] == 0 for p in phases.values()),
        "phases": phases,
        "machine": machine(),
        "tests": {"gpu": junit(args.out_dir / "junit_gpu.xml"), "gloo": junit(args.out_dir / "junit_gloo.xml")},
        "gpu_encode_cpu_decode": cross,
        "measured": report,
        "figures": {name: (fig or {}).get("markdown") for name, fig in figures(args.since).items()},
        "figure_json": figures(args.since),
    }
    path = args.out_dir / "gpu_check.json"
    path.write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps({"ok": summary["ok"], "phases": phases, "gpu_encode_cpu_decode": cross,
                      "figures": summary["figures"]}, indent=1))
    print(f"summary: {path}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""``make bench``: the CPU benchmark set, each figure in its own process writing its JSON under results/.

A failing figure is reported and the others still run; ``results/latest.md`` collects each figure's
Markdown line with the command behind it and the seconds it took. ``--gpu`` adds the paper-size runs
(needs CUDA); ``--only NAME ...`` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.common import RESULTS_DIR, ROOT

#: (figure name = its JSON's stem, module, arguments): tiny models, 4 Kodak images or crops, 2 CPU cores
CPU_FIGURES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("coding_overhead", "benchmarks.coding_overhead", ("--crop", "256", "--fit-steps", "300", "--knob-points", "3")),
    ("coding_overhead_lossless", "benchmarks.coding_overhead",
     ("--codecs", "mgcf", "callic", "--crop", "64", "--limit", "1", "--fit-steps", "50", "--knob-points", "2",
      "--name", "coding_overhead_lossless")),
    ("codec_speed_cheng_N32", "benchmarks.codec_speed", ("--N", "32", "--crop", "256")),
    ("codec_speed_cheng_N192", "benchmarks.codec_speed", ("--N", "192", "--crop", "256", "--repeats", "1")),
    ("robust_entropy", "benchmarks.robust_entropy", ("--crop", "256", "--repeats", "1")),
    # CCI on a 128² crop (the naive decoder's 190 full forwards take ~9 min at 256²); RPFT needs a trained MGCF
    # on whole images (docs/benchmarks.md), so not here
    ("mgcf_speed", "benchmarks.mgcf_speed", ("--size", "128", "--rpft-images")),
    ("train_step", "benchmarks.train_step", ("--batch", "8", "--crop", "256", "--steps", "8", "--warmup", "2")),
    ("rate_control", "benchmarks.rate_control", ("--crop", "256", "--limit", "2", "--fit-steps", "50")),
    ("memory", "benchmarks.memory", ("--codecs", "cheng2020_attn", "stf", "tcm", "tic", "control_gic")),
    ("classical_floor", "benchmarks.classical_floor", ()),
)
#: paper-size models and images on a GPU, quickest first
GPU_FIGURES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("train_step_gpu", "benchmarks.train_step",
     ("--paper", "--device", "cuda", "--batch", "16", "--crop", "256", "--steps", "20", "--warmup", "5",
      "--name", "train_step_gpu")),
    ("memory_gpu", "benchmarks.memory", ("--gpu", "--gpu-only", "--name", "memory_gpu")),
    # two whole images per codec: the cpu64 path costs ~20 s of one CPU core per STF/TCM image and pass
    ("codec_time_gpu", "benchmarks.codec_time", ("--paper", "--device", "cuda", "--fit-steps", "50", "--limit", "2",
                                                 "--codecs", "cheng2020_attn", "stf", "tcm", "tic", "control_gic",
                                                 "--name", "codec_time_gpu")),
    ("coding_overhead_paper", "benchmarks.coding_overhead",
     ("--paper", "--device", "cuda", "--crop", "0", "--fit-steps", "200", "--codecs", "cheng2020_attn", "stf",
      "tcm", "stf+alpha_adapters", "tic", "--name", "coding_overhead_paper")),
)


def run_figure(name: str, module: str, args: tuple[str, ...]) -> dict:
    """Run one benchmark module; returns its command, seconds, status and Markdown line."""
    command = [sys.executable, "-m", module, *args]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    seconds = time.perf_counter() - start
    shown = " ".join(["python", "-m", module, *args])
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"name": name, "command": shown, "seconds": seconds, "ok": False, "markdown": f"FAILED: {tail[0]}"}
    line = json.loads((RESULTS_DIR / f"{name}.json").read_text()).get("markdown", "")
    return {"name": name, "command": shown, "seconds": seconds, "ok": True, "markdown": line}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="also the paper-size GPU figures")
    parser.add_argument("--only", nargs="+", default=None, help="figure names to run")
    args = parser.parse_args(argv)
    figures = list(CPU_FIGURES) + (list(GPU_FIGURES) if args.gpu else [])
    if args.only:
        unknown = sorted(set(args.only) - {f[0] for f in CPU_FIGURES + GPU_FIGURES})
        if unknown:
            parser.error(f"unknown figure(s) {', '.join(unknown)}; choose from "
                         + ", ".join(f[0] for f in CPU_FIGURES + GPU_FIGURES))
        figures = [f for f in CPU_FIGURES + GPU_FIGURES if f[0] in args.only]
    done = []
    start = time.perf_counter()
    for name, module, fig_args in figures:
        done.append(run_figure(name, module, fig_args))
        print(f"[{done[-1]['seconds']:6.0f} s] {name}: {done[-1]['markdown']}", flush=True)
    total = time.perf_counter() - start
    lines = ["# Latest benchmark run", "", f"{len(done)} figures in {total / 60:.1f} min.", ""]
    for row in done:
        lines += [f"- **{row['name']}** ({row['seconds']:.0f} s, `{row['command']}`): {row['markdown']}"]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.md").write_text("\n".join(lines) + "\n")
    print(f"all figures: {total / 60:.1f} min; summary {RESULTS_DIR / 'latest.md'}")
    return 0 if all(row["ok"] for row in done) else 1


if __name__ == "__main__":
    sys.exit(main())

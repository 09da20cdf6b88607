"""Small-scale replication of CALICE's claim: one anchor + α-adapters ≈ separately trained anchors.

Trains tiny anchors at λ_max and three more λ's across the range (4 RD points), then α-adapters
on the λ_max anchor with the same number of steps, and reports the BD-rate of the α-curve against
the anchors' curve and the adapter overhead. Defaults fit in about 30 minutes on 2 CPU cores;
``--gpu`` trains longer, larger models on a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from benchmarks.common import RESULTS_DIR, run_py, write_json
from ctrlic.evaluation.bdrate import bd_rate_against, pareto_front
from ctrlic.evaluation.plot import plot_rd
from ctrlic.evaluation.results import load_results, make_results

LAMBDA_RANGE = {"stf": (0.0018, 0.0483), "tcm": (0.0025, 0.05), "cheng": (0.0018, 0.0483)}


def lambdas(lmin: float, lmax: float, n: int = 4) -> list[float]:
    """n λ's log-spaced from λ_max down to λ_min (the anchor first)."""
    return [math.exp(math.log(lmax) + i * (math.log(lmin) - math.log(lmax)) / (n - 1)) for i in range(n)]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=sorted(LAMBDA_RANGE), default="stf")
    parser.add_argument("--steps", type=int, default=600, help="training steps per model")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "replicate_calice")
    parser.add_argument("--gpu", action="store_true", help="train on a GPU (bf16), small size, 4x the steps")
    parser.add_argument("--resume", action="store_true", help="reuse anchors that already have results")
    parser.add_argument("--lmbda-min", type=float, help="λ_min (default: the paper's for the backbone)")
    parser.add_argument("--lmbda-max", type=float, help="λ_max, the anchor's λ (default: the paper's)")
    args = parser.parse_args(argv)
    bb = args.backbone
    lmin, lmax = LAMBDA_RANGE[bb]
    lmin, lmax = args.lmbda_min or lmin, args.lmbda_max or lmax
    common = ["data=demo", "data.num_workers=2", "data.eval_limit=4", "eval.save_bitstreams=false",
              f"trainer.val_check_interval={args.steps}", "trainer.limit_val_batches=2", "trainer.enable_progress_bar=false"]
    if args.gpu:
        common += ["trainer=gpu", "backbone.size=small", "data.crop_size=256", "data.batch_size=16"]
        steps = args.steps * 4
    else:
        common += ["backbone.size=tiny", "data.crop_size=128", "data.batch_size=4"]
        steps = args.steps
    common.append(f"trainer.max_steps={steps}")
    seconds = {}
    anchors = []
    for lmbda in lambdas(lmin, lmax):
        run_dir = args.out / f"anchor_{lmbda:.4f}"
        if args.resume and (run_dir / "results.json").is_file():
            seconds[f"anchor_{lmbda:.4f}"] = None  # trained by an earlier, interrupted invocation
        else:
            seconds[f"anchor_{lmbda:.4f}"] = run_py(f"experiment=anchor_{bb}", f"module.lmbda={lmbda}", "module.lr=1e-3",
                                                *common,
                                                f"hydra.run.dir={run_dir}", log=run_dir / "log.txt")
        res = load_results(run_dir / "results.json")
        anchors.append({k: v[0] for k, v in res["results"].items()} | {"lmbda": lmbda})
    anchor_curve = make_results(f"tiny {bb} anchors (4 λ)", "separately trained fixed-rate models", anchors)
    calice_dir = args.out / "calice"
    if args.resume and (calice_dir / "results.json").is_file():
        seconds["calice"] = None
    else:
        seconds["calice"] = run_py(f"experiment=calice_{bb}", f"backbone.checkpoint={args.out / f'anchor_{lmax:.4f}'}"
                                   "/checkpoints/last.ckpt", f"module.lmbda_min={lmin}", f"module.lmbda_max={lmax}",
                                   "module.lr=1e-3", *common, f"hydra.run.dir={calice_dir}",
                                   log=calice_dir / "log.txt")
    alpha_curve = load_results(calice_dir / "results.json")
    run_py(f"experiment=calice_{bb}", "task=info", *common, f"hydra.run.dir={calice_dir / 'info'}")
    info = json.loads((calice_dir / "info" / "info.json").read_text())["parameters"]
    bd = bd_rate_against(alpha_curve, anchor_curve, metric="psnr-rgb")
    bd_pareto = bd_rate_against(pareto_front(alpha_curve), pareto_front(anchor_curve), metric="psnr-rgb", method="pchip")
    plot_rd([alpha_curve, anchor_curve], args.out / "rd.png", title=f"CALICE replication ({bb}, tiny)")
    payload = {
        "backbone": bb,
        "lambda_range": [lmin, lmax],
        "steps_per_model": steps,
        "bd_rate_alpha_vs_anchors_percent": bd.value,
        "bd_rate_reason": bd.reason,
        "bd_rate_pareto_fronts_percent": bd_pareto.value,
        "bd_rate_pareto_fronts_reason": bd_pareto.reason,
        "anchors": anchor_curve["results"],
        "alpha_curve": alpha_curve["results"],
        "seconds": seconds,
        "parameters": info,
        "plot": str(args.out / "rd.png"),
    }
    path = write_json(f"replicate_calice_{bb}", payload)
    print(f"BD-rate of the α-curve vs {len(anchors)} separately trained anchors: "
          f"{bd.value if bd.value is None else f'{bd.value:+.2f} %'} {bd.reason or ''}")
    print(f"on the Pareto fronts (pchip): {bd_pareto.value} {bd_pareto.reason or ''}")
    print(f"results: {path}\nplot: {args.out / 'rd.png'}")
    return path


if __name__ == "__main__":
    main()

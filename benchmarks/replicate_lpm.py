"""Small-scale replication of LPM's claim: one λ₀ TIC + a prompt set per λ ≈ separately trained TICs.

Trains tiny TICs at λ₀ = 0.0067 and three more λ's (4 RD points), then prompt sets for those three
λ's on the frozen λ₀ TIC, each with the same number of steps as one TIC, and reports the BD-rate of
the prompt curve against the TICs' curve, the parameters each approach stores and the training
time. Defaults fit in about 30 minutes on 2 CPU cores; ``--steps`` trades time for fidelity.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import RESULTS_DIR, run_py, write_json
from ctrlic.evaluation.bdrate import bd_rate_against, pareto_front
from ctrlic.evaluation.plot import plot_rd
from ctrlic.evaluation.results import load_results, make_results

ANCHOR_LAMBDA = 0.0067
#: the three prompt λ's: the paper's lowest and highest and one in between
PROMPT_LAMBDAS = (0.0018, 0.013, 0.0483)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per TIC and per prompt set")
    parser.add_argument("--backbone", choices=("tic", "tic_hyperprior"), default="tic")
    parser.add_argument("--crop", type=int, default=128, help="training crop size (multiple of 64)")
    parser.add_argument("--eval-crop", type=int, default=256, help="centre crop of the 4 Kodak images coded")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "replicate_lpm")
    parser.add_argument("--resume", action="store_true", help="reuse runs that already have results")
    args = parser.parse_args(argv)
    if args.crop % 64 or args.eval_crop % 64:
        parser.error("--crop and --eval-crop must be multiples of 64 (TIC's total downsampling)")
    control = "layer_prompts_tic" if args.backbone == "tic" else "layer_prompts_tic_hyperprior"
    common = ["data=demo", "data.num_workers=0", f"data.crop_size={args.crop}", "data.batch_size=4",
              f"data.eval_crop={args.eval_crop}", "data.val_limit=2", f"data.val_crop={args.eval_crop}",
              "eval.save_bitstreams=false", "trainer.enable_progress_bar=false",
              f"backbone={args.backbone}", "backbone.size=tiny", "module.lr=1e-3"]
    seconds: dict[str, float | None] = {}

    def run(name: str, *overrides: str) -> dict:
        run_dir = args.out / name
        if args.resume and (run_dir / "results.json").is_file():
            seconds[name] = None  # trained by an earlier, interrupted invocation
        else:
            seconds[name] = run_py(*overrides, *common, f"hydra.run.dir={run_dir}", log=run_dir / "log.txt")
        return load_results(run_dir / "results.json")

    tics = []
    for lmbda in sorted((ANCHOR_LAMBDA, *PROMPT_LAMBDAS)):
        res = run(f"tic_{lmbda:.4f}", "experiment=anchor_tic", f"module.lmbda={lmbda}",
                  f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}")
        tics.append({k: v[0] for k, v in res["results"].items()} | {"lmbda": lmbda})
    tic_curve = make_results("tiny TICs (4 λ)", "separately trained fixed-rate TICs", tics)
    anchor = args.out / f"tic_{ANCHOR_LAMBDA:.4f}" / "checkpoints" / "last.ckpt"
    sets = len(PROMPT_LAMBDAS)
    lpm_overrides = ("experiment=lpm_tic", f"control={control}", f"backbone.checkpoint={anchor}",
                     f"control.lambdas=[{','.join(map(str, PROMPT_LAMBDAS))}]", f"control.anchor_lambda={ANCHOR_LAMBDA}")
    prompt_curve = run("lpm", *lpm_overrides, f"trainer.max_steps={sets * args.steps}",
                       f"trainer.val_check_interval={sets * args.steps}")
    run_py(*lpm_overrides, "task=info", *common, f"hydra.run.dir={args.out / 'info'}")
    info = json.loads((args.out / "info" / "info.json").read_text())
    backbone_params = info["parameters"]["backbone"]["frozen"]
    prompt_params = info["control_groups"]
    bd = bd_rate_against(prompt_curve, tic_curve, metric="psnr-rgb", method="pchip")
    bd_pareto = bd_rate_against(pareto_front(prompt_curve), pareto_front(tic_curve), metric="psnr-rgb", method="pchip")
    plot_rd([prompt_curve, tic_curve], args.out / "rd.png", title=f"LPM replication ({args.backbone}, tiny)")
    stored_tics = len(tics) * backbone_params
    stored_lpm = backbone_params + sum(prompt_params.values())
    tic_seconds = [v for k, v in seconds.items() if k.startswith("tic_") and v is not None]
    payload = {
        "backbone": args.backbone,
        "anchor_lambda": ANCHOR_LAMBDA,
        "prompt_lambdas": list(PROMPT_LAMBDAS),
        "steps_per_model": args.steps,
        "bd_rate_prompts_vs_tics_percent": bd.value,
        "bd_rate_reason": bd.reason,
        "bd_rate_pareto_fronts_percent": bd_pareto.value,
        "bd_rate_pareto_fronts_reason": bd_pareto.reason,
        "tics": tic_curve["results"],
        "prompt_curve": prompt_curve["results"],
        "parameters": {"backbone": backbone_params, "prompt_sets": prompt_params,
                       "stored_separate_tics": stored_tics, "stored_lpm": stored_lpm,
                       "storage_saving_percent": 100 * (1 - stored_lpm / stored_tics)},
        "seconds": seconds,
        "training_seconds": {"separate_tics_besides_anchor": sum(tic_seconds) - (seconds.get(
            f"tic_{ANCHOR_LAMBDA:.4f}") or 0), "prompt_sets": seconds.get("lpm")},
        "plot": str(args.out / "rd.png"),
    }
    path = write_json(f"replicate_lpm_{args.backbone}", payload)
    print(f"BD-rate of the prompt curve vs {len(tics)} separately trained TICs: "
          f"{bd.value if bd.value is None else f'{bd.value:+.2f} %'} {bd.reason or ''}")
    print(f"on the Pareto fronts (pchip): {bd_pareto.value} {bd_pareto.reason or ''}")
    print(f"stored parameters: {stored_lpm:,} (LPM) vs {stored_tics:,} (4 TICs)")
    print(f"results: {path}\nplot: {args.out / 'rd.png'}")
    return path


if __name__ == "__main__":
    main()

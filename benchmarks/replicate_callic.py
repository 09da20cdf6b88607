"""Small-scale replication of CALLIC: a small MGCF pre-trained on BSDS500 (../shared/data), then bpsp on
128×128 Kodak crops without adaptation and with it (T = 10 and T = 50), with and without RPFT, the
classical lossless codecs on the same crops, and the CCI speed-up. Defaults fit in about 30 minutes
of one CPU core; every coded image is decoded back and checked bit for bit.
Writes ``benchmarks/results/replicate_callic.json`` (+ the run directories under ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from benchmarks.common import RESULTS_DIR, ROOT, run_py, write_json
from benchmarks.mgcf_speed import PAPER_RANKS, SMALL_RANKS, cci_speedup, image_crop
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.control.instance_lora import InstanceLoRA
from ctrlic.datamodules.eval_images import center_crop
from ctrlic.datamodules.image_io import load_rgb8
from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.settings import SweepSettings
from ctrlic.lightning_modules.checkpoint import open_codec

KODAK = ROOT.parent / "shared" / "data" / "kodak"
#: the paper's Kodak figures (research notes §1.6) and our classical measurements (issue #6)
PAPER = {"mgcf_bpsp": 2.77, "callic_bpsp": 2.54, "callic_T10_bpsp": 2.62, "cci_s": 1.4, "no_cci_s": 15.2,
         "rpft_adapt_s": 9.7, "no_rpft_adapt_s": 12.9}


def kodak_crops(n: int, size: int) -> list[dict]:
    files = sorted(KODAK.glob("*.png"))[:n]
    out = []
    for f in files:
        img, _ = load_rgb8(f)
        crop = center_crop(img, size)
        out.append({"x": torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255, "name": f.name})
    return out


def pretrain(out: Path, size: str, steps: int, batch: int, lr: float) -> Path:
    run_dir = out / "mgcf"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if ckpt.exists():
        return ckpt
    run_py("experiment=mgcf", "data=kodak", f"backbone.size={size}", "data.crop_size=64", f"data.batch_size={batch}",
           f"module.lr={lr}", "data.num_workers=0", f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
           "data.val_limit=2", "data.val_crop=128", "data.eval_crop=128", "data.eval_limit=2",
           "eval.save_bitstreams=false",
           "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", log=run_dir / "train.log")
    return ckpt


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", help="backbone.size of the MGCF (tiny: dim 32, P 16)")
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4, help="pre-training Adam lr (paper: 5e-4 over 2M steps)")
    parser.add_argument("--images", type=int, default=8, help="Kodak images (128×128 centre crops)")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 50], help="adaptation steps T")
    parser.add_argument("--ranks", choices=["small", "paper"], default="small")
    parser.add_argument("--cci-size", type=int, default=256)
    parser.add_argument("--out", type=Path, help="run directories (default: benchmarks/results/<name>)")
    parser.add_argument("--name", default="replicate_callic", help="JSON file name in benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out = args.out or RESULTS_DIR / args.name
    ckpt = pretrain(args.out, args.size, args.train_steps, args.batch, args.lr)
    backbone = open_codec(ckpt).backbone.eval()
    images = kodak_crops(args.images, args.crop)
    ranks = SMALL_RANKS if args.ranks == "small" else PAPER_RANKS
    runs = {}
    for rpft, points in ((True, [0, *args.steps]), (False, args.steps)):
        name = "rpft" if rpft else "all_patches"
        codec = Codec(backbone, InstanceLoRA(**ranks, rpft=rpft, steps=max(args.steps), max_steps=max(args.steps),
                                               sweep=points), name="mgcf")
        settings = SweepSettings(points=[{"steps": t} for t in points], save_bitstreams=False, label=f"CALLIC ({name})")
        runs[name] = evaluate(codec, {"kodak": images}, args.out / name, settings)["kodak"]
    base = runs["rpft"]
    t0_enc = base["results"]["encoding_time"][0]
    table = {"T=0 (MGCF)": {"bpsp": base["results"]["bpsp"][0], "encode_s": t0_enc,
                            "decode_s": base["results"]["decoding_time"][0]}}
    for name, res in runs.items():
        for i, t in enumerate(res["results"]["steps"]):
            if t:
                table[f"T={int(t)} {name}"] = {"bpsp": res["results"]["bpsp"][i],
                                               "encode_s": res["results"]["encoding_time"][i],
                                               "adaptation_s": res["results"]["encoding_time"][i] - t0_enc,
                                               "decode_s": res["results"]["decoding_time"][i]}
    payload = {
        "settings": vars(args) | {"out": str(args.out), "checkpoint": str(ckpt),
                                  "parameters": sum(p.numel() for p in backbone.parameters()),
                                  "increment_entries": codec.control.increment_parameters()},
        "kodak_crops": table,
        "classical": base["meta"]["classical"],
        "per_image_gain_largest_T_rpft": _gains(args.out / "rpft" / "per_image.csv", len(args.steps)),
        "cci": cci_speedup(backbone, image_crop(args.cci_size)),
        "paper_kodak_full_images": PAPER,
    }
    path = write_json(args.name, payload, RESULTS_DIR)
    print(json.dumps({k: payload[k] for k in ("kodak_crops", "classical", "cci")}, indent=2))
    return path


def _gains(per_image_csv: Path, last_point: int) -> dict[str, float]:
    """bpsp(T = 0) − bpsp(largest T) per image, from the RPFT run's per-image table."""
    with per_image_csv.open() as f:
        return {r["image"]: round(float(r["gain_bpsp"]), 4) for r in csv.DictReader(f) if int(r["point"]) == last_point}


if __name__ == "__main__":
    main()

"""Small-scale replication of Control-GIC: one VQGAN, many rates, statistical coding, rate control.

Trains a tiny VQGAN with the VQ-GAN recipe (``experiment=control_gic``) on the BSDS500 training
images of ../shared/data, then on Kodak: the bpp–LPIPS and bpp–PSNR curves across the query-table
ratios (real bitstreams, from the RD sweep), the saving of statistical over uniform-frequency
Huffman coding of the indices, raw vs adaptive mask coding, eq. 12–13's theoretical bpp against the
real one, and the error of target-bpp coding. Defaults fit in about 30 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, ROOT, run_py, write_json
from ctrlic.codecs.backbones.grain_masks import GRAINS
from ctrlic.codecs.backbones.vqgan import native_tokens
from ctrlic.codecs.control.granularity import theoretical_bpp
from ctrlic.codecs.huffman import HuffmanCode, encode_mask
from ctrlic.codecs.rate_search import search_target
from ctrlic.datamodules.image_io import list_images, load_rgb8, to_tensor
from ctrlic.evaluation.plot import plot_rd
from ctrlic.evaluation.results import load_results
from ctrlic.lightning_modules.checkpoint import open_codec

SHARED = ROOT.parent / "shared" / "data"
#: target bpps for rate control, as fractions of the way between an image's lowest and highest rate
TARGET_FRACTIONS = (0.2, 0.5, 0.8)


def train(args: argparse.Namespace, run_dir: Path) -> float | None:
    if args.resume and (run_dir / "checkpoints" / "last.ckpt").is_file():
        return None
    overrides = [
        "experiment=control_gic", "data=kodak", f"data.train_dir={args.train_dir}",
        f"data.eval_sets.kodak={args.kodak}", f"data.eval_limit={args.images}", "data.num_workers=0",
        f"data.crop_size={args.crop}", f"data.batch_size={args.batch}", f"backbone.size={args.size}",
        f"module.lr={args.lr}", f"module.discriminator.ndf={args.ndf}", "perceptual_pretrained=false",
        f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}", "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false", "eval.save_bitstreams=false",
        f"hydra.run.dir={run_dir}",
    ]
    return run_py(*overrides, log=run_dir / "log.txt")


def coding_breakdown(codec, x: torch.Tensor, ratios: dict[str, float]) -> dict[str, float]:
    """Bits of one image at ``ratios``: statistical vs uniform Huffman indices, raw vs adaptive masks."""
    backbone = codec.backbone
    codec.set_knobs(ratios)
    x_signed = x * 2 - 1
    with torch.no_grad():
        masks = backbone.grain_masks(x_signed)
        _, _, indices = backbone.quantize_image(x_signed, masks)
    uniform = HuffmanCode.uniform(backbone.quantize.counts.numel())
    stat_bytes = uni_bytes = 0
    for grain, factor in zip(masks, (4, 2, 1), strict=True):
        tokens = indices[:, ::factor, ::factor][grain[:, 0]].numpy()
        stat_bytes += -(-backbone.huffman.bits(tokens) // 8)
        uni_bytes += -(-uniform.bits(tokens) // 8)
    mask_c, mask_m = masks[0][0, 0].numpy(), masks[1][0, 0].numpy()
    covered = np.kron(mask_c, np.ones((2, 2), dtype=bool))
    mask_bytes = {m: len(encode_mask(mask_c, np.ones_like(mask_c), m)) + len(encode_mask(mask_m, ~covered, m))
                  for m in ("raw", "adaptive", "best")}
    total = len(codec.compress(x, ratios))
    pixels = x[0, 0].numel()
    return {"bpp": 8 * total / pixels, "index_bits_statistical": 8 * stat_bytes, "index_bits_uniform": 8 * uni_bytes,
            **{f"mask_bits_{m}": 8 * b for m, b in mask_bytes.items()},
            "tokens": int(native_tokens(indices, masks).numel())}


def analyse(run_dir: Path, kodak: Path, n_images: int) -> dict:
    codec = open_codec(run_dir / "checkpoints" / "last.ckpt")
    images = [to_tensor(load_rgb8(p)[0])[None] for p in list_images(kodak)[:n_images]]
    length = codec.backbone.mean_code_length()
    rows = [dict(zip(GRAINS, row, strict=True)) for row in codec.control.table]
    per_row = []
    for ratios in rows:
        parts = [coding_breakdown(codec, x, ratios) for x in images]
        mean = {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}
        pixels = float(np.mean([x[0, 0].numel() for x in images]))
        mean["theoretical_bpp"] = theoretical_bpp(tuple(ratios.values()), length)
        mean["index_saving_percent"] = 100 * (1 - mean["index_bits_statistical"] / mean["index_bits_uniform"])
        mean["bpp_if_uniform_huffman"] = mean["bpp"] + (mean["index_bits_uniform"]
                                                        - mean["index_bits_statistical"]) / pixels
        per_row.append({**ratios, **mean})
    control = []
    for i, x in enumerate(images):
        path = codec.control.rate_path()
        lo, hi = (8 * len(codec.compress(x, path.at(t))) / x[0, 0].numel() for t in (0.0, 1.0))
        for fraction in TARGET_FRACTIONS:
            target = lo + fraction * (hi - lo)
            start = time.perf_counter()
            result = search_target(codec, x, target)
            control.append({"image": i, "target_bpp": target, "bpp": result.bpp, "relative_error": result.relative_error,
                            "encodes": result.encodes, "seconds": time.perf_counter() - start, **result.knobs})
    errors = [c["relative_error"] for c in control]
    return {"mean_code_length_bits": length, "codebook_used": int((codec.backbone.quantize.counts > 0).sum()),
            "rows": per_row, "rate_control": control,
            "rate_control_max_relative_error": max(errors), "rate_control_mean_relative_error": float(np.mean(errors))}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=900, help="VQ-GAN training steps")
    parser.add_argument("--size", default="tiny", help="backbone size (tiny on CPU)")
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4, help="both optimizers (paper: 5e-5 for 0.6M steps)")
    parser.add_argument("--ndf", type=int, default=32, help="discriminator width (paper: 64)")
    parser.add_argument("--images", type=int, default=4, help="Kodak images evaluated (24 = all)")
    parser.add_argument("--train-dir", type=Path, default=SHARED / "bsds500-train")
    parser.add_argument("--kodak", type=Path, default=SHARED / "kodak")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "replicate_control_gic")
    parser.add_argument("--resume", action="store_true", help="reuse a trained model in --out")
    args = parser.parse_args(argv)
    run_dir = args.out / "train"
    start = time.perf_counter()
    train_seconds = train(args, run_dir)
    analysis = analyse(run_dir, args.kodak, args.images)
    sweep = load_results(run_dir / "results.json")
    for metric in ("lpips", "psnr-rgb"):
        plot_rd([sweep], args.out / f"rd_{metric}.png", metric=metric, title=f"Control-GIC replication ({args.size})")
    full = next(r for r in analysis["rows"] if r["fine"] == 1.0)
    payload = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - start,
        "rd_sweep": sweep["results"],
        "huffman_saving_at_all_fine_percent": full["index_saving_percent"],
        "bpp_all_fine_statistical_vs_uniform": [full["bpp"], full["bpp_if_uniform_huffman"]],
        **analysis,
        "plots": [str(args.out / "rd_lpips.png"), str(args.out / "rd_psnr-rgb.png")],
    }
    path = write_json("replicate_control_gic", payload)
    print(json.dumps({k: payload[k] for k in ("huffman_saving_at_all_fine_percent", "bpp_all_fine_statistical_vs_uniform",
                                              "mean_code_length_bits", "rate_control_max_relative_error")}, indent=2))
    for r in analysis["rows"]:
        print(f"({r['fine']:.1f}, {r['medium']:.1f}, {r['coarse']:.1f}): bpp {r['bpp']:.4f} "
              f"(theory {r['theoretical_bpp']:.4f}), Huffman saving {r['index_saving_percent']:.1f} %, "
              f"masks raw/adaptive/best {r['mask_bits_raw']:.0f}/{r['mask_bits_adaptive']:.0f}/{r['mask_bits_best']:.0f} bits")
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()

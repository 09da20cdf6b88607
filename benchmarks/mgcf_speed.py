"""MGCF coding speed and CALLIC adaptation cost (issue #10, figures 4 and 5).

* CCI speed-up: the per-step mixture parameters of a crop by cache-then-crop inference (the median of
  ``--cci-repeats`` runs) vs a full masked forward at every one of the 3P − 2 scan steps (the naive
  decoder, timed once over all steps: nothing is extrapolated), plus the full encode and decode times.
* RPFT: adaptation time (encode minus the plain encode) and bpsp of CALLIC's per-image fine-tuning with
  and without rate-guided progressive fine-tuning, at every T of ``--rpft-steps``, on whole images
  (``--rpft-images``), each timing the median of ``--rpft-repeats`` runs with every run's seconds kept.

Random weights unless ``--checkpoint`` (a ctrlic checkpoint or exported codec of an MGCF) is given;
speed does not depend on the weights, bpsp does. Every timing is wall time on one torch thread.
Writes ``benchmarks/results/mgcf_speed.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS_DIR, timed_round_trip, write_json
from ctrlic.codecs.backbones.mgcf import MGCF
from ctrlic.codecs.codec import Codec
from ctrlic.codecs.control.instance_lora import InstanceLoRA
from ctrlic.codecs.lossless import mixture, scan
from ctrlic.codecs.lossless.cci import CachedScan
from ctrlic.datamodules.image_io import load_rgb8
from ctrlic.lightning_modules.checkpoint import open_codec

KODAK = Path(__file__).resolve().parents[1] / "data" / "demo" / "kodak4" / "kodim23.png"
#: CALLIC's placeholder ranks (W_A, W_V r = 8; MLP fc1 r = 4; Tucker (8, 4, 4)) as control config
PAPER_RANKS = {"lora": [{"pattern": r"blocks\.\d+\.mcg\.w_[av]", "rank": 8},
                        {"pattern": r"blocks\.\d+\.mlp\.fc1", "rank": 4}],
               "tucker": [{"pattern": r"blocks\.\d+\.mcg\.dwconv", "ranks": [8, 4, 4]}]}
#: fewer increment entries for small crops: at w = s = 0.05 every coded factor costs ~2 bits
SMALL_RANKS = {"lora": [{"pattern": r"blocks\.\d+\.mcg\.w_[av]", "rank": 2},
                        {"pattern": r"blocks\.\d+\.mlp\.fc1", "rank": 1}],
               "tucker": [{"pattern": r"blocks\.\d+\.mcg\.dwconv", "ranks": [2, 2, 2]}]}


def image_crop(size: int, path: Path = KODAK) -> torch.Tensor:
    img, _ = load_rgb8(path)
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return torch.from_numpy(img[top:top + size, left:left + size].copy()).permute(2, 0, 1)[None].float() / 255


def _cci_seconds(model: MGCF, patches: torch.Tensor, pixels: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    state = CachedScan(model, len(patches))
    for t in range(1, steps + 1):
        rows, cols = state.group(t)
        state.params(t)
        state.write(t, pixels[:, rows, cols])
    return time.perf_counter() - start


def cci_speedup(model: MGCF, x: torch.Tensor, repeats: int = 5) -> dict:
    """Seconds for all steps' parameters by CCI (median of ``repeats``) and by a full forward at every step."""
    x_int = torch.round(x * 255)
    patches, _ = scan.patchify(mixture.normalize(x_int), model.patch_size)
    pixels = torch.round((patches + 1) * 127.5).long().permute(0, 2, 3, 1)
    steps = scan.num_steps(model.patch_size)
    with torch.no_grad():
        cci_runs = [_cci_seconds(model, patches, pixels, steps) for _ in range(repeats)]
        current = torch.zeros_like(patches)
        table = scan.step_table(model.patch_size)
        start = time.perf_counter()
        for t in range(1, steps + 1):
            model.mixture_params(current)
            current = torch.where(table == t, patches, current)
        naive = time.perf_counter() - start
    cci = statistics.median(cci_runs)
    return {"steps": steps, "patches": len(patches), "cci_s": cci, "cci_runs_s": cci_runs, "naive_s": naive,
            "naive_measured_steps": steps, "speedup": naive / cci}


def coding_times(codec: Codec, x: torch.Tensor, knobs: dict | None = None) -> dict:
    data, y, enc, dec = timed_round_trip(codec, x, knobs)
    exact = bool(torch.equal(torch.round(y * 255), torch.round(x * 255)))
    return {"bpsp": 8 * len(data) / x[0].numel(), "encode_s": enc, "decode_s": dec, "bit_exact": exact}


def _median_row(runs: list[dict]) -> dict:
    """One row from repeated codings: median seconds, every run's seconds, the (identical) bpsp."""
    row = {"bpsp": runs[0]["bpsp"], "bit_exact": all(r["bit_exact"] for r in runs), "repeats": len(runs)}
    for key in ("encode_s", "decode_s", "adaptation_s"):
        if key in runs[0]:
            row[key] = statistics.median(r[key] for r in runs)
            row[f"{key[:-2]}_runs_s"] = [r[key] for r in runs]
    return row


def rpft_figure(backbone: MGCF, x: torch.Tensor, steps: list[int], control: dict, repeats: int) -> dict:
    """Adaptation (encode minus plain encode) time and bpsp at each T of ``steps``, RPFT on and off."""
    base_codec = Codec(backbone, name="mgcf")
    base = _median_row([coding_times(base_codec, x) for _ in range(repeats)])
    rows = {"T=0": base}
    for t in steps:
        for rpft in (True, False):
            codec = Codec(backbone, InstanceLoRA(**control, rpft=rpft, steps=t, max_steps=max(t, 500)), name="mgcf")
            runs = []
            for _ in range(repeats):
                run = coding_times(codec, x, {"steps": t})
                run["adaptation_s"] = run["encode_s"] - base["encode_s"]
                runs.append(run)
            rows[f"T={t} {'RPFT' if rpft else 'all patches'}"] = _median_row(runs)
    return rows


def whole_image(path: Path) -> torch.Tensor:
    img, _ = load_rgb8(path)
    return torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255


def load_mgcf(checkpoint: str | None, dim: int, patch: int) -> MGCF:
    if checkpoint:
        return open_codec(checkpoint).backbone.eval()
    torch.manual_seed(0)
    return MGCF(dim=dim, patch_size=patch).eval()


def summary_line(payload: dict) -> str:
    """The figures 4 and 5 as one line of Markdown."""
    cci = payload["cci"]
    line = (f"MGCF CCI speed-up {cci['speedup']:.1f}× on {payload['image']} ({cci['cci_s']:.1f} s, median of "
            f"{len(cci['cci_runs_s'])}, vs {cci['naive_s']:.0f} s for all {cci['steps']} naive steps) [target ≥ 10×]")
    for image, rows in payload.get("rpft", {}).items():
        for t in payload["rpft_steps"]:
            fast, full = rows[f"T={t} RPFT"], rows[f"T={t} all patches"]
            line += (f"; RPFT on {image} at T={t}: adaptation {fast['adaptation_s']:.1f} s vs {full['adaptation_s']:.1f} s "
                     f"({fast['adaptation_s'] / full['adaptation_s']:.2f}×), bpsp {fast['bpsp']:.3f} vs "
                     f"{full['bpsp']:.3f} (T=0: {rows['T=0']['bpsp']:.3f})")
    return line


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="ctrlic checkpoint or exported codec of an MGCF")
    parser.add_argument("--dim", type=int, default=128, help="width of a random-weight MGCF (paper: 128)")
    parser.add_argument("--patch", type=int, default=64, help="P of a random-weight MGCF (paper: 64)")
    parser.add_argument("--size", type=int, default=256, help="square crop of kodim23 for the CCI figure")
    parser.add_argument("--cci-repeats", type=int, default=5, help="CCI runs timed (the median is reported)")
    parser.add_argument("--rpft-images", type=Path, nargs="*", default=[KODAK],
                        help="whole images for the RPFT figure (none: skip)")
    parser.add_argument("--rpft-steps", type=int, nargs="+", default=[10, 50], help="T of the RPFT figure (paper: 50)")
    parser.add_argument("--rpft-repeats", type=int, default=3, help="codings timed per setting (median reported)")
    parser.add_argument("--name", default="mgcf_speed")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_mgcf(args.checkpoint, args.dim, args.patch)
    x = image_crop(args.size)
    payload = {"model": {"dim": model.dim, "patch": model.patch_size,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "checkpoint": args.checkpoint}, "image": f"kodim23 centre {args.size}x{args.size}",
               "threads": 1, "cci": cci_speedup(model, x, args.cci_repeats),
               "coding": coding_times(Codec(model, name="mgcf"), x)}
    if args.rpft_images:
        payload |= {"rpft_steps": args.rpft_steps, "rpft_ranks": PAPER_RANKS, "rpft_repeats": args.rpft_repeats}
        payload["rpft"] = {}
        for path in args.rpft_images:
            print(f"RPFT on {path.name} at T = {args.rpft_steps}, {args.rpft_repeats} repeats", flush=True)
            payload["rpft"][path.name] = rpft_figure(model, whole_image(path), args.rpft_steps, PAPER_RANKS,
                                                     args.rpft_repeats)
    payload["markdown"] = summary_line(payload)
    path = write_json(args.name, payload, RESULTS_DIR)
    return path


if __name__ == "__main__":
    main()

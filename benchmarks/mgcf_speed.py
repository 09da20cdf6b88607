"""MGCF coding speed and CALLIC adaptation cost (issue #10, figures 4 and 5).

* CCI speed-up: the per-step mixture parameters of a whole image by cache-then-crop inference vs a
  full masked forward at every scan step (the naive loop; timed on ``--naive-steps`` steps and
  scaled to all 3P − 2), plus the full encode and decode times.
* RPFT: adaptation time and bpsp with and without rate-guided progressive fine-tuning.

Random weights unless ``--checkpoint`` (a ctrlic checkpoint or exported codec of an MGCF) is given;
speed does not depend on the weights, bpsp does. Writes ``benchmarks/results/mgcf_speed.json``.
"""

from __future__ import annotations

import argparse
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


def image_crop(size: int, path: Path = KODAK) -> torch.Tensor:
    img, _ = load_rgb8(path)
    top, left = (img.shape[0] - size) // 2, (img.shape[1] - size) // 2
    return torch.from_numpy(img[top:top + size, left:left + size].copy()).permute(2, 0, 1)[None].float() / 255


def cci_speedup(model: MGCF, x: torch.Tensor, naive_steps: int) -> dict:
    """Seconds for all steps' parameters by CCI and (scaled from ``naive_steps``) by full forwards."""
    x_int = torch.round(x * 255)
    patches, _ = scan.patchify(mixture.normalize(x_int), model.patch_size)
    pixels = torch.round((patches + 1) * 127.5).long().permute(0, 2, 3, 1)
    steps = scan.num_steps(model.patch_size)
    with torch.no_grad():
        start = time.perf_counter()
        state = CachedScan(model, len(patches))
        for t in range(1, steps + 1):
            rows, cols = state.group(t)
            state.params(t)
            state.write(t, pixels[:, rows, cols])
        cci = time.perf_counter() - start
        current = torch.zeros_like(patches)
        table = scan.step_table(model.patch_size)
        start = time.perf_counter()
        for t in range(1, naive_steps + 1):
            model.mixture_params(current)
            current = torch.where(table == t, patches, current)
        naive = (time.perf_counter() - start) / naive_steps * steps
    return {"steps": steps, "patches": len(patches), "cci_s": cci, "naive_s": naive,
            "naive_measured_steps": naive_steps, "speedup": naive / cci}


def coding_times(codec: Codec, x: torch.Tensor, knobs: dict | None = None) -> dict:
    data, y, enc, dec = timed_round_trip(codec, x, knobs)
    exact = bool(torch.equal(torch.round(y * 255), torch.round(x * 255)))
    return {"bpsp": 8 * len(data) / x[0].numel(), "encode_s": enc, "decode_s": dec, "bit_exact": exact}


def rpft_figure(backbone: MGCF, x: torch.Tensor, steps: int, control: dict) -> dict:
    """Adaptation (encode minus plain encode) time and bpsp at T = ``steps``, RPFT on and off."""
    base = coding_times(Codec(backbone, name="mgcf"), x)
    rows = {"T=0": base}
    for rpft in (True, False):
        codec = Codec(backbone, InstanceLoRA(**control, rpft=rpft, steps=steps, max_steps=max(steps, 500)),
                      name="mgcf")
        row = coding_times(codec, x, {"steps": steps})
        row["adaptation_s"] = row["encode_s"] - base["encode_s"]
        rows[f"T={steps} {'RPFT' if rpft else 'all patches'}"] = row
    return rows


def load_mgcf(checkpoint: str | None, dim: int, patch: int) -> MGCF:
    if checkpoint:
        return open_codec(checkpoint).backbone.eval()
    torch.manual_seed(0)
    return MGCF(dim=dim, patch_size=patch).eval()


def summary_line(payload: dict, steps: int) -> str:
    """The figures 4 and 5 as one line of Markdown."""
    cci = payload["cci"]
    line = (f"MGCF CCI speed-up {cci['speedup']:.1f}× on {payload['image']} ({cci['cci_s']:.1f} s vs "
            f"{cci['naive_s']:.0f} s) [target ≥ 10×]")
    rpft = payload.get("rpft")
    if rpft:
        fast, full = rpft[f"T={steps} RPFT"], rpft[f"T={steps} all patches"]
        line += (f"; RPFT at T={steps}: adaptation {fast['adaptation_s'] / full['adaptation_s']:.2f}× the time of "
                 f"all patches, bpsp {fast['bpsp']:.3f} vs {full['bpsp']:.3f} [target ≤ 0.8× at ≤ +0.1 %]")
    return line


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="ctrlic checkpoint or exported codec of an MGCF")
    parser.add_argument("--dim", type=int, default=128, help="width of a random-weight MGCF (paper: 128)")
    parser.add_argument("--patch", type=int, default=64, help="P of a random-weight MGCF (paper: 64)")
    parser.add_argument("--size", type=int, default=256, help="square crop of kodim23 for the CCI figure")
    parser.add_argument("--naive-steps", type=int, default=6, help="full-forward steps timed (then scaled)")
    parser.add_argument("--rpft-size", type=int, default=128, help="square crop for the RPFT figure (0: skip)")
    parser.add_argument("--rpft-steps", type=int, default=10, help="T of the RPFT figure (paper: 50)")
    parser.add_argument("--name", default="mgcf_speed")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_mgcf(args.checkpoint, args.dim, args.patch)
    x = image_crop(args.size)
    payload = {"model": {"dim": model.dim, "patch": model.patch_size,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "checkpoint": args.checkpoint}, "image": f"kodim23 centre {args.size}x{args.size}",
               "threads": 1, "cci": cci_speedup(model, x, args.naive_steps),
               "coding": coding_times(Codec(model, name="mgcf"), x)}
    if args.rpft_size:
        payload["rpft"] = rpft_figure(model, image_crop(args.rpft_size), args.rpft_steps, PAPER_RANKS)
    payload["markdown"] = summary_line(payload, args.rpft_steps)
    path = write_json(args.name, payload, RESULTS_DIR)
    return path


if __name__ == "__main__":
    main()

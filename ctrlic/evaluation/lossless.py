"""The lossless evaluation: real bitstreams decoded bit-exactly, bpsp per knob setting, classical codecs
(PNG, JPEG 2000, WebP, JPEG XL lossless) on the same images, the per-image gain of adaptation
(e.g. CALLIC's T > 0 over MGCF's T = 0), encode/decode times, and a plot."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ctrlic.codecs.codec import Codec
from ctrlic.evaluation.classical import LOSSLESS_CODECS, lossless_bpsp, versions
from ctrlic.evaluation.results import make_results, write_results
from ctrlic.evaluation.sweep import SweepSettings, code_through_file, select_points, write_csv
from ctrlic.lightning_modules.lossless import bits_per_subpixel

log = logging.getLogger("ctrlic")


class LosslessMismatchError(ValueError):
    """A decoded image differs from the input: the codec is not bit-exact on this machine."""


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] → (H, W, 3) uint8."""
    return torch.round(x[0].clamp(0, 1) * 255).byte().permute(1, 2, 0).contiguous().numpy()


def code_image(codec: Codec, x: torch.Tensor, knobs: Mapping, path: Path, keep: bool) -> dict[str, float]:
    """Compress to a file, decode the file, insist on equality; bpsp from the file's length."""
    data, x_hat, enc, dec = code_through_file(codec, x, knobs, path, keep)
    if not np.array_equal(to_uint8(x_hat), to_uint8(x)):
        raise LosslessMismatchError(f"{path.name}: decoded image differs from the input at knobs {dict(knobs)}")
    return {"bpsp": 8 * len(data) / x[0].numel(), "encoding_time": enc, "decoding_time": dec}


def sweep_lossless_set(codec: Codec, images: Iterable[Mapping], points: list[dict], out_dir: Path, set_name: str,
                       keep: bool) -> tuple[list[dict], list[dict], dict[str, float]]:
    """Every image at every knob setting, plus the classical codecs; returns (means, per-image rows, classical)."""
    rows, classical = [], {c: [] for c in LOSSLESS_CODECS}
    device = next(codec.parameters()).device
    for item in images:
        x = item["x"].to(device)
        name = item["name"][0] if isinstance(item["name"], list | tuple) else item["name"]
        img = to_uint8(x.cpu())
        ref = {f"{c}_bpsp": lossless_bpsp(img, c) for c in LOSSLESS_CODECS}
        for c in LOSSLESS_CODECS:
            classical[c].append(ref[f"{c}_bpsp"])
        with torch.no_grad():
            codec.set_knobs(None)
            estimate = bits_per_subpixel(codec(x), x).item()
        first = None
        for i, knobs in enumerate(points):
            path = out_dir / "bitstreams" / set_name / f"point{i:02d}" / f"{Path(name).stem}.ctl"
            row = code_image(codec, x, knobs, path, keep)
            first = row["bpsp"] if first is None else first
            rows.append({"image": name, "point": i, **knobs, **row, "gain_bpsp": first - row["bpsp"],
                         "bpsp_est": estimate, **ref})
    means = []
    for i, knobs in enumerate(points):
        mine = [r for r in rows if r["point"] == i]
        means.append({k: float(np.mean([r[k] for r in mine])) for k in ("bpsp", "encoding_time", "decoding_time")}
                     | {k: float(v) for k, v in knobs.items()})
    return means, rows, {c: float(np.mean(v)) for c, v in classical.items()}


def run_lossless_sweep(codec: Codec, eval_sets: Mapping[str, Iterable[Mapping]], out_dir: str | Path,
                       settings: SweepSettings) -> dict[str, dict]:
    """Write ``results.json`` (``results.bpsp`` per knob setting), ``per_image.csv`` and ``bpsp.png``
    for the first set (``_<set>`` suffixes for the others); returns {set name: results}."""
    out_dir = Path(out_dir)
    codec.prepare()
    points = select_points(settings.points or codec.control.sweep_points() or [{}], settings.max_points)
    label = settings.label or codec.name
    outputs = {}
    for n, (set_name, images) in enumerate(eval_sets.items()):
        means, rows, classical = sweep_lossless_set(codec, images, points, out_dir, set_name,
                                                    settings.save_bitstreams)
        gains = [float(np.mean([r["gain_bpsp"] for r in rows if r["point"] == i])) for i in range(len(points))]
        meta = {
            "dataset": set_name,
            "codec": codec.name,
            "weights_fingerprint": codec.fingerprint.hex(),
            "knobs": [k.name for k in codec.knobs],
            "points": points,
            "num_images": len(rows) // len(points),
            "bpsp_est": float(np.mean([r["bpsp_est"] for r in rows])),
            "gain_bpsp_vs_first_point": gains,
            "classical": classical,
            "classical_versions": versions(),
            "bit_exact": True,
            **settings.extra_meta,
        }
        results = make_results(label, "ctrlic lossless, real bitstreams (constriction range coder), decoded "
                               "bit-exactly", means, meta)
        suffix = "" if n == 0 else f"_{set_name}"
        write_results(out_dir / f"results{suffix}.json", results)
        write_csv(out_dir / f"per_image{suffix}.csv", rows)
        plot_bpsp(results, out_dir / f"bpsp{suffix}.png", f"{label} on {set_name}")
        outputs[set_name] = results
    return outputs


def plot_bpsp(results: dict, path: Path, title: str) -> Path:
    """bpsp at each knob setting (x: the knob's value when there is one) beside the classical codecs."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    knobs = results["meta"]["knobs"]
    bpsp = results["results"]["bpsp"]
    xs = results["results"][knobs[0]] if len(knobs) == 1 else list(range(len(bpsp)))
    ax.plot(xs, bpsp, "o-", label=results["name"])
    for i, (codec, value) in enumerate(results["meta"]["classical"].items()):
        ax.axhline(value, color=f"C{i + 1}", linestyle="--", label=f"{codec} (lossless)")
    ax.set_xlabel(knobs[0] if len(knobs) == 1 else "knob setting")
    ax.set_ylabel("bits per sub-pixel")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def report_lossless(results: dict[str, dict], out_dir: Path, loggers, step: int = 0) -> None:
    """Log each set's bpsp per knob setting beside the classical codecs, and where the files are."""
    for n, (set_name, res) in enumerate(results.items()):
        suffix = "" if n == 0 else f"_{set_name}"
        metrics = {f"lossless/{set_name}/bpsp_{i}": v for i, v in enumerate(res["results"]["bpsp"])}
        metrics |= {f"lossless/{set_name}/{c}_bpsp": v for c, v in res["meta"]["classical"].items()}
        for logger in loggers:
            logger.log_metrics(metrics, step=step)
            logger.save()
        points = ", ".join(f"{p or 'default'}: {b:.3f}" for p, b in zip(res["meta"]["points"], res["results"]["bpsp"],
                                                                        strict=True))
        classical = ", ".join(f"{c} {v:.3f}" for c, v in res["meta"]["classical"].items())
        log.info("lossless on %s: bpsp %s (classical: %s)", set_name, points, classical)
        log.info("results: %s", out_dir / f"results{suffix}.json")
        log.info("plot: %s", out_dir / f"bpsp{suffix}.png")

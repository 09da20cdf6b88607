"""The lossless evaluation: real bitstreams decoded bit-exactly, bpsp per knob setting, classical codecs
(PNG, JPEG 2000, WebP, JPEG XL lossless) on the same images, the per-image gain of adaptation
(e.g. CALLIC's T > 0 over MGCF's T = 0), encode/decode times, and a plot.

``code_unit`` codes one image into records (``evaluation.records``); ``merge_set`` builds a set's results
from the records alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ctrlic.codecs.codec import Codec
from ctrlic.datamodules.image_io import to_uint8
from ctrlic.evaluation.classical import LOSSLESS_CODECS, lossless_bpsp, versions
from ctrlic.evaluation.files import bitstream_file, code_through_file, unpack_item
from ctrlic.evaluation.records import SetJob, image_digest
from ctrlic.evaluation.results import make_results
from ctrlic.evaluation.settings import SweepSettings
from ctrlic.metrics.quality import bits_per_subpixel

#: what this evaluation is called in log lines
SWEEP = "lossless sweep"


class LosslessMismatchError(ValueError):
    """A decoded image differs from the input: the codec is not bit-exact on this machine."""


def code_image(codec: Codec, x: torch.Tensor, knobs: Mapping, path: Path, keep: bool) -> dict[str, float]:
    """Compress to a file, decode the file, insist on equality; bpsp from the file's length."""
    data, x_hat, enc, dec = code_through_file(codec, x, knobs, path, keep)
    if not np.array_equal(to_uint8(x_hat), to_uint8(x)):
        raise LosslessMismatchError(f"{path.name}: decoded image differs from the input at knobs {dict(knobs)}")
    return {"bpsp": 8 * len(data) / x[0].numel(), "encoding_time": enc, "decoding_time": dec}


KIND = "lossless"


def measured(settings: SweepSettings) -> dict:
    """The settings the records of a lossless sweep depend on (besides codec, knobs and image): none."""
    return {}


class Tools:
    """Nothing to build per coding process (the classical codecs are stateless)."""

    def __init__(self, settings: SweepSettings, device: str | torch.device | None = None) -> None:
        self.device = device


def code_unit(codec: Codec, job: SetJob, index: int, item: Mapping, tools: Tools) -> int:
    """One image: the classical codecs and the model's estimate once, then every knob setting whose record is
    missing or stale; returns how many knob settings were coded."""
    x, name = unpack_item(item)
    store, digest = job.store, image_digest(x)
    image = store.read(store.image_path(job.set_name, index))
    if not image or image.get("digest") != digest:
        img = to_uint8(x.cpu())
        with torch.no_grad():
            codec.set_knobs(None)
            estimate = bits_per_subpixel(codec(x), x).item()
        image = {"image": name, "index": index, "digest": digest, "shape": list(x.shape[-2:]),
                 "bpsp_est": estimate, "classical": {f"{c}_bpsp": lossless_bpsp(img, c) for c in LOSSLESS_CODECS}}
        store.write(store.image_path(job.set_name, index), image)
    coded = 0
    for i, knobs in enumerate(job.points):
        path = store.point_path(job.set_name, index, i)
        record = store.read(path)
        if record and record["key"] == job.keys[i] and record["digest"] == digest:
            continue
        row = code_image(codec, x, knobs, bitstream_file(job.out_dir, job.set_name, i, name), job.keep_bitstreams)
        store.write(path, {"key": job.keys[i], "digest": digest, "image": name, "index": index, "point": i,
                           "knobs": dict(knobs), "row": row})
        coded += 1
    return coded


def merge_set(codec: Codec, job: SetJob, n_images: int,
              settings: SweepSettings) -> tuple[dict, list[dict]]:
    """One set's results (``results.bpsp`` per setting and ``meta``) and per-image rows, from its records alone."""
    points, store = job.points, job.store
    rows, classical = [], {c: [] for c in LOSSLESS_CODECS}
    for index in range(n_images):
        image = store.read(store.image_path(job.set_name, index))
        for c in LOSSLESS_CODECS:
            classical[c].append(image["classical"][f"{c}_bpsp"])
        first = None
        for i, knobs in enumerate(points):
            row = store.read(store.point_path(job.set_name, index, i))["row"]
            first = row["bpsp"] if first is None else first
            rows.append({"image": image["image"], "point": i, **knobs, **row, "gain_bpsp": first - row["bpsp"],
                         "bpsp_est": image["bpsp_est"], **image["classical"]})
    means = []
    for i, knobs in enumerate(points):
        mine = [r for r in rows if r["point"] == i]
        means.append({k: float(np.mean([r[k] for r in mine])) for k in ("bpsp", "encoding_time", "decoding_time")}
                     | {k: float(v) for k, v in knobs.items()})
    gains = [float(np.mean([r["gain_bpsp"] for r in rows if r["point"] == i])) for i in range(len(points))]
    meta = {
        "dataset": job.set_name,
        "codec": codec.name,
        "weights_fingerprint": codec.fingerprint.hex(),
        "knobs": [k.name for k in codec.knobs],
        "points": points,
        "num_images": n_images,
        "bpsp_est": float(np.mean([r["bpsp_est"] for r in rows])),
        "gain_bpsp_vs_first_point": gains,
        "classical": {c: float(np.mean(v)) for c, v in classical.items()},
        "classical_versions": versions(),
        "bit_exact": True,
        **settings.extra_meta,
    }
    results = make_results(settings.label or codec.name, "ctrlic lossless, real bitstreams (constriction range "
                           "coder), decoded bit-exactly", means, meta)
    return results, rows


def plot(results: dict, path: Path, settings: SweepSettings) -> Path:
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
    ax.set_title(f"{results['name']} on {results['meta']['dataset']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def describe(results: dict) -> str:
    """One log line: bpsp at each knob setting beside the classical codecs."""
    points = ", ".join(f"{p or 'default'}: {b:.3f}" for p, b in zip(results["meta"]["points"],
                                                                    results["results"]["bpsp"], strict=True))
    classical = ", ".join(f"{c} {v:.3f}" for c, v in results["meta"]["classical"].items())
    return f"bpsp {points} (classical: {classical})"

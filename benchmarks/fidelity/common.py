"""Shared pieces of the golden-file scripts: the input crop, seeded weights, summaries, the case writer.

Only torch, numpy and PIL: the scripts run with the authors' code (and their CompressAI copy, if
they vendor one) first on ``PYTHONPATH``, so nothing here may import ``ctrlic`` or ``compressai``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ROOT / "tests" / "expected" / "fidelity"
#: the one input of every golden case: a textured crop of a bundled Kodak image
CROP_IMAGE = ROOT / "data" / "demo" / "kodak4" / "kodim23.png"
CROP_BOX = (200, 320)  # (top, left) in kodim23 (512 × 768): the parrots' heads and plumage


def parse_args(doc: str, repository: str) -> argparse.Namespace:
    """``--repo`` (the authors' checkout) and ``--commit`` (required when it is not a git checkout)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help=f"a checkout of {repository}")
    parser.add_argument("--commit", default=None, help="its commit (read with git when --repo is a checkout)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default tests/expected/fidelity/...)")
    args = parser.parse_args()
    if args.commit is None:
        try:
            args.commit = subprocess.check_output(["git", "-C", str(args.repo), "rev-parse", "HEAD"], text=True).strip()
        except (OSError, subprocess.CalledProcessError):
            parser.error(f"{args.repo} is not a git checkout: pass --commit SHA")
    sys.path.insert(0, str(args.repo.resolve()))
    return args


def load_crop(height: int, width: int) -> Tensor:
    """(3, height, width) uint8 crop of ``CROP_IMAGE`` at ``CROP_BOX``."""
    top, left = CROP_BOX
    arr = np.asarray(Image.open(CROP_IMAGE).convert("RGB"))[top:top + height, left:left + width]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def to_unit(crop: Tensor) -> Tensor:
    """(1, 3, H, W) float32 in [0, 1], as the codec API takes images."""
    return (crop.to(torch.float32) / 255)[None]


@torch.no_grad()
def fix_weights(model: nn.Module, seed: int) -> None:
    """Seeded, float16-exact weights: constant tensors (norm scales, zero biases) get noise, then
    every float parameter and buffer is rounded to float16 so the weight file can store halves."""
    gen = torch.Generator().manual_seed(seed)
    for _, p in sorted(model.named_parameters()):
        if p.numel() > 1 and torch.all(p == p.flatten()[0]):
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
        elif p.numel() == 1:
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            t.copy_(t.half().float())


def weights_for_file(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict as stored: floats as float16 (exact after ``fix_weights``), integers in the
    narrowest integer type that holds them; loading copies them into the model's own dtypes."""
    out = {}
    for key, value in state.items():
        value = value.detach().cpu().contiguous()
        if value.is_floating_point():
            narrow = value.half()
        elif value.dtype != torch.bool and value.numel():
            narrow = next(value.to(t) for t in (torch.int8, torch.int16, torch.int32, value.dtype)
                          if torch.iinfo(t).min <= int(value.min()) and int(value.max()) <= torch.iinfo(t).max)
        else:
            narrow = value
        if not torch.equal(narrow.to(value.dtype), value):
            raise ValueError(f"{key} does not fit float16 exactly; call fix_weights after changing weights")
        out[key] = narrow.clone()
    return out


def summary(t: Tensor) -> dict:
    """Shape, moments and the md5 of the raw bytes of a tensor (floats with −0 written as +0)."""
    f = t.detach().cpu().to(torch.float64)
    raw = t.detach().cpu().contiguous()
    raw = raw + 0 if raw.is_floating_point() else raw
    return {"shape": list(t.shape), "sum": float(f.sum()), "abs_sum": float(f.abs().sum()),
            "mean": float(f.mean()), "min": float(f.min()), "max": float(f.max()),
            "md5": hashlib.md5(raw.numpy().tobytes()).hexdigest()}


def compressai_info() -> dict:
    """Version and location of the CompressAI on ``sys.path`` (theirs when they vendor one)."""
    import compressai

    return {"compressai": getattr(compressai, "__version__", "?"),
            "compressai_path": str(Path(compressai.__file__).parent)}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


#: the buffers CompressAI's ``update()`` fills in the entropy bottleneck
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def coding_tables(model: nn.Module) -> dict[str, Tensor]:
    """The entropy bottleneck's tables as their code holds them after ``update()``: what a checkpoint
    saved after their evaluation carries, and what their z string was coded with. The Gaussian
    conditional's tables (a function of the fixed scale table, ~0.8 MB) are left out: they are the
    same in every release (their y strings are ours, bit for bit, where the coding order agrees)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
            if k.startswith("entropy_bottleneck.") and k.rsplit(".", 1)[-1] in TABLE_BUFFERS}


def write_case(out: Path, *, meta: Mapping, weights: Mapping[str, Tensor], crop: Tensor,
               outputs: Mapping[str, Tensor], expected: Mapping, tables: Mapping[str, Tensor] | None = None) -> None:
    """Write ``weights.safetensors``, ``input.safetensors``, ``outputs.safetensors``, ``tables.safetensors``
    when given (files that cannot run code; tables exact in their own dtypes) and ``expected.json``."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(weights_for_file(weights), str(out / "weights.safetensors"))
    if tables is not None:
        save_file({k: v.contiguous() for k, v in tables.items()}, str(out / "tables.safetensors"))
    save_file({"crop": crop.clone().contiguous()}, str(out / "input.safetensors"),
              metadata={"image": str(CROP_IMAGE.relative_to(ROOT)), "box": json.dumps(list(CROP_BOX))})
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in outputs.items()}, str(out / "outputs.safetensors"))
    doc = {**meta,
           "environment": {"python": platform.python_version(), "torch": torch.__version__,
                           "numpy": np.__version__, **meta.get("environment", {})},
           "files": {"weights.safetensors": f"{(out / 'weights.safetensors').stat().st_size} bytes; floats as float16, "
                                   "integers narrowed (exact); load copies them into the model's dtypes",
                     "input.safetensors": "uint8 crop (3, H, W)", "outputs.safetensors": ", ".join(sorted(outputs)),
                     **({"tables.safetensors": "their entropy bottleneck's CDF tables after update(), as they coded z "
                                      "with them (int32)"} if tables is not None else {})},
           **expected}
    (out / "expected.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out} ({(out / 'weights.safetensors').stat().st_size} byte weights)")


@torch.no_grad()
def run_lic(model: nn.Module, x: Tensor, window: int | None = None) -> tuple[dict[str, Tensor], dict]:
    """A CompressAI-style model's forward (eval: rounding) and its own compress/decompress round trip.

    Returns the tensors (forward x̂, likelihoods, decoded x̂) and the payload: lengths and md5 of the
    y and z strings, and the estimated bits of the forward likelihoods. With ``window``, images are
    kept as their central ``window``×``window`` pixels and an 8×8 average-pooled copy (summaries
    still cover the whole tensor), to keep the files small.
    """
    model.eval()
    out = model(x)
    model.update(force=True)
    coded = model.compress(x)
    decoded = model.decompress(coded["strings"], coded["shape"])["x_hat"]
    y_string, z_string = coded["strings"][0][0], coded["strings"][1][0]
    images = {"forward_x_hat": out["x_hat"], "decoded_x_hat": decoded}
    tensors = {"likelihoods_y": out["likelihoods"]["y"], "likelihoods_z": out["likelihoods"]["z"]}
    for name, image in images.items():
        if window is None:
            tensors[name] = image
        else:
            tensors[f"{name}_window"] = central(image, window)
            tensors[f"{name}_pooled"] = torch.nn.functional.avg_pool2d(image, 8)
    bits = {k: float(-torch.log2(v.double()).sum()) for k, v in out["likelihoods"].items()}
    payload = {"y": {"bytes": len(y_string), "md5": md5(y_string)},
               "z": {"bytes": len(z_string), "md5": md5(z_string)}, "estimated_bits": bits}
    summaries = {k: summary(v) for k, v in {**images, **tensors}.items()}
    return tensors, {"payload": payload, "summaries": summaries, "window": window}


def central(image: Tensor, size: int) -> Tensor:
    """The central ``size``×``size`` pixels of (…, H, W)."""
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top:top + size, left:left + size]

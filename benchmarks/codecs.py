"""The codecs the benchmarks measure, built from the real Hydra configs, and a short fit to make them realistic.

A new codec joins every generic benchmark (coding overhead, rate control, memory) with one line in
``BENCH_CODECS``: its name and the ``run.py`` overrides that select it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from benchmarks.common import ROOT
from ctrlic.codecs.build import build_codec
from ctrlic.codecs.codec import Codec
from ctrlic.datamodules.image_io import list_images, load_rgb8, to_tensor
from ctrlic.lightning_modules.checkpoint import open_codec
from ctrlic.lightning_modules.losses import MSERateLoss

#: benchmark name -> run.py overrides; the CPU set uses the tiny sizes
BENCH_CODECS: dict[str, tuple[str, ...]] = {
    "cheng2020_attn": ("backbone=cheng2020_attn", "backbone.size=tiny", "control=none"),
    "stf": ("backbone=stf", "backbone.size=tiny", "control=none"),
    "tcm": ("backbone=tcm", "backbone.size=tiny", "control=none"),
    "stf+alpha_adapters": ("backbone=stf", "backbone.size=tiny", "control=alpha_adapters_stf"),
    "cheng2020_attn+alpha_adapters": ("backbone=cheng2020_attn", "backbone.size=tiny",
                                      "control=alpha_adapters_cheng"),
    "tcm+alpha_adapters": ("backbone=tcm", "backbone.size=tiny", "control=alpha_adapters_tcm"),
    "tic": ("backbone=tic", "backbone.size=tiny", "control=none"),
    "tic+layer_prompts": ("backbone=tic", "backbone.size=tiny", "control=layer_prompts_tic"),
    "control_gic": ("backbone=vqgan", "backbone.size=tiny", "control=granularity"),
    "mgcf": ("backbone=mgcf", "backbone.size=tiny", "control=none"),
    "callic": ("backbone=mgcf", "backbone.size=tiny", "control=instance_lora"),
}
#: codecs whose coding cost grows with per-pixel scans or per-image fine-tuning: benchmarked on small crops
SLOW_CODECS: tuple[str, ...] = ("mgcf", "callic")
#: the paper-size variants (``--gpu``)
PAPER_CODECS: dict[str, tuple[str, ...]] = {
    "cheng2020_attn": ("backbone=cheng2020_attn", "backbone.size=q6", "control=none"),
    "stf": ("backbone=stf", "backbone.size=paper", "control=none"),
    "tcm": ("backbone=tcm", "backbone.size=small_paper", "control=none"),
    "stf+alpha_adapters": ("backbone=stf", "backbone.size=paper", "control=alpha_adapters_stf"),
    "tcm+alpha_adapters": ("backbone=tcm", "backbone.size=small_paper", "control=alpha_adapters_tcm"),
    "tic": ("backbone=tic", "backbone.size=q1_4", "control=none"),
    "control_gic": ("backbone=vqgan", "backbone.size=paper", "control=granularity"),
    "mgcf": ("backbone=mgcf", "backbone.size=paper", "control=none"),
}
KODAK4 = ROOT / "data" / "demo" / "kodak4"
TRAIN_DIR = ROOT / "data" / "demo" / "train"


class BenchmarkInputError(ValueError):
    """A benchmark asked for a codec or images that do not exist."""


def codec_overrides(name: str, paper: bool = False) -> tuple[str, ...]:
    table = PAPER_CODECS if paper else BENCH_CODECS
    if name not in table:
        raise BenchmarkInputError(f"unknown benchmark codec {name!r}; choose from {', '.join(table)}")
    return table[name]


def build_bench_codec(name: str, paper: bool = False, seed: int = 0) -> Codec:
    """Build one codec of the registry from ``conf/`` (random weights unless the overrides load some)."""
    torch.manual_seed(seed)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(codec_overrides(name, paper)))
    return build_codec(cfg.backbone, cfg.control)


def knob_points(codec: Codec, count: int) -> list[dict[str, float]]:
    """Up to ``count`` knob settings spread over the sweep (both ends kept); ``[{}]`` for fixed rate."""
    points = codec.control.sweep_points() or [{}]
    if len(points) <= count:
        return points
    step = (len(points) - 1) / max(1, count - 1)
    return [points[round(i * step)] for i in range(count)]


def load_images(folder: str | Path = KODAK4, crop: int = 0, limit: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """(name, (1, 3, H, W) tensor) for the images of ``folder``, top-left-cropped to ``crop`` (0: whole)."""
    paths = list_images(folder)[:limit]
    if not paths:
        raise BenchmarkInputError(f"no images in {folder}; point --images at a folder of PNG/JPEG files")
    images = []
    for path in paths:
        x = to_tensor(load_rgb8(path)[0])[None]
        images.append((path.name, x[..., :crop, :crop] if crop else x))
    return images


def random_crops(folder: str | Path, count: int, size: int, seed: int = 0) -> torch.Tensor:
    """``count`` random ``size``×``size`` crops from the images of ``folder``, as one (count, 3, s, s) batch."""
    rng = random.Random(seed)
    sources = [x for _, x in load_images(folder)]
    crops = []
    for _ in range(count):
        x = rng.choice(sources)
        top, left = rng.randrange(x.shape[-2] - size + 1), rng.randrange(x.shape[-1] - size + 1)
        crops.append(x[0, :, top: top + size, left: left + size])
    return torch.stack(crops)


def quick_fit(codec: Codec, steps: int, *, lmbda: float = 0.013, crop: int = 64, batch: int = 4,
              lr: float = 5e-4, seed: int = 0) -> None:
    """A few Adam steps on the bundled training images so the entropy models see real statistics.

    Random weights give latents far from the priors, which would measure the coder on tails it never
    meets in practice. Knob settings are drawn from the sweep; the aux (quantiles) loss is trained too.
    Lossless codecs minimise their rate alone.
    """
    if steps <= 0:
        return
    gen = torch.Generator().manual_seed(seed)
    data = random_crops(TRAIN_DIR, max(batch * 4, 16), crop, seed).to(next(codec.parameters()).device)
    criterion = MSERateLoss()
    params = [p for p in codec.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    points = codec.control.sweep_points() or [{}]
    codec.train()
    for _ in range(steps):
        idx = torch.randint(len(data), (batch,), generator=gen)
        codec.set_knobs(points[int(torch.randint(len(points), (1,), generator=gen))])
        out = codec(data[idx])
        rate = criterion(out, data[idx], lmbda)["bpp" if codec.lossless else "loss"]
        loss = rate + codec.backbone.aux_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    codec.prepare()


def fitted_codec(name: str, steps: int, paper: bool = False, device: str = "cpu") -> Codec:
    """A registry codec after ``steps`` of ``quick_fit``, ready to code."""
    codec = build_bench_codec(name, paper=paper).to(device)
    quick_fit(codec, steps)
    codec.prepare()
    return codec


def trained_codec(path: str | Path, device: str = "cpu") -> Codec:
    """A trained model (ctrlic checkpoint or exported codec), ready to code."""
    codec = open_codec(path).to(device)
    codec.prepare()
    return codec


def run_name(path: str | Path) -> str:
    """``<sweep>/<run>`` of a run's ``checkpoints/*.ckpt`` (the two folders above it), else the file's stem."""
    path = Path(path).resolve()
    if path.parent.name == "checkpoints":
        return f"{path.parents[2].name}/{path.parents[1].name}"
    return path.stem


def codecs_to_measure(names: Sequence[str], checkpoints: Sequence[str] | None, fit_steps: int, paper: bool = False,
                      device: str = "cpu") -> list[tuple[str, Callable[[], Codec]]]:
    """(name, builder) for the trained checkpoints if any are given, else for the registry's codecs briefly fitted."""
    if checkpoints:
        return [(run_name(p), lambda p=p: trained_codec(p, device)) for p in checkpoints]
    return [(name, lambda name=name: fitted_codec(name, fit_steps, paper, device)) for name in names]


def summarise(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of a list of figures."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"median": median, "min": ordered[0], "max": ordered[-1]}

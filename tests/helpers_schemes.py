"""Shared by the gain-unit, QVRF and fitting-matrix tests: tiny codecs composed from ``conf/``, a Kodak
crop, a short multi-λ fit, and a recorder of the latent each side of the coder reconstructs."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ctrlic.codecs.build import build_codec
from ctrlic.codecs.codec import Codec
from ctrlic.datamodules.image_io import list_images, load_rgb8, to_tensor
from tests.conftest import ROOT

#: the Gaussian backbones gain units and QVRF attach to
GAUSSIAN = ("cheng2020_attn", "stf", "tcm", "tic", "tic_hyperprior")
KODAK = ROOT / "data" / "demo" / "kodak4"


def rising(values: list[float]) -> bool:
    """True when every value is larger than the one before."""
    return all(b > a for a, b in itertools.pairwise(values))


def compose_nodes(backbone: str, control: str, *overrides: str) -> tuple[dict, dict | None]:
    """The ``backbone`` (size tiny) and ``control`` config nodes composed from ``conf/``, as plain dicts."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"backbone={backbone}", "backbone.size=tiny", f"control={control}",
                                           "paths.output_dir=/tmp/ctrlic-compose", *overrides])
    control_node = OmegaConf.to_container(cfg.control, resolve=True) if control != "none" else None
    return OmegaConf.to_container(cfg.backbone, resolve=True), control_node


def tiny_codec(backbone: str, control: str, *overrides: str, seed: int = 0) -> Codec:
    """A tiny codec with seeded weights, built from the composed configs."""
    torch.manual_seed(seed)
    return build_codec(*compose_nodes(backbone, control, *overrides))


def kodak_crops(size: int = 64, count: int = 1) -> torch.Tensor:
    """(count, 3, size, size) crops in [0, 1] of the bundled Kodak images, at a fixed textured place."""
    paths = list_images(KODAK)[:count]
    return torch.stack([to_tensor(load_rgb8(p)[0])[:, 200:200 + size, 300:300 + size] for p in paths])


def short_fit(codec: Codec, steps: int = 2, **module_args) -> None:
    """A few multi-λ training steps on two Kodak crops (a briefly trained model)."""
    import lightning as L

    from ctrlic.lightning_modules.multi_lambda import MultiLambdaModule
    from tests.helpers_calice import fit

    L.seed_everything(0, verbose=False)
    fit(MultiLambdaModule(codec, lr=1e-3, scheduler=None, **module_args), kodak_crops(64, 2), steps)
    codec.prepare()


def sizes_after_short_fit(codec: Codec, knob: str, values: tuple[float, ...]) -> list[int]:
    """Bitstream sizes of a Kodak crop at ``values`` of ``knob`` after two multi-λ training steps."""
    short_fit(codec)
    x = kodak_crops(64)
    return [len(codec.compress(x, {knob: v})) for v in values]


def smoke_run_curve(run_dir: Path, knob: str, *overrides: str) -> dict[str, list[float]]:
    """``run.py OVERRIDES debug=smoke data=demo``; checks the RD sweep coded ≥ 5 knob values in rising
    order, with rising bpp, into real bitstream files; returns the results."""
    from tests.conftest import run_cli

    run_cli(*overrides, "debug=smoke", "data=demo", f"hydra.run.dir={run_dir}")
    results = json.loads((run_dir / "results.json").read_text())["results"]
    assert len(results[knob]) >= 5 and results[knob] == sorted(results[knob]), results[knob]
    assert rising(results["bpp"]), results["bpp"]
    assert len(list((run_dir / "bitstreams").rglob("*.ctl"))) == 2 * len(results[knob])  # 2 images per point
    return results


class LatentRecorder:
    """The latent ŷ each side reconstructs: the encoder's ``dequantize(symbols)`` for every symbol block it
    codes, the decoder's ``dequantize`` outputs, in coding order (through ``gaussian_conditional``)."""

    def __init__(self) -> None:
        self.encoder: list[torch.Tensor] = []
        self.decoder: list[torch.Tensor] = []
        self.side: str | None = None

    def same(self) -> bool:
        return len(self.encoder) == len(self.decoder) > 0 and all(
            torch.equal(e, d) for e, d in zip(self.encoder, self.decoder, strict=True))


@contextlib.contextmanager
def recording(codec: Codec) -> Iterator[LatentRecorder]:
    """Wrap the Gaussian conditional's quantize/dequantize for the block; set ``recorder.side`` around coding."""
    conditional = codec.backbone.gaussian_conditional
    quantize, dequantize = conditional.quantize, conditional.dequantize
    recorder = LatentRecorder()

    def recording_quantize(inputs, mode, means=None):
        out = quantize(inputs, mode, means)
        if mode == "symbols" and recorder.side == "encoder":
            recorder.encoder.append(dequantize(out, means))
        return out

    def recording_dequantize(inputs, means=None, dtype=torch.float):
        out = dequantize(inputs, means, dtype)
        if recorder.side == "decoder":
            recorder.decoder.append(out)
        return out

    conditional.quantize, conditional.dequantize = recording_quantize, recording_dequantize
    try:
        yield recorder
    finally:
        del conditional.quantize, conditional.dequantize


def round_trip(codec: Codec, x: torch.Tensor, knobs: dict) -> tuple[LatentRecorder, bytes, torch.Tensor]:
    """Compress and decompress ``x`` recording both sides' latents."""
    with recording(codec) as recorder:
        recorder.side = "encoder"
        data = codec.compress(x, knobs)
        recorder.side = "decoder"
        x_hat = codec.decompress(data)
    return recorder, data, x_hat


def compress_at_target_bpp(codec: Codec, folder: Path) -> tuple[float, float, dict[str, float]]:
    """``ctrlic compress --bpp`` with ``codec`` exported: a target between the knob's ends on a Kodak crop
    (their geometric mean). Returns the target, the written file's bpp and the knobs its header holds;
    the file decodes to the crop's size."""
    from ctrlic.codecs.bitstream import parse
    from ctrlic.codecs.build import export_codec
    from tests.helpers_cli import ctrlic, kodak_crop

    model = export_codec(codec, folder / "model.codec.pt")
    image = kodak_crop(folder / "crop.png")
    x = to_tensor(load_rgb8(image)[0])
    pixels = x.shape[-2] * x.shape[-1]
    (knob,) = codec.knobs
    ends = [8 * len(codec.compress(x, {knob.name: v})) / pixels for v in (knob.low, knob.high)]
    assert max(ends) > 2 * min(ends), ends  # the knob spans a useful rate range
    target = round(math.sqrt(ends[0] * ends[1]), 3)
    proc = ctrlic("compress", image, folder / "out.ctl", "--model", model, "--bpp", target, home=folder / "home")
    assert proc.returncode == 0, proc.stderr
    data = (folder / "out.ctl").read_bytes()
    assert codec.decompress(data).shape == (1, *x.shape)
    return target, 8 * len(data) / pixels, parse(data)[0].knobs

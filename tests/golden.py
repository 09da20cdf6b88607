"""Golden bitstreams: every backbone and one control scheme per family, coded at tiny size.

Each case composes the real configs (``backbone=NAME backbone.size=tiny control=PRESET``), builds
the codec from a fixed seed, gives the control scheme's attached weights seeded non-zero values
(fresh adapters and prompts start at zero and would leave every knob setting identical), and codes
a fixed crop of a bundled Kodak image at each knob setting. ``tests/expected/<case>.json`` holds the
result in CompressAI's results format, with the md5 of each payload (the coded sections, without
the container header, so renaming a config key does not move it), the section lengths, the md5 of
the decoded 8-bit image and the weights fingerprint in ``meta``. ``tests/test_golden.py`` compares.

Regenerate only on purpose (a coder change that is meant to change the bits): ``make golden``,
i.e. ``python -m tests.golden --write``. Coding runs with one torch thread, so the float
reductions, and with them the bits, do not depend on the number of cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ctrlic.utils.threads import single_thread

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = ROOT / "tests" / "expected"
KODAK = ROOT / "data" / "demo" / "kodak4"
SEED = 0
#: standard deviation of the seeded values given to a control scheme's attached parameters
ATTACHED_STD = 0.05


@dataclass(frozen=True)
class Case:
    """One golden codec: configs to compose, the knob settings to code, and the input crop."""

    name: str
    backbone: str
    control: str = "none"
    knobs: tuple[dict[str, float], ...] = ({},)
    overrides: tuple[str, ...] = ()
    image: str = "kodim23.png"
    top: int = 200
    left: int = 300
    size: tuple[int, int] = (64, 64)
    attached: tuple[float, float] = (0.0, ATTACHED_STD)  # mean and std of the seeded attached weights


CASES: tuple[Case, ...] = (
    Case("cheng2020_attn", "cheng2020_attn"),
    Case("stf", "stf"),
    Case("tcm", "tcm"),
    Case("tic", "tic"),
    Case("tic_hyperprior", "tic_hyperprior"),
    Case("mgcf", "mgcf", size=(32, 32)),
    Case("vqgan_granularity", "vqgan", "granularity",
         knobs=({"fine": 0.5, "medium": 0.4, "coarse": 0.1}, {"fine": 0.0, "medium": 0.0, "coarse": 1.0})),
    Case("alpha_adapters_stf", "stf", "alpha_adapters_stf", knobs=({"alpha": 0.25}, {"alpha": 1.0})),
    Case("alpha_adapters_cheng", "cheng2020_attn", "alpha_adapters_cheng",
         knobs=({"alpha": 0.25}, {"alpha": 1.0})),
    Case("alpha_adapters_tcm", "tcm", "alpha_adapters_tcm", knobs=({"alpha": 0.25}, {"alpha": 1.0})),
    Case("beta_adapters_stf", "stf", "beta_adapters_stf",
         knobs=({"alpha": 0.5, "beta": 0.0}, {"alpha": 0.5, "beta": 1.0})),
    Case("layer_prompts_tic", "tic", "layer_prompts_tic", knobs=({"prompt": 0.0}, {"prompt": 5.0}),
         overrides=("control.width=8",)),
    Case("instance_lora_mgcf", "mgcf", "instance_lora", knobs=({"steps": 0.0}, {"steps": 2.0}),
         size=(32, 32)),
    # gains around one (|g| is used), so that y keeps its scale; q between levels and at a level
    Case("gain_units_tcm", "tcm", "gain_units_tcm", knobs=({"q": 2.37}, {"q": 6.0}), attached=(1.0, 0.3)),
    Case("qvrf_stf", "stf", "qvrf", knobs=({"a": 0.7}, {"a": 5.3})),
)


def compose(case: Case) -> tuple[dict, dict | None]:
    """The case's ``backbone`` and ``control`` nodes composed from ``conf/`` as plain dicts."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    overrides = [f"backbone={case.backbone}", "backbone.size=tiny", f"control={case.control}", *case.overrides]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=overrides)
    control = OmegaConf.to_container(cfg.control, resolve=True)
    return OmegaConf.to_container(cfg.backbone, resolve=True), control if case.control != "none" else None


def crop(case: Case) -> torch.Tensor:
    """(1, 3, h, w) crop in [0, 1] of a bundled Kodak image."""
    from ctrlic.datamodules.image_io import load_rgb8

    img, _ = load_rgb8(KODAK / case.image)
    h, w = case.size
    part = torch.from_numpy(img[case.top:case.top + h, case.left:case.left + w].copy())
    return part.permute(2, 0, 1)[None].float() / 255


def build(case: Case):
    """The case's codec with seeded weights (attached control weights seeded non-zero too)."""
    from ctrlic.codecs.build import build_codec

    backbone, control = compose(case)
    torch.manual_seed(SEED)
    codec = build_codec(backbone, control)
    gen = torch.Generator().manual_seed(SEED + 1)
    mean, std = case.attached
    with torch.no_grad():
        for p in codec.control.attached_parameters():
            p.copy_(mean + torch.randn(p.shape, generator=gen) * std)
    codec.prepare()
    return codec


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def run_case(case: Case) -> dict:
    """Code the case's crop at each knob setting; the results dict ``tests/expected`` holds."""
    from ctrlic.codecs.bitstream import unpack
    from ctrlic.evaluation.results import make_results
    from ctrlic.metrics.quality import psnr

    with single_thread():
        codec = build(case)
        x = crop(case)
        points, payloads, sections, decoded, applied = [], [], [], [], []
        for knobs in case.knobs:
            data = codec.compress(x, knobs)
            header, parts = unpack(data)
            x_hat = codec.decompress(data)
            pixels = torch.round(x_hat.clamp(0, 1) * 255).to(torch.uint8)
            bpp = 8 * len(data) / x[0, 0].numel()
            points.append({"bpp": bpp, "bpsp": bpp / 3} if codec.lossless else {"bpp": bpp, "psnr-rgb": psnr(x, x_hat)})
            payloads.append(md5(b"".join(parts)))
            sections.append([len(p) for p in parts])
            decoded.append(md5(pixels.numpy().tobytes()))
            applied.append(header.knobs)
    meta = {
        "backbone": case.backbone, "control": case.control, "overrides": list(case.overrides),
        "size": "tiny", "seed": SEED,
        "input": {"image": f"data/demo/kodak4/{case.image}", "top": case.top, "left": case.left,
                  "height": case.size[0], "width": case.size[1]},
        "fingerprint": codec.fingerprint.hex(),
        "knobs": applied, "payload_md5": payloads, "section_bytes": sections, "decoded_md5": decoded,
    }
    description = f"golden bitstreams: backbone={case.backbone} (tiny), control={case.control}"
    return make_results(case.name, description, points, meta)


def container_golden() -> dict:
    """A fixed header and sections packed by the container, for ``tests/expected/container.json``."""
    from ctrlic.codecs.bitstream import Header, pack

    header = Header(codec="golden", config_hash=bytes(range(4)), fingerprint=bytes(range(8)),
                    knobs={"alpha": 0.25, "beta": 1.0}, height=67, width=45, extras={"side": 1})
    data = pack(header, [b"side", bytes(range(256)), b""])
    return {"name": "container", "bytes": len(data), "md5": md5(data)}


def expected_path(name: str) -> Path:
    return EXPECTED / f"{name}.json"


def write(names: list[str] | None = None) -> list[Path]:
    """Regenerate the expected files (all, or the named cases)."""
    EXPECTED.mkdir(parents=True, exist_ok=True)
    written = []
    for case in CASES:
        if names and case.name not in names:
            continue
        path = expected_path(case.name)
        path.write_text(json.dumps(run_case(case), indent=2) + "\n")
        written.append(path)
    if not names or "container" in names:
        path = expected_path("container")
        path.write_text(json.dumps(container_golden(), indent=2) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate tests/expected/ (on purpose only)")
    parser.add_argument("cases", nargs="*", help="only these cases (default: all)")
    args = parser.parse_args(argv)
    if not args.write:
        parser.error("nothing to do: pass --write to regenerate tests/expected/ (the test compares)")
    for path in write(args.cases):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())

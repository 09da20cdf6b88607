"""The fitting matrix: which control scheme fits which backbone, and with which config.

One list (:data:`MATRIX`) says, for every (backbone, control) pair, either the control config that
makes it fit (composed from ``conf/``, with the knob values a smoke round trip codes at) or the
backbone capability it lacks. ``tests/test_fitting_matrix.py`` builds every pair from it (fits: build,
attach, one forward and one compress/decompress; misfits: a ``SchemeFitError`` naming the pair), and
``docs/fitting_matrix.md`` is rendered from it: ``python -m tests.fitting_matrix --write`` regenerates
the page (a test fails while the committed page is stale).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "fitting_matrix.md"

BACKBONES = ("cheng2020_attn", "stf", "tcm", "tic", "tic_hyperprior", "mgcf", "vqgan")
#: control families: the generic config of each is what a misfit pair is composed with
CONTROLS = ("none", "alpha_adapters", "beta_adapters", "layer_prompts", "instance_lora", "granularity",
            "gain_units", "qvrf")
GAUSSIAN = BACKBONES[:5]
SWIN = ("stf", "tic", "tic_hyperprior")


@dataclass(frozen=True)
class Fits:
    """The pair fits with ``control`` (a config of ``conf/control``); the smoke build codes at ``knobs``."""

    control: str
    knobs: dict = field(default_factory=dict)
    alpha: str | None = None  # beta_adapters: the α-set config placed under control.alpha
    smoke: tuple[str, ...] = ()  # overrides that keep the smoke build small (not needed to fit)


@dataclass(frozen=True)
class Misfit:
    """The pair does not fit: the backbone lacks the capabilities ``needs`` (``backbones.base.CAPABILITIES``)."""

    needs: tuple[str, ...]


ALPHA_PRESETS = {"cheng2020_attn": "alpha_adapters_cheng", "stf": "alpha_adapters_stf", "tcm": "alpha_adapters_tcm",
                 "tic": "alpha_adapters_tic", "tic_hyperprior": "alpha_adapters_tic_hyperprior"}
#: instance_lora is fitted at encode time: one step keeps the smoke round trip short
CALLIC_FAST = ("control.steps=1", "control.sweep=[0,1]")


def _entry(backbone: str, control: str) -> Fits | Misfit:
    if control == "none":
        return Fits("none")
    if control == "alpha_adapters":
        return Fits(ALPHA_PRESETS[backbone], {"alpha": 0.5}) if backbone in GAUSSIAN else Misfit(("rate_distortion",))
    if control == "beta_adapters":
        if backbone not in GAUSSIAN:
            return Misfit(("rate_distortion",))
        # a small β: the untrained β branch (non-zero conv adapters at scale 8β) blows y up on TCM
        return Fits("beta_adapters", {"alpha": 0.5, "beta": 0.1}, alpha=ALPHA_PRESETS[backbone])
    if control == "layer_prompts":
        if backbone in SWIN:
            return Fits(f"layer_prompts_{backbone}", {"prompt": 0.0}, smoke=("control.width=8",))
        return Misfit(("swin_prompts",) if backbone in GAUSSIAN else ("rate_distortion", "swin_prompts"))
    if control == "instance_lora":
        if backbone == "vqgan":
            return Misfit(("likelihood_rate",))
        preset = "instance_lora" if backbone == "mgcf" else f"instance_lora_{backbone}"
        return Fits(preset, {"steps": 1.0}, smoke=CALLIC_FAST)
    if control == "granularity":
        return Fits("granularity") if backbone == "vqgan" else Misfit(("grain_masks",))
    if control == "gain_units":
        return Fits(f"gain_units_{backbone}", {"q": 2.5}) if backbone in GAUSSIAN else Misfit(("gaussian_latent",))
    if control == "qvrf":
        return Fits("qvrf", {"a": 2.5}) if backbone in GAUSSIAN else Misfit(("gaussian_latent",))
    raise KeyError(control)


#: every (backbone, control) pair
MATRIX: dict[tuple[str, str], Fits | Misfit] = {(b, c): _entry(b, c) for b in BACKBONES for c in CONTROLS}


def compose_pair(backbone: str, control: str) -> tuple[dict, dict | None]:
    """The pair's config nodes: the fitting config, or the family's generic config for a misfit."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    entry = MATRIX[backbone, control]
    name = entry.control if isinstance(entry, Fits) else control
    overrides = entry.smoke if isinstance(entry, Fits) else ()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"backbone={backbone}", "backbone.size=tiny", f"control={name}",
                                           "paths.output_dir=/tmp/ctrlic-compose", *overrides])
        if isinstance(entry, Fits) and entry.alpha:
            alpha = compose("config", overrides=[f"control={entry.alpha}", "paths.output_dir=/tmp/ctrlic-compose"])
            cfg.control.alpha = alpha.control
    node = OmegaConf.to_container(cfg.control, resolve=True) if name != "none" else None
    return OmegaConf.to_container(cfg.backbone, resolve=True), node


def render() -> str:
    """The Markdown page: one row per backbone, one column per control family."""
    from ctrlic.codecs.backbones.base import CAPABILITIES

    lines = [
        "# Which control scheme fits which backbone",
        "",
        "Generated from `tests/fitting_matrix.py` (`python -m tests.fitting_matrix --write`); "
        "`tests/test_fitting_matrix.py` builds every pair",
        "from the same list at tiny size: a fitting pair attaches, runs one forward pass and one",
        "compress/decompress round trip; a pair that does not fit stops at build time with a one-line",
        "`SchemeFitError` naming the pair and the capability the backbone lacks.",
        "",
        "A cell gives the `control=` config that fits, or ✗ and the capabilities the backbone lacks.",
        "",
        "| backbone | " + " | ".join(CONTROLS) + " |",
        "|---|" + "---|" * len(CONTROLS),
    ]
    for backbone in BACKBONES:
        cells = []
        for control in CONTROLS:
            entry = MATRIX[backbone, control]
            if isinstance(entry, Misfit):
                cells.append("✗ needs " + ", ".join(entry.needs))
                continue
            cells.append(f"`{entry.control}`" + (f" (control.alpha: `{entry.alpha}`)" if entry.alpha else ""))
        lines.append(f"| {backbone} | " + " | ".join(cells) + " |")
    lines += ["", "Capabilities (declared on the backbone class, `Backbone.capabilities`; required by the scheme, "
              "`ControlScheme.requires`):", ""]
    lines += [f"- **{name}**: {text}" for name, text in CAPABILITIES.items()]
    lines += ["", "β-adapters take the backbone's α-adapter config as their α set (`control.alpha`); per-image "
              "LoRA on a lossy backbone uses `instance_lora_<backbone>` (layers and rank are ours: CALLIC "
              "adapts only MGCF).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"regenerate {PAGE.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if not args.write:
        print(render())
        return 0
    PAGE.write_text(render())
    print(PAGE.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())

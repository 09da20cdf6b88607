"""``make demo`` shows the knob working: the CALICE α sweep on the demo's tiny Cheng2020-attn has PSNR rising with
bpp over at least a 2× rate span, and its α = 0 end is the fixed-rate model it was trained on (issue #17, item 5)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ROOT, run_cli


def _demo_commands() -> list[list[str]]:
    """The ``run.py`` override lists of the Makefile's ``demo`` target, in order (``$(DEMO_DIR)`` left in)."""
    recipe = re.search(r"^demo:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    lines = recipe.replace("\\\n", " ").splitlines()
    return [line.split()[2:] for line in lines if line.strip().startswith("$(PY) run.py")]


def _curve(run_dir) -> list[tuple[float, float]]:
    results = json.loads((run_dir / "results.json").read_text())["results"]
    return sorted(zip(results["bpp"], results["psnr-rgb"], strict=True))


@pytest.mark.slow  # ~8 min on 2 cores: the demo itself
def test_the_demo_alpha_curve_rises_over_at_least_twice_the_rate(tmp_path):
    commands = _demo_commands()
    assert [c[0] for c in commands] == ["experiment=demo", "experiment=demo_calice"]
    for overrides in commands:
        run_cli(*(o.replace("$(DEMO_DIR)", str(tmp_path)) for o in overrides), timeout=1200)
    anchor, calice = _curve(tmp_path / "cheng2020_attn"), _curve(tmp_path / "calice_cheng2020_attn")
    bpp, quality = [p[0] for p in calice], [p[1] for p in calice]
    assert bpp[-1] >= 2 * bpp[0], calice
    assert all(b > a for a, b in zip(quality, quality[1:], strict=False)), calice
    assert calice[-1] == pytest.approx(anchor[0], rel=0.01), (calice[-1], anchor)  # α = 0 is the anchor

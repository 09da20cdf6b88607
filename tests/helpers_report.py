"""Checks shared by the smoke-run tests: the run report exists and its bit maps add up to the payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def check_report(run_dir: Path) -> dict:
    """``report.html`` and a manifest whose every knob value has a map within 3 % of the image payload."""
    assert (run_dir / "report.html").is_file()
    manifest = json.loads((run_dir / "report_assets" / "manifest.json").read_text())
    entry = manifest["sets"][0]
    assert entry["points"] == json.loads((run_dir / "results.json").read_text())["meta"]["points"]
    assert entry["images"]
    for image in entry["images"]:
        assert len(image["points"]) == len(entry["points"])
        for point in image["points"]:
            assert point["same_as_sweep"] is not False
            assert point["map_bits"] == pytest.approx(point["payload_bits"] - point["side_bits"], rel=0.03)
            assert (run_dir / point["thumb"]).is_file() and (run_dir / point["bit_map"]).is_file()
    return manifest

"""Golden bitstreams: every backbone and control family still writes the bits in ``tests/expected/``.

An accidental change to any coder (entropy model, scan order, container, adapter maths) changes a
payload md5 and fails here. A change meant to move the bits is committed with ``make golden``.
"""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch

from tests import golden

CASES = {case.name: case for case in golden.CASES}


def expected(name: str) -> dict:
    path = golden.expected_path(name)
    assert path.is_file(), f"{path} is missing: run `make golden` and commit tests/expected/"
    return json.loads(path.read_text())


@functools.cache
def coded(name: str) -> dict:
    """The case coded now (once per session; a few seconds for all of them)."""
    return golden.run_case(CASES[name])


def test_every_case_has_an_expected_file():
    names = sorted(p.stem for p in golden.EXPECTED.glob("*.json"))
    assert names == sorted([*CASES, "container"])


def test_the_cases_cover_every_backbone_and_control_family():
    backbones = {p.stem for p in (golden.ROOT / "conf" / "backbone").glob("*.yaml")}
    assert {c.backbone for c in golden.CASES} == backbones
    families = ("none", "alpha_adapters", "beta_adapters", "layer_prompts", "granularity", "instance_lora",
                "gain_units", "qvrf")
    assert all(any(c.control.startswith(f) for c in golden.CASES) for f in families)
    assert all(len(c.knobs) >= 2 for c in golden.CASES if c.control != "none")


@pytest.mark.parametrize("name", list(CASES))
def test_payloads_match_the_golden_files(name):
    want, got = expected(name), coded(name)
    assert got["meta"]["fingerprint"] == want["meta"]["fingerprint"], (
        f"{name}: the weights fingerprint changed (initialisation, architecture or the Gaussian scale "
        "table), so every payload moves; if on purpose, run `make golden`")
    assert got["meta"]["knobs"] == want["meta"]["knobs"]
    assert got["meta"]["section_bytes"] == want["meta"]["section_bytes"], f"{name}: section lengths changed"
    assert got["meta"]["payload_md5"] == want["meta"]["payload_md5"], (
        f"{name}: same weights, different bits: a coder changed; if on purpose, run `make golden`")
    assert got["meta"]["decoded_md5"] == want["meta"]["decoded_md5"], f"{name}: the decoded image changed"
    assert got["results"] == want["results"]


def test_knob_settings_give_different_payloads():
    for case in golden.CASES:
        if len(case.knobs) > 1:
            md5s = expected(case.name)["meta"]["payload_md5"]
            assert len(set(md5s)) == len(md5s), f"{case.name}: two knob settings coded the same bits"


def test_container_layout_matches_the_golden_file():
    assert golden.container_golden() == expected("container")


def test_a_changed_gaussian_scale_table_fails_the_golden_check(monkeypatch):
    """CompressAI's 64 scales → 65: Cheng2020-attn's payload moves, so the golden test would fail."""
    import compressai.models.base as base

    monkeypatch.setattr(base, "get_scale_table", lambda: torch.exp(torch.linspace(
        math.log(base.SCALES_MIN), math.log(base.SCALES_MAX), base.SCALES_LEVELS + 1)))
    got = golden.run_case(CASES["cheng2020_attn"])
    assert got["meta"]["payload_md5"] != expected("cheng2020_attn")["meta"]["payload_md5"]


def test_a_changed_mixture_constant_fails_the_golden_check(monkeypatch):
    """MGCF's log-scale floor raised from −7 to 0: the integer CDFs, and so the lossless payload, change."""
    from ctrlic.codecs.lossless import mixture

    monkeypatch.setattr(mixture, "LOG_SCALE_MIN", 0.0)
    got = golden.run_case(CASES["mgcf"])
    assert got["meta"]["fingerprint"] == expected("mgcf")["meta"]["fingerprint"]
    assert got["meta"]["payload_md5"] != expected("mgcf")["meta"]["payload_md5"]


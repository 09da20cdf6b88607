"""The lossless evaluation: bpsp per knob setting from bit-exact bitstreams, classical codecs, gain, plot."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from ctrlic.codecs.backbones.mgcf import MGCF
from ctrlic.codecs.codec import Codec
from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.lossless import LosslessMismatchError, code_image
from ctrlic.evaluation.settings import SweepSettings
from tests.conftest import run_cli
from tests.helpers_lossless import kodak_crop, tiny_callic
from tests.helpers_report import check_report


def test_sweep_writes_bpsp_classical_codecs_gain_and_plot(tmp_path):
    codec = tiny_callic(lr=5e-2)
    images = [{"x": kodak_crop(16, 24, name=n), "name": n} for n in ("kodim15.png", "kodim23.png")]
    results = evaluate(codec, {"kodak4": images}, tmp_path, SweepSettings(points=[{"steps": 0}, {"steps": 4}]))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results["kodak4"]))
    bpsp = saved["results"]["bpsp"]
    assert len(bpsp) == 2 and all(0 < b < 12 for b in bpsp)
    assert saved["results"]["steps"] == [0.0, 4.0]
    assert set(saved["meta"]["classical"]) == {"png", "jpeg2000", "webp", "jpegxl"}
    assert saved["meta"]["gain_bpsp_vs_first_point"][1] == pytest.approx(bpsp[0] - bpsp[1])
    rows = list(csv.DictReader((tmp_path / "per_image.csv").open()))
    assert len(rows) == 4 and {"encoding_time", "decoding_time", "gain_bpsp", "png_bpsp"} <= set(rows[0])
    assert (tmp_path / "bpsp.png").stat().st_size > 1000
    assert len(list((tmp_path / "bitstreams" / "kodak4").rglob("*.ctl"))) == 4


def test_a_decode_that_differs_is_refused(tmp_path):
    class Lossy(torch.nn.Module):
        def compress(self, x, knobs):
            return b"x" * 10

        def decompress(self, data):
            return torch.zeros(1, 3, 4, 4)

    with pytest.raises(LosslessMismatchError, match="differs"):
        code_image(Lossy(), torch.ones(1, 3, 4, 4), {}, tmp_path / "a.ctl", keep=False)


def test_callic_run_loads_the_pretrained_mgcf_and_writes_bpsp_from_real_bitstreams(tmp_path):
    pretrained = MGCF(dim=32, depth=3, kernel=7, mlp_ratio=4, mixtures=5, patch_size=16)  # backbone.size=tiny
    torch.save({"state_dict": pretrained.state_dict()}, tmp_path / "mgcf.pt")
    run_cli("experiment=callic", "debug=smoke", "data=demo", "control.sweep=[0,2]", "trainer.max_steps=0",
            "data.eval_crop=64", f"backbone.checkpoint={tmp_path / 'mgcf.pt'}", f"hydra.run.dir={tmp_path / 'run'}")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["meta"]["weights_fingerprint"] == Codec(pretrained.eval(), name="mgcf").fingerprint.hex()
    assert saved["meta"]["bit_exact"] and saved["results"]["steps"] == [0.0, 2.0]
    assert len(saved["results"]["bpsp"]) == 2 and (tmp_path / "run" / "bpsp.png").exists()
    points = check_report(tmp_path / "run")["sets"][0]["images"][0]["points"]
    assert points[0]["side_bits"] == 0 < points[1]["side_bits"]  # T = 2 sends the adapted weights
    assert all(p["patch_size"] == 16 and (tmp_path / "run" / p["patch_map"]).is_file() for p in points)

"""The RD sweep over two knobs: an (α, β) grid, one curve per β, perceptual metrics, FID/KID gating."""

from __future__ import annotations

import csv

import pytest
import torch

from ctrlic.codecs.control.base import KnobError
from ctrlic.evaluation.evaluate import evaluate
from ctrlic.evaluation.lossy import perceptual_networks
from ctrlic.evaluation.plot import plot_rd_panels, split_family
from ctrlic.evaluation.results import load_results
from ctrlic.evaluation.settings import SweepSettings, family_points
from tests.helpers_beta_calice import tiny_calice_and_beta

GRID = [{"alpha": a, "beta": b} for a in (1.0, 0.5, 0.0) for b in (0.0, 1.0)]


def _images(n: int = 1, size: int = 64) -> list[dict]:
    torch.manual_seed(2)
    return [{"x": torch.rand(1, 3, size, size), "name": [f"im{i}.png"]} for i in range(n)]


def test_family_points_group_by_the_family_knob_and_thin_each_curve():
    points = [{"alpha": a, "beta": b} for a in (1.0, 0.8, 0.6, 0.4, 0.2, 0.0) for b in (0.0, 1.0)]
    chosen = family_points(points, "beta", max_points=3)
    assert chosen == [{"alpha": a, "beta": b} for b in (0.0, 1.0) for a in (1.0, 0.6, 0.0)]
    assert len(family_points(points, "beta", None)) == 12


def test_grid_sweep_writes_one_curve_per_beta_with_perceptual_metrics(tmp_path):
    _, codec, _, _ = tiny_calice_and_beta()
    with torch.no_grad():  # a β set that changes the output, so the two curves differ
        for p in codec.control.adapter_sets()["beta"]:
            p.normal_(0, 0.05)
    settings = SweepSettings(points=GRID, family="beta", lpips={"pretrained": False}, dists={"pretrained": False},
                             save_bitstreams=False, label="beta", reference_dataset="kodak",
                             plot_references=["CALICE (RDP) beta_2.0 (paper)"])
    results = evaluate(codec, {"kodak4": _images()}, tmp_path, settings)["kodak4"]
    assert results == load_results(tmp_path / "results.json")
    r, meta = results["results"], results["meta"]
    assert r["beta"] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0] and r["alpha"] == [1.0, 0.5, 0.0] * 2
    assert meta["grid"] == {"alpha": [1.0, 0.5, 0.0], "beta": [0.0, 1.0]} and meta["family"] == "beta"
    assert all(v > 0 for v in r["lpips"] + r["dists"])
    assert r["bpp"][:3] != r["bpp"][3:]
    curves = split_family(results, "beta")
    assert [c["name"] for c in curves] == ["beta beta=0", "beta beta=1"]
    assert curves[1]["results"]["bpp"] == r["bpp"][3:] and curves[1]["meta"]["knob"] == "alpha"
    assert meta["bd_rate"]["curve"] == "beta beta=0"
    with (tmp_path / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {"alpha", "beta", "lpips", "dists"} <= set(rows[0])
    assert (tmp_path / "rd.png").stat().st_size > 10_000


def test_sweep_builds_lpips_alex_and_vgg_and_dists_when_asked():
    nets = perceptual_networks(SweepSettings(lpips={"net": "alex", "pretrained": False},
                                             lpips_vgg={"pretrained": False}, dists={"pretrained": False}))
    assert set(nets) == {"lpips", "lpips-vgg", "dists"}
    assert nets["lpips"].model.pnet_type == "alex" and nets["lpips-vgg"].model.pnet_type == "vgg"
    assert perceptual_networks(SweepSettings()) == {}


def test_family_must_be_a_knob_of_the_codec(tmp_path):
    _, codec, _, _ = tiny_calice_and_beta()
    with pytest.raises(KnobError, match="eval.family='gamma'.*alpha, beta"):
        evaluate(codec, {"kodak4": _images()}, tmp_path, SweepSettings(points=GRID, family="gamma"))


def test_fid_and_kid_only_for_sets_with_enough_patches(tmp_path):
    _, codec, _, _ = tiny_calice_and_beta()
    settings = SweepSettings(points=GRID[:2], family="beta", save_bitstreams=False,
                             fid={"pretrained": False, "patch_size": 32, "min_patches": 6})
    results = evaluate(codec, {"few": _images(1)}, tmp_path, settings)["few"]
    assert "fid" not in results["results"]
    assert results["meta"]["fid"]["patches"] == 5 and "too few for FID/KID" in results["meta"]["fid"]["reason"]


@pytest.mark.slow
def test_fid_and_kid_are_measured_per_point_with_inception(tmp_path):
    _, codec, _, _ = tiny_calice_and_beta()
    settings = SweepSettings(points=GRID[:2], family="beta", save_bitstreams=False,
                             fid={"pretrained": False, "patch_size": 32, "min_patches": 4, "kid_subsets": 2})
    results = evaluate(codec, {"enough": _images(1)}, tmp_path, settings)["enough"]
    r = results["results"]
    assert len(r["fid"]) == len(r["kid"]) == len(r["kid_std"]) == 2
    assert "reason" not in results["meta"]["fid"]


def test_panels_leave_out_metrics_no_curve_has(tmp_path):
    curve = {"name": "c", "description": "", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0]}}
    assert plot_rd_panels([curve], tmp_path / "p.png", ["psnr-rgb", "dists"]).stat().st_size > 5_000
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_rd_panels([curve], tmp_path / "q.png", ["lpips"])

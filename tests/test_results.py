"""Tests for the CompressAI-format results JSON helpers and the shipped reference curves."""

import json
import math

import numpy as np
import pytest

from ctrlic.evaluation.references import (
    DATASETS,
    REFERENCE_ROOT,
    curve_kind,
    find_reference_curve,
    load_reference_curves,
    reference_dir,
)
from ctrlic.evaluation.results import (
    load_results,
    make_results,
    results_to_markdown,
    validate_results,
    write_results,
)

POINTS = [
    {"alpha": 0.0, "bpp": 0.12, "bpp_est": 0.11, "psnr-rgb": 28.4, "ms-ssim-rgb": 0.92, "encoding_time": 0.5},
    {"alpha": 0.5, "bpp": 0.31, "bpp_est": 0.30, "psnr-rgb": 31.9, "ms-ssim-rgb": 0.96, "encoding_time": 0.6},
    {"alpha": 1.0, "bpp": 0.62, "bpp_est": 0.60, "psnr-rgb": 35.1, "ms-ssim-rgb": 0.98, "encoding_time": 0.7},
]


def _results() -> dict:
    return make_results("ours", "test model", POINTS, meta={"knob": "alpha"})


def test_make_results_keeps_keys_and_order() -> None:
    d = _results()
    assert d["name"] == "ours" and d["description"] == "test model" and d["meta"] == {"knob": "alpha"}
    assert list(d["results"]) == list(POINTS[0])
    assert d["results"]["alpha"] == [0.0, 0.5, 1.0]
    assert d["results"]["psnr-rgb"] == [28.4, 31.9, 35.1]


def test_make_results_converts_numpy_scalars_to_float() -> None:
    d = make_results("n", "", [{"bpp": np.float32(0.5), "psnr-rgb": np.float64(30.0)}])
    assert all(type(v) is float for values in d["results"].values() for v in values)
    json.dumps(d)


def test_make_results_rejects_mismatched_points() -> None:
    with pytest.raises(ValueError, match="point 1 has different keys"):
        make_results("n", "", [{"bpp": 0.1, "psnr-rgb": 30.0}, {"bpp": 0.2}])
    with pytest.raises(ValueError, match="points is empty"):
        make_results("n", "", [])
    with pytest.raises(ValueError, match="'psnr-rgb' is not a number"):
        make_results("n", "", [{"bpp": 0.1, "psnr-rgb": "high"}])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("name"), "missing key 'name'"),
        (lambda d: d.pop("results"), "missing key 'results'"),
        (lambda d: d.update(description=3), "'description' must be a str"),
        (lambda d: d.update(results={}), "non-empty dict"),
        (lambda d: d["results"]["bpp"].pop(), "unequal lengths"),
        (lambda d: d["results"].update(bpp=(0.1, 0.2, 0.3)), r"results\['bpp'\] must be a list"),
        (
            lambda d: d["results"]["psnr-rgb"].__setitem__(1, None),
            r"results\['psnr-rgb'\]\[1\] is not a number",
        ),
        (lambda d: d["results"]["psnr-rgb"].__setitem__(0, True), "is not a number"),
        (lambda d: d["results"].update(bpp=[]), "is empty"),
        (lambda d: d.update(meta=[1]), "'meta' must be a dict"),
    ],
)
def test_validate_results_names_the_problem(mutate, message: str) -> None:
    d = _results()
    mutate(d)
    with pytest.raises(ValueError, match=message):
        validate_results(d)


def test_validate_accepts_missing_meta_and_nan() -> None:
    validate_results({"name": "x", "description": "", "results": {"bpp": [0.1], "psnr-rgb": [math.nan]}})


def test_write_and_load_round_trip(tmp_path) -> None:
    d = _results()
    path = write_results(tmp_path / "sub" / "ours.json", d)
    assert path == tmp_path / "sub" / "ours.json"
    assert load_results(path) == d
    assert [p.name for p in path.parent.iterdir()] == ["ours.json"]  # no temp file left behind
    assert path.read_text().startswith('{\n  "name": "ours"')  # pretty-printed


def test_write_refuses_invalid_results_and_keeps_old_file(tmp_path) -> None:
    path = write_results(tmp_path / "ours.json", _results())
    before = path.read_text()
    bad = _results()
    bad["results"]["bpp"].pop()
    with pytest.raises(ValueError, match="unequal lengths"):
        write_results(path, bad)
    assert path.read_text() == before


def test_load_renames_legacy_keys(tmp_path) -> None:
    path = tmp_path / "old.json"
    legacy = {"name": "old", "description": "", "results": {"psnr": [30.0], "ms-ssim": [0.9], "bpp": [0.2]}}
    path.write_text(json.dumps(legacy))
    d = load_results(path)
    assert set(d["results"]) == {"psnr-rgb", "ms-ssim-rgb", "bpp"}
    both = {"name": "b", "description": "", "results": {"psnr": [1.0], "psnr-rgb": [2.0]}}
    path.write_text(json.dumps(both))
    assert load_results(path)["results"] == {"psnr": [1.0], "psnr-rgb": [2.0]}


def test_load_reports_the_file(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "x", "results": {"bpp": [1.0]}}))
    with pytest.raises(ValueError, match=r"bad\.json: missing key 'description'"):
        load_results(path)


def test_results_to_markdown() -> None:
    lines = results_to_markdown(_results()).splitlines()
    assert lines[0] == "**ours**: test model"
    assert lines[2] == "| alpha | bpp | bpp_est | psnr-rgb | ms-ssim-rgb | encoding_time |"
    assert lines[3] == "|---:|---:|---:|---:|---:|---:|"
    assert lines[4] == "| 0 | 0.12 | 0.11 | 28.4 | 0.92 | 0.5 |"
    assert len(lines) == 4 + len(POINTS)


# --- reference curves shipped with the package ---


def test_every_shipped_reference_file_is_valid_and_small() -> None:
    files = sorted(REFERENCE_ROOT.rglob("*.json"))
    assert len(files) > 100
    for path in files:
        load_results(path)
    assert sum(p.stat().st_size for p in files) < 1_500_000


def test_reference_dir() -> None:
    for dataset in DATASETS:
        assert reference_dir(dataset) == REFERENCE_ROOT / dataset
    assert reference_dir("no-such-dataset") is None
    assert load_reference_curves("no-such-dataset") == []


def test_load_reference_curves_filters_by_metric_and_annotates() -> None:
    curves = load_reference_curves("kodak")
    assert all("psnr-rgb" in c["results"] and "bpp" in c["results"] for c in curves)
    kinds = {c["file"]: c["kind"] for c in curves}
    assert kinds["vtm"] == kinds["jpeg2000"] == kinds["bpg_444_x265_ycbcr"] == "classical"
    assert kinds["compressai-cheng2020-attn_mse_cuda"] == kinds["LIC_TCM__TCM-Large"] == "learned"
    assert "CALICE__CALICE-STF_LPIPS" not in kinds  # only bpp + lpips
    lpips = load_reference_curves("kodak", metric="lpips")
    assert {c["file"] for c in lpips} >= {"CALICE__CALICE-STF_LPIPS", "CALICE__CALICE_RDP_beta_2.0_paper"}


def test_msssim_db_curves_get_linear_values() -> None:
    curves = {c["file"]: c for c in load_reference_curves("kodak", metric="ms-ssim-rgb")}
    stf = curves["STF__stf_ms-ssim_Kodak"]["results"]
    np.testing.assert_allclose(-10 * np.log10(1 - np.array(stf["ms-ssim-rgb"])), stf["ms-ssim-db-rgb"])
    assert "paper-elic2022_ms-ssim" in curves
    assert "STF__stf_ms-ssim_Kodak" not in {c["file"] for c in load_reference_curves("kodak")}


def test_curve_kind() -> None:
    for name in ("JPEG", "jpeg2000", "WebP", "BPG 8b 444 x265 ycbcr", "VTM", "HM", "AV1"):
        assert curve_kind(name) == "classical", name
    for name in ("bmshj2018-hyperprior", "cheng2020-attn", "TCM-Large", "elic2022", "mbt2018-mean"):
        assert curve_kind(name) == "learned", name


def test_find_reference_curve() -> None:
    assert find_reference_curve("kodak", "vtm")["name"] == "VTM"
    assert find_reference_curve("kodak", "VTM")["file"] == "vtm"
    assert find_reference_curve("kodak", "TCM-Large")["file"] == "LIC_TCM__TCM-Large"
    cheng = find_reference_curve("kodak", "compressai-cheng2020-attn_mse_cuda")
    assert cheng["name"] == "cheng2020-attn" and len(cheng["results"]["bpp"]) == 6
    assert find_reference_curve("tecnick", "TinyLIC (mse)")["meta"]["source"] == "TinyLIC__mse_tecnick.json"
    with pytest.raises(ValueError, match="available: .*vtm"):
        find_reference_curve("kodak", "no-such-codec")
    with pytest.raises(ValueError, match="matches several"):
        find_reference_curve("kodak", "cheng2020-attn")
    with pytest.raises(ValueError, match="no reference curves for dataset"):
        find_reference_curve("no-such-dataset", "vtm")


def test_custom_root(tmp_path) -> None:
    write_results(tmp_path / "mine" / "a.json", _results())
    assert reference_dir("mine", root=tmp_path) == tmp_path / "mine"
    (curve,) = load_reference_curves("mine", root=tmp_path)
    assert curve["file"] == "a" and curve["kind"] == "learned"
    assert find_reference_curve("mine", "ours", root=tmp_path)["name"] == "ours"

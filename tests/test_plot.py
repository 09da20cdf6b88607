"""Tests for the RD plot: a readable PNG is written in every supported configuration."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctrlic.evaluation.plot import axis_label, plot_rd, to_plot_units
from ctrlic.evaluation.references import find_reference_curve, load_reference_curves
from ctrlic.evaluation.results import make_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _ours(n: int = 4, name: str = "ours", knob: bool = True) -> dict:
    points = [
        {"bpp": 0.05 * (i + 1), "psnr-rgb": 22.0 + i, "ms-ssim-rgb": 0.85 + 0.02 * i, "alpha": i / 3}
        for i in range(n)
    ]
    return make_results(name, "test curve", points, meta={"knob": "alpha"} if knob else None)


def _assert_png(path: Path) -> None:
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 100 and image.size[1] > 100


def test_plot_without_references(tmp_path) -> None:
    out = plot_rd([_ours()], tmp_path / "rd.png", title="ours")
    assert out == tmp_path / "rd.png"
    _assert_png(out)


def test_plot_with_references(tmp_path) -> None:
    refs = [find_reference_curve("kodak", n) for n in ("vtm", "jpeg", "compressai-cheng2020-attn_mse_cuda")]
    _assert_png(plot_rd([_ours()], tmp_path / "nested" / "rd.png", references=refs))


def test_plot_with_all_kodak_references_and_duplicate_names(tmp_path) -> None:
    refs = load_reference_curves("kodak")
    _assert_png(plot_rd([_ours(), _ours(name="other", knob=False)], tmp_path / "rd.png", references=refs))


def test_plot_single_point_curve(tmp_path) -> None:
    _assert_png(plot_rd([_ours(n=1)], tmp_path / "one.png"))
    refs = [find_reference_curve("kodak", "vtm")]
    _assert_png(plot_rd([_ours(n=1)], tmp_path / "one_ref.png", references=refs))


def test_plot_msssim_in_db(tmp_path) -> None:
    refs = load_reference_curves("kodak", metric="ms-ssim-rgb")
    _assert_png(plot_rd([_ours()], tmp_path / "msssim.png", metric="ms-ssim-rgb", references=refs))
    np.testing.assert_allclose(to_plot_units("ms-ssim-rgb", [0.9, 0.99, 0.999]), [10.0, 20.0, 30.0])
    assert "dB" in axis_label("ms-ssim-rgb") and "log10" in axis_label("ms-ssim-rgb")
    np.testing.assert_allclose(to_plot_units("psnr-rgb", [30.0]), [30.0])


def test_plot_estimated_rate_and_family_alias(tmp_path) -> None:
    est = make_results("est", "", [{"bpp_est": 0.1 * (i + 1), "psnr-rgb": 25.0 + i} for i in range(3)])
    _assert_png(plot_rd([est, _ours()], tmp_path / "family.png"))


def test_plot_rejects_curve_without_metric(tmp_path) -> None:
    with pytest.raises(ValueError, match="no 'lpips'"):
        plot_rd([_ours()], tmp_path / "x.png", metric="lpips")

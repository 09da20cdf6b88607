"""The run report: written by the smoke run's sweep, bit maps that add up to the real payload, rebuilt by
``task=report`` without a model, pictures small enough for Kodak, and a real headless Chromium using it."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from ctrlic.codecs import bitstream
from ctrlic.evaluation.report import ReportError
from ctrlic.evaluation.report_assets import ReportSettings, _save_picture
from ctrlic.tasks.report import report
from tests.conftest import ROOT, run_cli
from tests.helpers_browser import Browser, require_chromium


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "report_assets" / "manifest.json").read_text())


def page_data(path: Path) -> dict:
    text = path.read_text()
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_smoke_run_report_bit_maps_sum_to_each_images_payload(calice_smoke_run):
    run = calice_smoke_run
    assert (run / "report.html").is_file()
    (entry,) = manifest(run)["sets"]
    results = json.loads((run / "results.json").read_text())
    assert entry["points"] == results["meta"]["points"] and len(entry["points"]) == 5
    assert [i["name"] for i in entry["images"]] == ["kodim01", "kodim04"]  # eval_limit=2 < report.images=3
    for image in entry["images"]:
        for k, point in enumerate(image["points"]):
            saved = run / "bitstreams" / "kodak4" / f"point{k:02d}" / f"{image['name']}.ctl"
            data = saved.read_bytes()
            _, sections = bitstream.unpack(data)
            payload = 8 * sum(len(s) for s in sections)  # the sections, without the container header
            assert point["same_as_sweep"] and point["file_bits"] == 8 * len(data)
            assert point["payload_bits"] == payload and point["side_bits"] == 0
            assert point["map_bits"] == pytest.approx(payload, rel=0.03)
            assert set(point["streams"]) == {"y", "z"}
            for key in ("thumb", "full", "bit_map"):
                assert (run / point[key]).is_file()
        assert image["bit_scale"]["max_bpp"] > 0


def test_task_report_rebuilds_the_page_from_files_alone(calice_smoke_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(calice_smoke_run, copy, ignore=shutil.ignore_patterns("checkpoints", "report.html"))
    out = run_cli("task=report", f"run_dir={copy}", f"hydra.run.dir={tmp_path / 'job'}").stdout
    assert f"report: {copy / 'report.html'}" in out
    rebuilt, original = page_data(copy / "report.html"), page_data(calice_smoke_run / "report.html")
    assert rebuilt["sets"] == original["sets"]
    assert rebuilt["provenance"]["weights_fingerprint"] == json.loads(
        (copy / "results.json").read_text())["meta"]["weights_fingerprint"]


def test_task_report_without_a_run_says_what_to_do(tmp_path):
    proc = run_cli("task=report", f"run_dir={tmp_path / 'missing'}", f"hydra.run.dir={tmp_path / 'job'}",
                   check=False)
    assert proc.returncode == 2 and "is not a folder; point it at a run directory" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(ReportError, match="task=report needs run_dir="):
        report(OmegaConf.create({"run_dir": None}))


def test_kodak_sweep_pictures_fit_in_30_mb(tmp_path):
    """24 Kodak images, 10 knob values, the default 3 images with pictures: originals stand in for decoded
    images (a trained codec's are smoother, so smaller), heatmaps are a few kB each."""
    sizes = []
    for path in sorted((ROOT / "data" / "demo" / "kodak4").glob("*.png")):
        folder = tmp_path / "report_assets" / "kodak" / path.stem
        folder.mkdir(parents=True)
        _save_picture(np.asarray(Image.open(path).convert("RGB")), folder, "p00", ReportSettings())
        sizes.append(sum(f.stat().st_size for f in folder.iterdir()))
    per_image = max(sizes) * (10 + 1)  # ten decoded pictures and the original
    assert 3 * per_image < 30e6


def test_report_works_in_headless_chromium(calice_smoke_run, tmp_path):
    executable = require_chromium()
    elsewhere = tmp_path / "copied"  # readable when the page and its folder travel
    elsewhere.mkdir()
    shutil.copy(calice_smoke_run / "report.html", elsewhere)
    shutil.copytree(calice_smoke_run / "report_assets", elsewhere / "report_assets")
    rows = list(csv.DictReader((calice_smoke_run / "per_image.csv").open()))
    alphas = sorted({float(r["alpha"]) for r in rows})
    browser = Browser(executable)
    try:
        browser.open((elsewhere / "report.html").as_uri())
        cards = browser.evaluate("""[...document.querySelectorAll('.image-card')].map(c => ({
            image: c.dataset.image, sliders: [...c.querySelectorAll('input.knob-slider')].map(s => [s.dataset.knob, +s.min, +s.max])}))""")
        assert [c["image"] for c in cards] == ["kodim01", "kodim04"]
        assert cards[0]["sliders"] == [["alpha", 0, len(alphas) - 1]]  # one position per knob value
        shown = {}
        for position, alpha in enumerate(alphas):
            shown[alpha] = browser.evaluate(f"""(() => {{
                const card = document.querySelector('.image-card'), slider = card.querySelector('input.knob-slider');
                slider.value = {position}; slider.dispatchEvent(new Event('input'));
                const img = card.querySelector('img.decoded');
                return new Promise(done => (img.complete ? done() : img.addEventListener('load', done, {{once: true}})))
                  .then(() => [img.getAttribute('src'), card.querySelector('.metric-bpp').textContent, img.naturalWidth]);
            }})()""")
        srcs = {alpha: s[0] for alpha, s in shown.items()}
        assert len(set(srcs.values())) == len(alphas)  # another picture at every knob value
        assert all(width == 128 for _, _, width in shown.values())  # and it loaded
        for alpha, (_, bpp, _) in shown.items():  # the displayed bpp is that image's real bpp at that α
            row = next(r for r in rows if r["image"] == "kodim01" and float(r["alpha"]) == alpha)
            assert float(bpp) == pytest.approx(float(row["bpp"]), rel=1e-3)
        bpps = [s[1] for s in shown.values()]
        assert len(set(bpps)) > 1
        browser.evaluate("document.querySelector('.image-card button[data-mode=bits]').click()")
        shot = browser.screenshot(tmp_path / "report.png")
        assert browser.errors() == []
    finally:
        browser.close()
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[0] > 1000 and pixels.std() > 20  # text, charts and pictures, not a blank page
    shutil.copy(shot, calice_smoke_run / "report_screenshot.png")  # for a person to look at


def test_task_report_on_a_multirun_folder_writes_the_summary_page(tmp_path):
    from tests.test_summarize import _job

    _job(tmp_path, "0", ["seed=0"], bd_rate=4.0, loss=3.0)
    _job(tmp_path, "1", ["seed=1"], bd_rate=2.0, loss=2.5)
    (tmp_path / "multirun.yaml").write_text("{}\n")
    (tmp_path / "1" / "report.html").write_text("<html></html>")  # job 1 has its own report: linked
    path = report(OmegaConf.create({"run_dir": str(tmp_path), "summary": {"metric": "psnr-rgb"}}))
    assert path == tmp_path / "report.html"
    data = page_data(path)
    assert [r["job"] for r in data["rows"]] == ["0", "1"] and data["links"] == {"1": "1/report.html"}
    assert "bd_rate_lpips" in data["columns"]

"""The multirun summary: one table (CSV + Markdown), one RD plot, the best job by BD-rate or by loss."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from PIL import Image

from ctrlic.evaluation.results import make_results, write_results
from ctrlic.evaluation.summary import SummaryError, summarize
from tests.conftest import run_cli


def _job(root, name: str, overrides: list[str], bd_rate: float | None, loss: float, psnr0: float = 30.0):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    points = [{"bpp": 0.2 * (i + 1), "psnr-rgb": psnr0 + 2 * i} for i in range(4)]
    meta = {"dataset": "kodak4", "reference_dataset": "kodak",
            "bd_rate": {"reference": "vtm", "metric": "psnr-rgb", "value": bd_rate,
                        "reason": None if bd_rate is not None else "too few points"}}
    write_results(job / "results.json", make_results(f"model{name}", "test", points, meta))
    (job / "final_metrics.json").write_text(json.dumps({"global_step": 6, "val/loss": loss}))


def test_summary_table_plot_and_best_by_bd_rate(tmp_path):
    _job(tmp_path, "0", ["experiment=demo", "control.rank=4"], bd_rate=12.5, loss=1.0)
    _job(tmp_path, "1", ["experiment=demo", "control.rank=8"], bd_rate=-3.0, loss=2.0, psnr0=31)
    _job(tmp_path, "2", ["experiment=demo", "control.rank=16"], bd_rate=None, loss=0.5)
    summary = summarize(tmp_path, plot_references=["vtm"])
    assert summary["by"] == "bd_rate" and summary["best"]["job"] == "1"
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["overrides"] for r in rows] == ["control.rank=4", "control.rank=8", "control.rank=16"]
    assert float(rows[0]["mean_bpp"]) == pytest.approx(0.5) and rows[2]["bd_reason"] == "too few points"
    markdown = (tmp_path / "summary.md").read_text().splitlines()
    assert len(markdown) == 2 + 3 and "| 1 | control.rank=8 |" in markdown[3]
    assert Image.open(tmp_path / "summary_rd.png").size[0] > 300
    assert {"bd_rate_lpips", "bd_lpips", "bd_rate_dists", "bd_dists", "bd_rate_ms-ssim-db"} <= set(rows[0])
    page = (tmp_path / "report.html").read_text()  # the multirun page: the table, the plot, links to the jobs
    assert summary["report"] == tmp_path / "report.html" and "report_assets/summary_rd.png" in page
    assert '"rows": [{"job": "0"' in page and (tmp_path / "report_assets" / "summary_rd.png").is_file()


def test_best_by_loss_when_no_job_has_a_bd_rate(tmp_path):
    _job(tmp_path, "0", ["module.lmbda=0.0067"], bd_rate=None, loss=3.0)
    _job(tmp_path, "1", ["module.lmbda=0.013"], bd_rate=None, loss=2.5)
    summary = summarize(tmp_path)
    assert (summary["by"], summary["best"]["job"], summary["best"]["loss"]) == ("loss", "1", 2.5)


def test_summarize_without_jobs_says_what_to_do(tmp_path):
    with pytest.raises(SummaryError, match="multirun directory"):
        summarize(tmp_path)
    with pytest.raises(SummaryError, match="not a folder"):
        summarize(tmp_path / "missing")


def test_task_summarize_prints_the_table_and_the_best(tmp_path):
    _job(tmp_path, "0", ["seed=0"], bd_rate=4.0, loss=3.0)
    _job(tmp_path, "1", ["seed=1"], bd_rate=2.0, loss=2.5)
    out = run_cli("task=summarize", f"summary.dir={tmp_path}", f"hydra.run.dir={tmp_path / 'summarize'}").stdout
    assert "best by bd_rate: job 1 (seed=1), BD-rate +2.00 %" in out

"""W&B offline runs: metrics, the RD table and curve, sample reconstructions, config, group, run id."""

from __future__ import annotations

import json

from ctrlic.utils.wandb_logger import run_id_for
from tests.conftest import run_cli
from tests.helpers_wandb import config_keys, history, records, run_info


def test_offline_wandb_run_holds_metrics_rd_table_samples_and_config(tmp_path):
    run_cli("experiment=demo_calice", "debug=smoke", "logger=wandb", "trainer.max_steps=2",
            "trainer.val_check_interval=2", "data.eval_limit=1", "eval.max_points=3",
            f"hydra.run.dir={tmp_path}", env={"WANDB_API_KEY": "", "WANDB_MODE": "offline"})
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (run_file,) = run_dir.glob("run-*.wandb")
    info = run_info(run_file)
    assert info.run_id == run_id_for(tmp_path)  # a requeued job in the same folder continues this run
    assert run_dir.name.endswith(run_id_for(tmp_path))
    assert info.run_group == "demo_calice" and info.project == "ctrlic"

    logged = history(run_file)
    assert len(logged["train/loss"]) == 2 and all(v > 0 for v in logged["train/loss"])
    assert len(logged["val/loss"]) == 1
    results = json.loads((tmp_path / "results.json").read_text())
    assert logged["rd/kodak4/mean_bpp"] == [sum(results["results"]["bpp"]) / 3]
    assert logged["rd/kodak4/rd_points/nrows"] == [3]
    table = json.loads((run_dir / "files" / logged["rd/kodak4/rd_points/path"][0]).read_text())
    bpp = table["columns"].index("bpp")
    assert [row[bpp] for row in table["data"]] == results["results"]["bpp"]
    assert "rd/kodak4/rd_curve_table/path" in logged  # the line plot's data
    assert logged["samples/kodim01/count"] == [3]
    captions = logged["samples/kodim01/captions"][0]
    assert [c.split(":")[0] for c in captions] == ["alpha=1", "alpha=0.45", "alpha=0"]
    assert {"backbone", "control", "module", "data", "trainer", "seed"} <= config_keys(run_file)

    # the run report: the page (pictures inlined) and the slider pictures, one column per knob value
    page = (run_dir / "files" / logged["report/html/path"][0]).read_text()
    assert 'id="report-data"' in page and "data:image/webp;base64," in page and "report_assets/kodak4" not in page
    slider = json.loads((run_dir / "files" / logged["report/kodak4/knob_slider/path"][0]).read_text())
    assert slider["columns"] == ["image", "view", "original", "alpha=1", "alpha=0.45", "alpha=0"]
    assert [row[:2] for row in slider["data"]] == [["kodim01", "decoded"], ["kodim01", "bits"]]
    assert all(cell == "Image" for row in slider["data"] for cell in row[2:])  # the run file's preview
    (table,) = [r.artifact for r in records(run_file) if r.WhichOneof("record_type") == "artifact"
                and any(c.path.endswith("knob_slider.table.json") for c in r.artifact.manifest.contents)]
    pictures = [c.path for c in table.manifest.contents if c.path.startswith("media/images/")]
    assert sum(p.endswith(".webp") for p in pictures) == 1 + 3  # the original and the decoded pictures
    assert sum(p.endswith("_bits.png") for p in pictures) == 3  # a bit map per knob value

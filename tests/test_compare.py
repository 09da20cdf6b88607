"""experiment=compare: every control scheme on one backbone, one summary (RD plot + BD-rate table against
the separately trained anchors); the comparison table itself; jobs that wait for the anchor they start from."""

from __future__ import annotations

import csv
import json
import math

import pytest
from PIL import Image

from ctrlic.codecs.build import build_codec
from ctrlic.evaluation.comparison import compare_jobs, monotone
from ctrlic.evaluation.results import make_results
from ctrlic.utils.job_dependency import DependencyError, wait_for_job
from tests.conftest import run_cli

SCHEMES = ("alpha_adapters", "layer_prompts", "gain_units", "qvrf")
TINY_STF = 750_807  # parameters of a tiny STF (the anchors' model)


def _curve(job_dir) -> dict:
    return json.loads((job_dir / "results.json").read_text())["results"]


def _strictly_rising(bpp: list[float], psnr: list[float]) -> bool:
    points = sorted(zip(bpp, psnr, strict=True))
    return all(b[0] > a[0] and b[1] > a[1] for a, b in zip(points, points[1:], strict=False))


def test_compare_smoke_ranks_every_scheme_against_the_anchors_in_one_table_and_plot(tmp_path):
    """The real multirun (basic launcher: the anchors first, then the schemes that start from the λ-max anchor)."""
    run_cli("-m", "experiment=compare", "backbone=stf", "debug=smoke", "data=demo", f"hydra.sweep.dir={tmp_path}")
    rows = {r["curve"]: r for r in csv.DictReader((tmp_path / "comparison.csv").open())}
    assert set(rows) == {"anchors (3 models)", *SCHEMES}  # one row per scheme, the anchors joined into one
    anchors = rows.pop("anchors (3 models)")
    jobs = anchors["jobs"].split()
    assert jobs == ["anchor_0.0018", "anchor_0.013", "anchor_0.0483"]
    points = sorted((_curve(tmp_path / job)["bpp"][0], _curve(tmp_path / job)["psnr-rgb"][0]) for job in jobs)
    joined_bpp = [bpp for bpp, _ in points]  # one point per anchor
    assert int(anchors["points"]) == 3 and float(anchors["bpp_min"]) == pytest.approx(joined_bpp[0])
    assert int(anchors["params_per_extra_point"]) == TINY_STF and int(anchors["stored_params"]) == 3 * TINY_STF
    assert anchors["bd_reason"] == "the reference curve"
    anchors_rising = _strictly_rising(joined_bpp, [psnr for _, psnr in points])
    assert (anchors["monotone"] == "True") == anchors_rising
    for name, row in rows.items():
        curve = _curve(tmp_path / name)
        assert row["jobs"] == name and int(row["points"]) == len(curve["bpp"])
        assert float(row["bpp_span"]) == pytest.approx(max(curve["bpp"]) / min(curve["bpp"]), rel=1e-3)
        assert row["builds_on"] == "anchor_0.0483"  # the anchor of the same multirun
        assert float(row["train_s_with_base"]) > float(row["train_s"]) > 0
        assert float(row["encode_s"]) > 0 and float(row["decode_s"]) > 0
        assert int(row["stored_params"]) == TINY_STF + int(row["extra_params"])
        overlap = min(curve["bpp"]) < joined_bpp[-1] and max(curve["bpp"]) > joined_bpp[0]
        comparable = overlap and anchors_rising and _strictly_rising(curve["bpp"], curve["psnr-rgb"])
        if comparable:  # a finite BD-rate where the curves compare, and no PSNR reason
            assert math.isfinite(float(row["bd_rate_psnr"])) and "PSNR:" not in (row["bd_reason"] or "")
        else:  # no number, and the reason says why
            assert row["bd_rate_psnr"] == "" and row["bd_reason"].startswith("PSNR: ")
            if not overlap:
                assert "do not overlap" in row["bd_reason"]
            elif not anchors_rising:
                assert "the reference curve's quality does not increase strictly" in row["bd_reason"]
    # what each scheme stores beyond the anchor: QVRF one scalar per λ, the others their published sizes
    assert int(rows["qvrf"]["extra_params"]) == 3 and int(rows["qvrf"]["points"]) == 3
    assert int(rows["alpha_adapters"]["extra_params"]) == 28_800  # CALICE stf_8_8_all at tiny size
    assert int(rows["gain_units"]["points"]) == 5 and int(rows["layer_prompts"]["points"]) == 3
    assert Image.open(tmp_path / "summary_rd.png").size[0] > 600  # PSNR and MS-SSIM panels
    markdown = (tmp_path / "summary.md").read_text()
    assert markdown.startswith("## Control schemes against anchors") and "| gain_units |" in markdown
    page = (tmp_path / "report.html").read_text()
    assert 'id="comparison"' in page and '"curve": "qvrf"' in page
    assert all(json.loads((tmp_path / job / "job_status.json").read_text())["status"] == "COMPLETED"
               for job in [*jobs, *SCHEMES])


def _job(name: str, curve: str, points: list[tuple[float, float]], extra: int = 0, seconds: float = 10.0,
         builds_on: str | None = None) -> dict:
    meta = {"compare": {"curve": curve, "reference": "anchors", "builds_on": builds_on},
            "parameters": {"base": 1000, "extra": extra}, "dataset": "kodak", "reference_dataset": "kodak"}
    rows = [{"bpp": b, "psnr-rgb": q, "ms-ssim-rgb": 1 - 10 ** (-(q - 14) / 10), "encoding_time": 0.5,
             "decoding_time": 0.25} for b, q in points]
    return {"job": name, "results": make_results(name, "test", rows, meta), "final": {"time/train_seconds": seconds}}


ANCHORS = [(0.1, 24.0), (0.2, 27.0), (0.4, 30.0), (0.8, 33.0)]


def test_comparison_joins_the_anchors_and_measures_every_scheme_against_them():
    anchors = [_job(f"anchor_{i}", "anchors", [p], seconds=100.0) for i, p in enumerate(ANCHORS)]
    slower = [(b * 1.1, q) for b, q in ANCHORS]  # the anchors' qualities at 10 % more bits
    scheme = _job("alpha_adapters", "alpha_adapters", slower, extra=30, seconds=40.0, builds_on="anchor_3")
    comparison = compare_jobs([*anchors, scheme], method="pchip")
    rows = {r["curve"]: r for r in comparison["rows"]}
    joined = rows["anchors (4 models)"]
    assert joined["points"] == 4 and joined["monotone"] and joined["bpp_span"] == pytest.approx(8.0)
    assert joined["stored_params"] == 4000 and joined["params_per_extra_point"] == 1000
    assert joined["train_s"] == 400.0 and joined["bd_rate_psnr"] is None
    assert joined["bd_reason"] == "the reference curve"
    row = rows["alpha_adapters"]
    assert row["bd_rate_psnr"] == pytest.approx(10.0, abs=0.5) and row["bd_rate_ms_ssim"] == pytest.approx(10, abs=0.5)
    assert row["bd_psnr_db"] < 0 and row["bd_reason"] is None
    assert row["extra_params"] == 30 and row["params_per_extra_point"] == 10  # 30 over 3 extra points
    assert (row["train_s"], row["train_s_with_base"]) == (40.0, 140.0)
    assert row["bpp_span"] == pytest.approx(8.0) and row["encode_s"] == 0.5
    assert [c["name"] for c in comparison["curves"]] == ["anchors (4 models)", "alpha_adapters"]


def test_a_pretrained_start_is_no_curve_but_counts_once_in_the_anchors_time():
    pretrain = _job("pretrain", None, [(0.8, 33.0)], seconds=300.0)
    anchors = [_job(f"anchor_{i}", "anchors", [p], seconds=100.0, builds_on="pretrain") for i, p in enumerate(ANCHORS)]
    comparison = compare_jobs([pretrain, *anchors], method="pchip")
    assert [r["curve"] for r in comparison["rows"]] == ["anchors (4 models)"]
    (row,) = comparison["rows"]
    assert row["points"] == 4 and (row["train_s"], row["train_s_with_base"]) == (400.0, 700.0)
    assert row["builds_on"] == "pretrain"


def test_the_cpu_regime_starts_every_anchor_from_the_pretrained_model_and_the_schemes_from_an_anchor():
    from tests.test_configs import compose_cfg

    base = ("experiment=compare", "backbone=cheng2020_attn", "data=demo", "scale=cpu")
    pretrain = compose_cfg(*base, "scheme=pretrain")
    assert pretrain.after.job_dir is None and pretrain.backbone.checkpoint is None
    assert pretrain.trainer.max_steps == pretrain.compare.pretrain_steps > pretrain.compare.job_steps
    assert pretrain.module.lmbda == max(pretrain.compare.lambdas) and pretrain.compare.curve is None
    anchor = compose_cfg(*base, "scheme=anchor_0")
    assert anchor.after.job_dir == "/tmp/ctrlic-compose/../pretrain"
    assert anchor.backbone.checkpoint == anchor.after.job_dir + "/checkpoints/last.ckpt"
    assert anchor.trainer.max_steps == anchor.compare.job_steps and anchor.module.lmbda == min(anchor.compare.lambdas)
    for name in anchor.compare.schemes.split(","):  # every scheme builds over the regime's λ range
        scheme = compose_cfg(*base, f"scheme={name}", "backbone.checkpoint=null")
        assert scheme.after.job_dir == "/tmp/ctrlic-compose/../anchor_0.0483"
        assert scheme.trainer.max_steps == scheme.compare.job_steps
        build_codec(scheme.backbone, scheme.control)
    assert compose_cfg("experiment=compare", "scheme=anchor_1").backbone.checkpoint is None  # papers: from scratch


def test_a_scheme_whose_curve_bends_back_gets_a_reason_and_a_pareto_figure():
    anchors = [_job(f"anchor_{i}", "anchors", [p]) for i, p in enumerate(ANCHORS)]
    bent = _job("qvrf", "qvrf", [(0.1, 24.0), (0.2, 27.0), (0.3, 26.0), (0.4, 30.0)], builds_on="anchor_3")
    row = {r["curve"]: r for r in compare_jobs([*anchors, bent])["rows"]}["qvrf"]
    assert not monotone(bent["results"]) and row["bd_rate_psnr"] is None
    assert "does not increase strictly" in row["bd_reason"] and row["bd_rate_psnr_pareto"] == pytest.approx(0, abs=1)


def test_a_multirun_without_comparison_tags_has_no_comparison():
    assert compare_jobs([{"job": "0", "results": make_results("x", "", [{"bpp": 0.1, "psnr-rgb": 30.0}]),
                          "final": {}}]) is None


class FakeClock:
    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, 0

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1

    def __call__(self) -> float:
        return self.now


def test_a_job_waits_until_the_anchor_has_finished(tmp_path):
    clock = FakeClock()

    def finish_later(seconds):  # the anchor job writes its final metrics during the third wait
        clock.sleep(seconds)
        if clock.sleeps == 3:
            (tmp_path / "final_metrics.json").write_text("{}")

    wait_for_job({"job_dir": str(tmp_path), "timeout_min": 1, "poll_s": 5}, sleep=finish_later, clock=clock)
    assert clock.sleeps == 3
    wait_for_job({"job_dir": None}, sleep=pytest.fail)  # nothing to wait for


def test_a_failed_anchor_stops_the_wait_at_once_and_a_missing_one_after_the_timeout(tmp_path):
    clock = FakeClock()
    (tmp_path / "job_status.json").write_text(json.dumps({"status": "FAILED", "error": "ValueError: boom"}))
    with pytest.raises(DependencyError, match="failed .*boom"):
        wait_for_job({"job_dir": str(tmp_path)}, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == 0
    (tmp_path / "job_status.json").write_text(json.dumps({"status": "RUNNING"}))
    with pytest.raises(DependencyError, match="timeout_min=2"):
        wait_for_job({"job_dir": str(tmp_path), "timeout_min": 2, "poll_s": 30}, sleep=clock.sleep, clock=clock)
    assert clock.sleeps == 4


def test_the_job_status_callback_records_a_failure_in_a_multirun_job(tmp_path):
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.types import RunMode
    from omegaconf import open_dict

    from ctrlic.callbacks.job_status import JobStatusFile
    from ctrlic.utils.job_dependency import job_status
    from tests.test_sweeps import _compose

    cfg = _compose("experiment=compare")
    with open_dict(cfg):
        cfg.hydra.mode, cfg.hydra.runtime.output_dir = RunMode.MULTIRUN, str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    callback = JobStatusFile()
    callback.on_job_start(cfg)
    assert job_status(tmp_path) == {"status": "RUNNING", "error": None}
    failed = JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("out of memory"))
    callback.on_job_end(cfg, failed)
    assert job_status(tmp_path) == {"status": "FAILED", "error": "RuntimeError: out of memory"}


def test_every_backbone_compares_the_schemes_the_fitting_matrix_says_fit_and_each_composes():
    from tests.fitting_matrix import GAUSSIAN, MATRIX, Fits
    from tests.test_configs import compose_cfg

    by_backbone = compose_cfg("experiment=compare").compare.schemes_by_backbone
    assert set(by_backbone) == set(GAUSSIAN)
    for backbone in GAUSSIAN:
        fitting = {c for c in SCHEMES if isinstance(MATRIX[backbone, c], Fits)}
        assert set(by_backbone[backbone].split(",")) == fitting, backbone
    for backbone, scheme in (("cheng2020_attn", "alpha_adapters"), ("tic_hyperprior", "layer_prompts"),
                             ("tcm", "gain_units"), ("cheng2020_attn", "qvrf")):
        cfg = compose_cfg("experiment=compare", f"backbone={backbone}", f"scheme={scheme}")
        assert cfg.after.job_dir == "/tmp/ctrlic-compose/../anchor_0.0483"  # the λ-max anchor beside it
        assert cfg.backbone.checkpoint == cfg.after.job_dir + "/checkpoints/last.ckpt"
        lambdas = list(cfg.compare.lambdas)
        if scheme == "alpha_adapters":  # λ(α) spans the anchors' λs
            assert (cfg.module.lmbda_min, cfg.module.lmbda_max) == (lambdas[0], lambdas[-1])
        else:  # prompts: every λ but the anchor's; the baselines: one level per λ
            assert list(cfg.control.lambdas) == (lambdas[:-1] if scheme == "layer_prompts" else lambdas)

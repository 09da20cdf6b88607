"""The benchmark scripts measure what they claim: real bitstreams split into their parts, the same training
step in both loops, searches inside the reachable range, peak memory from the kernel, classical curves
installed as reference curves."""

import json
import math
import statistics

import pytest
import torch

from benchmarks import (
    codec_time,
    coding_overhead,
    coding_speed_vs_reference,
    compare_checks,
    compare_regime,
    memory,
    mgcf_speed,
    rate_control,
    run_all,
    run_replications,
    train_step,
)
from benchmarks.codecs import (
    BenchmarkInputError,
    build_bench_codec,
    codecs_to_measure,
    knob_points,
    load_images,
    random_crops,
)
from ctrlic.codecs.control.base import KnobError
from ctrlic.evaluation.references import load_reference_curves
from ctrlic.metrics.quality import bits_per_pixel
from tests.helpers_schemes import tiny_codec


@pytest.fixture(scope="module")
def crop64() -> torch.Tensor:
    return load_images(crop=64, limit=1)[0][1]


@pytest.fixture(scope="module")
def cheng_adapters():
    codec = build_bench_codec("cheng2020_attn+alpha_adapters")
    codec.prepare()
    return codec


def test_overhead_splits_every_section_into_coder_tables_scale_table_and_model(cheng_adapters, crop64):
    row = coding_overhead.measure(cheng_adapters, "kodim01", crop64, {"alpha": 0.5}, finer=(256,))
    sections = row["sections"]
    assert set(sections) == {"y", "z"}
    assert row["header_bytes"] + row["side_bytes"] + sum(s["real"] for s in sections.values()) // 8 == row["file_bytes"]
    y, z = sections["y"], sections["z"]
    # rANS writes about what its tables say; the 16-bit tables differ from the unquantized Gaussians
    assert abs(y["real"] - y["coded"]) < 0.02 * y["coded"] + 64 and y["coded"] != y["table"] > 0
    assert z["table"] == z["exact"] and z["losses"]["scale_table"] == 1.0  # no scale table for z
    # escaped symbols are counted apart; without them the same ratios are formed over the rest
    assert 0 <= y["coded_escaped"] <= y["coded"] and y["escapes"] == int(y["escapes"])
    assert y["losses"]["cdf_quantization_in_range"] == pytest.approx(
        (y["coded"] - y["coded_escaped"]) / (y["table"] - y["table_escaped"]))
    assert row["losses"]["total_over_exact"] == pytest.approx(
        (y["real"] + z["real"]) / (y["exact"] + z["exact"]))
    # forward's estimate is only the model-mismatch figure's denominator
    cheng_adapters.set_knobs({"alpha": 0.5})
    with torch.no_grad():
        forward_bpp = bits_per_pixel(cheng_adapters(crop64)["likelihoods"], 64 * 64)
    assert sum(row["forward_bits"].values()) == pytest.approx(float(forward_bpp) * 64 * 64, rel=1e-4)
    assert y["losses"]["model_mismatch"] == pytest.approx(y["exact"] / y["forward"])
    assert row["losses"]["model_mismatch"] == pytest.approx((y["exact"] + z["exact"]) / (y["forward"] + z["forward"]))
    finer = row["finer_tables"]["256"]["sections"]["y"]
    assert abs(finer["table"] - finer["exact"]) < abs(y["table"] - y["exact"])
    assert row["psnr_decoded"] is not None and not row["decoded_exact"]


@pytest.mark.parametrize(("make", "knobs"), [(lambda: build_bench_codec("stf+alpha_adapters"), {"alpha": 1.0}),
                                             (lambda: tiny_codec("stf", "qvrf"), {"a": 3.7})], ids=["alpha", "qvrf"])
def test_exact_ideal_of_a_channel_wise_model_is_forwards_rate(make, knobs, crop64):
    # STF codes the same round(y − μ) that forward rates: only the likelihood floor (1e-9) could part them,
    # and the ideals apply it (an untrained model's outliers would otherwise cost ~1000 bits each); QVRF
    # codes (y − μ)·a under the scale σ·a
    codec = make()
    codec.prepare()
    y = coding_overhead.measure(codec, "kodim01", crop64, knobs)["sections"]["y"]
    assert y["exact"] == pytest.approx(y["forward"], rel=1e-5)


def test_overhead_measures_a_trained_checkpoint_named_after_its_run(calice_smoke_run, crop64):
    ckpt = calice_smoke_run / "checkpoints" / "last.ckpt"
    [(name, build)] = codecs_to_measure(["stf"], [str(ckpt)], fit_steps=10)
    assert name == f"{calice_smoke_run.parent.name}/{calice_smoke_run.name}"
    codec = build()
    assert not any(p.grad is not None for p in codec.parameters())  # loaded, not fitted
    result = coding_overhead.measure_codec(codec, [("kodim01", crop64)], 2, finer=(256,))
    assert [r["knobs"]["alpha"] for r in result["rows"]] == [1.0, 0.0]
    assert result["finer_tables"]["256"]["saving_median"] is not None and result["losses"]["model_mismatch"]


def test_overhead_of_a_lossless_codec_is_exact_and_near_its_ideal(crop64):
    codec = build_bench_codec("mgcf")
    codec.prepare()
    row = coding_overhead.measure(codec, "kodim01", crop64[..., :32, :32], {})
    assert row["decoded_exact"] and row["psnr_decoded"] is None
    x = row["sections"]["x"]
    assert math.isfinite(x["exact"]) and x["forward"] == pytest.approx(x["exact"], rel=1e-3)
    assert 1.0 <= x["losses"]["total_over_exact"] < 1.02  # arithmetic coding of the model's own pmfs


def test_knob_points_keep_both_ends(cheng_adapters):
    points = knob_points(cheng_adapters, 3)
    sweep = cheng_adapters.control.sweep_points()
    assert len(points) == 3 and points[0] == sweep[0] and points[-1] == sweep[-1]
    assert knob_points(build_bench_codec("cheng2020_attn"), 3) == [{}]


def test_rate_control_targets_lie_inside_the_reachable_range(cheng_adapters, crop64):
    rows = rate_control.search_grid(cheng_adapters, "kodim01", crop64, [0.5], tolerance=0.005, max_encodes=6,
                                    outside=[0.5, 1.5])
    row, below, above = rows
    low, high = row["reachable"]
    assert low < row["target_bpp"] < high and row["in_range"]
    assert row["encodes"] <= 6 and row["span"] == pytest.approx(high / low)
    assert row["relative_error"] == pytest.approx(abs(row["bpp"] - row["target_bpp"]) / row["target_bpp"])
    # targets beyond the range: flagged, answered by the nearest end, and kept apart in the summary
    assert below["target_bpp"] == pytest.approx(low / 2) and above["target_bpp"] == pytest.approx(1.5 * high)
    assert not below["in_range"] and not above["in_range"]
    assert below["bpp"] == pytest.approx(low) and above["bpp"] == pytest.approx(high)
    summary = rate_control._summary(rows, 0.005)
    assert summary["searches"] == 1 and summary["outside"] == {"searches": 2, "flagged_out_of_range": 2,
                                                               "returned_nearest_end": 2}


def test_memory_child_reports_the_peak_and_the_tiling(tmp_path, monkeypatch):
    monkeypatch.setitem(memory.SIZES, "small", (128, 192))
    stream = tmp_path / "kodim01.bin"
    row = memory.child("cheng2020_attn", "small", "compress", stream, tile=64)
    assert row["shape"] == [128, 192] and stream.stat().st_size > 0
    assert row["peak_rss_mib"] >= row["rss_before_mib"] > 50
    assert row["tiling"] == {"tile": 64}
    decoded = memory.child("cheng2020_attn", "small", "decompress", stream, tile=0)
    assert decoded["op"] == "decompress" and decoded["peak_rss_mib"] > 50


def test_codec_time_decodes_the_exported_codec_on_the_cpu_like_the_device(crop64, tmp_path):
    codec = build_bench_codec("cheng2020_attn+alpha_adapters")
    result = codec_time.time_codec(codec, [("kodim01", crop64)], torch.device("cpu"), tmp_path)
    (row,) = result["rows"]
    assert result["entropy_path"] == "cpu64" and result["knobs"] == knob_points(codec, 3)[1]
    assert row["bytes"] > 0 and min(row["encode_s"], row["decode_s"], row["cpu_decode_s"]) > 0
    assert row["max_pixel_diff"] == 0  # one machine: the exported-and-loaded copy decodes the same pixels
    assert (tmp_path / "codec.pt").is_file()


def test_plain_and_lightning_loops_make_the_same_updates():
    codec = build_bench_codec("cheng2020_attn")
    data = train_step.loader(batch=2, crop=64, steps=3)
    plain, ours = build_bench_codec("cheng2020_attn"), build_bench_codec("cheng2020_attn")
    cpu = torch.device("cpu")
    plain_steps = train_step.plain_loop(plain, data, cpu)
    lightning_steps = train_step.lightning_loop(ours, data, cpu)
    assert len(plain_steps) == len(lightning_steps) == 2 and min(plain_steps + lightning_steps) > 0
    start = codec.backbone.state_dict()
    for (name, a), b in zip(plain.backbone.state_dict().items(), ours.backbone.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    assert any(not torch.equal(a, start[n]) for n, a in plain.backbone.state_dict().items())


def test_random_crops_and_unknown_codecs():
    batch = random_crops(run_all.ROOT / "data" / "demo" / "train", 3, 32)
    assert batch.shape == (3, 3, 32, 32)
    with pytest.raises(BenchmarkInputError, match="choose from"):
        build_bench_codec("jpeg")
    with pytest.raises(KnobError):
        build_bench_codec("cheng2020_attn").set_knobs({"alpha": 0.5})


def test_classical_reference_curves_are_installed_for_kodak():
    curves = {c["file"]: c for c in load_reference_curves("kodak")}
    for codec in ("jpeg", "webp", "avif", "jpegxl"):
        curve = curves[f"imagecodecs__{codec}"]
        assert curve["kind"] == "classical"
        assert curve["meta"]["num_images"] == 24 and curve["meta"]["dataset"] == "kodak"
        assert curve["results"]["bpp"] == sorted(curve["results"]["bpp"])


def test_replications_are_discovered_and_figures_are_named():
    assert "calice" in run_replications.discover()
    assert run_replications.main(["--list"]) == 0
    with pytest.raises(SystemExit):
        run_replications.main(["--only", "no_such_method"])
    with pytest.raises(SystemExit):
        run_all.main(["--only", "no_such_figure"])
    names = [name for name, _, _ in run_all.CPU_FIGURES + run_all.GPU_FIGURES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", ["stf", "tcm+alpha_adapters", "control_gic"])
def test_reference_coders_write_our_bits_and_decode_them(name):
    """The authors'-way reference of the speed benchmark codes the same symbols with the same tables
    (128², where the authors' TCM windows tile every map)."""
    codec = build_bench_codec(name)
    codec.prepare()
    knobs = coding_speed_vs_reference.CASES[name]
    x = load_images(crop=128, limit=1)[0][1]
    rounds = coding_speed_vs_reference.one_round(codec, coding_speed_vs_reference.reference_for(name, codec),
                                                 x, knobs, ours_first=True)
    assert rounds["ref_payload"] == rounds["ours_payload"]
    assert torch.allclose(rounds["ref_x_hat"], rounds["ours_x_hat"], atol=1e-5)


def test_reference_mgcf_coder_is_lossless(crop64):
    codec = build_bench_codec("mgcf")
    x = crop64[..., :32, :32]
    ref = coding_speed_vs_reference.reference_for("mgcf", codec)
    assert torch.equal(torch.round(ref.decode(ref.encode(x), (32, 32)) * 255), torch.round(x * 255))


def test_mgcf_speed_times_every_naive_step_and_repeats_the_rest(crop64):
    """No extrapolation: the naive decoder runs all 3P − 2 steps; CCI and RPFT figures are medians of runs."""
    model = mgcf_speed.load_mgcf(None, dim=16, patch=8)
    cci = mgcf_speed.cci_speedup(model, crop64[..., :16, :16], repeats=3)
    assert cci["naive_measured_steps"] == cci["steps"] == 3 * 8 - 2 and len(cci["cci_runs_s"]) == 3
    assert cci["cci_s"] == sorted(cci["cci_runs_s"])[1] and cci["speedup"] == cci["naive_s"] / cci["cci_s"]
    rows = mgcf_speed.rpft_figure(model, crop64[..., :16, :16], [1, 2], mgcf_speed.SMALL_RANKS, repeats=2)
    assert set(rows) == {"T=0", "T=1 RPFT", "T=1 all patches", "T=2 RPFT", "T=2 all patches"}
    for row in rows.values():
        assert row["repeats"] == 2 and len(row["encode_runs_s"]) == 2 and row["bit_exact"]
    fast = rows["T=2 RPFT"]
    assert fast["adaptation_s"] == statistics.median(fast["adaptation_runs_s"])


def comparison_of(anchor_points, spans):
    """A comparison as evaluation.comparison returns it: the anchors' curve and one row per scheme."""
    bpp, psnr = zip(*anchor_points, strict=True)
    rows = [{"curve": "anchors (3 models)", "monotone": list(psnr) == sorted(psnr), "bpp_span": bpp[-1] / bpp[0],
             "bd_rate_psnr": None}]
    rows += [{"curve": name, "bpp_span": span, "bd_rate_psnr": -1.0} for name, span in spans.items()]
    return {"rows": rows, "curves": [{"name": "anchors (3 models)", "results": {"bpp": list(bpp), "psnr-rgb": list(psnr)}}]}


def test_compare_checks_read_spans_monotony_and_jpeg_without_extrapolating():
    jpeg = {"results": {"bpp": [0.2, 0.3, 0.5], "psnr-rgb": [24.0, 27.0, 30.0]}}
    ok = compare_checks.checks(comparison_of([(0.1, 20.0), (0.25, 26.0), (0.4, 27.0)],
                                             {"alpha_adapters": 3.2, "qvrf": 5.0}), jpeg, 3.0)
    assert ok["anchors_monotone"] and ok["every_knob_spans_enough"] and ok["anchors_above_jpeg_somewhere"]
    # below JPEG's lowest rate: no JPEG value; 0.25 bpp: 25.5 dB by linear interpolation; 0.4: 28.5 dB
    assert [r["jpeg_psnr"] for r in ok["anchors_vs_jpeg"]] == [None, pytest.approx(25.5), pytest.approx(28.5)]
    assert [r["above"] for r in ok["anchors_vs_jpeg"]] == [None, True, False]
    bad = compare_checks.checks(comparison_of([(0.1, 20.0), (0.25, 19.0), (0.6, 21.0)], {"alpha_adapters": 2.9}),
                                jpeg, 3.0)
    assert not bad["anchors_monotone"] and not bad["every_knob_spans_enough"]
    assert not bad["anchors_above_jpeg_somewhere"]


def test_a_replication_reuses_a_finished_sweep_only(tmp_path):
    for job in ("anchor_0.1", "anchor_0.2", "alpha_adapters"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "results.json").write_text("{}")
    assert compare_regime._finished(tmp_path, "alpha_adapters")
    assert not compare_regime._finished(tmp_path, "layer_prompts")
    (tmp_path / "anchor_0.2" / "results.json").unlink()
    assert not compare_regime._finished(tmp_path, "alpha_adapters")
    assert not compare_regime._finished(tmp_path / "missing", "alpha_adapters")
    (tmp_path / "alpha_adapters" / ".hydra").mkdir()
    (tmp_path / "alpha_adapters" / ".hydra" / "overrides.yaml").write_text("- scheme=alpha_adapters\n- compare.job_steps=2000\n")
    assert compare_regime.job_overrides(tmp_path, "alpha_adapters") == ["scheme=alpha_adapters", "compare.job_steps=2000"]
    assert compare_regime.job_overrides(tmp_path, "anchor_0.1") == []


def test_a_sweep_without_finished_jobs_is_one_line(tmp_path):
    (tmp_path / "job").mkdir()
    with pytest.raises(SystemExit, match="has no job folders with results.json"):
        compare_regime.summarized(tmp_path)


def test_eval_throughput_times_whole_evaluations_and_checks_their_results_agree(tmp_path):
    from PIL import Image

    from benchmarks import eval_throughput
    from ctrlic.codecs.build import export_codec
    from tests.helpers_eval import codec, images

    folder = tmp_path / "images"
    folder.mkdir()
    for item in images()[:2]:
        Image.fromarray((item["x"].permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(
            folder / f"{item['name']}.png")
    model = export_codec(codec(), tmp_path / "alpha.codec.safetensors")
    path = eval_throughput.main(["--checkpoint", str(model), "--images", str(folder), "--workers", "1",
                                 "--points", "2", "--repeats", "2", "--name", "eval_throughput_test"])
    try:
        payload = json.loads(path.read_text())
    finally:
        path.unlink()
    row = payload["workers"]["1"]
    assert payload["num_images"] == 2 and len(row["runs_s"]) == 2 and row["seconds"] == statistics.median(row["runs_s"])
    assert row["images_per_s"] == pytest.approx(2 / row["seconds"]) and row["codings_per_s"] == pytest.approx(4 / row["seconds"])

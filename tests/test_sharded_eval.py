"""Sharded, resumable evaluation: worker processes and shards give the results of one process, a killed
evaluation or shard, run again, codes only the records it lacks, and a bad shard spec is one line.
(The shards as a real Slurm job array: tests/slurm.)"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from ctrlic.codecs import bitstream
from ctrlic.evaluation.evaluate import EmptySetError, MergeModeError, evaluate
from ctrlic.evaluation.records import RECORDS, RecordStore
from ctrlic.evaluation.results import load_results
from ctrlic.evaluation.sharding import ShardError, parse_shard, plan
from ctrlic.metrics.distribution import PatchFID, PatchKID, fid_kid, patch_features
from ctrlic.metrics.quality import to_8bit
from ctrlic.tasks.evaluate import shared_folder
from tests import forked
from tests.conftest import run_cli
from tests.helpers_eval import codec, comparable, images, settings
from tests.test_metrics_perceptual import TinyFeatures


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one_worker")
    evaluate(codec(), {"crops": images()}, out, settings())
    shutil.copytree(out / RECORDS, out / "pristine_records")  # tests below write into the records; copy these
    return out


def records_copy(one_worker: Path, to: Path) -> str:
    """A copy of the one-worker run's records as it wrote them."""
    shutil.copytree(one_worker / "pristine_records", to)
    return str(to)


def test_shards_split_the_images_of_all_sets_between_them():
    sets = {"a": range(3), "b": range(4)}
    shards = [plan(sets, (i, 3)) for i in range(3)]
    assert sorted((u.set_name, u.index) for s in shards for u in s) == sorted(
        [("a", i) for i in range(3)] + [("b", i) for i in range(4)])
    assert [len(s) for s in shards] == [3, 2, 2]
    assert parse_shard(None) == (0, 1) and parse_shard("2/3") == (2, 3)
    for bad in ("3/2", "2/2", "-1/2", "1", "a/b", "0/0", "1/2/3"):
        with pytest.raises(ShardError, match="eval.shard"):
            parse_shard(bad)


@pytest.mark.parametrize("bad", ["a/b", "0/0"])
def test_a_bad_shard_stops_the_evaluation_before_it_codes(bad, tmp_path):
    with pytest.raises(ShardError, match=f"eval.shard='{bad}'"):
        evaluate(codec(), {"crops": images()}, tmp_path, settings(shard=bad))
    assert not (tmp_path / RECORDS).exists()


def test_an_empty_set_stops_the_evaluation_before_it_codes(tmp_path):
    with pytest.raises(EmptySetError, match="set\\(s\\) 'empty' hold no image"):
        evaluate(codec(), {"crops": images(), "empty": []}, tmp_path / "out", settings())
    assert not (tmp_path / "out").exists()


def test_a_bad_shard_is_one_line_from_run_py(tmp_path):
    proc = run_cli("task=eval", "experiment=demo", "debug=smoke", "eval.shard=3/2", f"hydra.run.dir={tmp_path}",
                   check=False)
    output = proc.stdout + proc.stderr
    errors = [line for line in output.splitlines() if "ERROR" in line or "Error" in line]
    assert proc.returncode == 2, output[-4000:]
    assert len(errors) == 1 and "eval.shard='3/2': needs 0 <= i < n" in errors[0], output[-4000:]
    assert "Traceback" not in output and not (tmp_path / RECORDS).exists()


def test_shards_of_a_multirun_share_a_folder_named_by_their_other_overrides():
    assert shared_folder([]) == "eval"
    assert shared_folder(["task=eval", "ckpt_path=runs/a b.ckpt"]) == "task=eval,ckpt_path=runs_a_b.ckpt"
    long = shared_folder(["task=eval", f"ckpt_path=/{'x' * 200}/last.ckpt"])
    assert len(long) == 109 and long != shared_folder(["task=eval", f"ckpt_path=/{'x' * 200}/best.ckpt"])


def test_two_workers_give_the_results_of_one(one_worker, tmp_path):
    evaluate(codec(), {"crops": images()}, tmp_path, settings(workers=2))
    assert comparable(tmp_path) == comparable(one_worker)


def test_two_shards_give_the_results_of_one_once_both_are_done(one_worker, tmp_path, caplog):
    shared = tmp_path / "shared"
    store = RecordStore(shared / RECORDS)
    first = evaluate(codec(), {"crops": images()}, shared, settings(shard="0/2"))
    assert first == {} and not (shared / "results.json").exists()  # shard 1 has not run yet
    with pytest.raises(MergeModeError, match="2 image"):  # a merge now would lack shard 1's images
        evaluate(codec(), {"crops": images()}, shared, settings(merge="only"))

    # shard 0 again, one of its records lost: it codes that one alone and leaves the others untouched
    mine = sorted(store.root.glob("*/*/p*.json"))
    assert [p.parent.name for p in mine] == ["000000", "000000", "000002", "000002"]
    mine[1].unlink()
    kept = {p: p.stat().st_mtime_ns for p in mine if p.exists()}
    with caplog.at_level(logging.INFO, logger="ctrlic"):
        evaluate(codec(), {"crops": images()}, shared, settings(shard="0/2"))
    assert "shard 0/2: 1 record(s) coded, 3 reused" in caplog.text
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())

    second = evaluate(codec(), {"crops": images()}, shared, settings(shard="1/2"))
    assert set(second) == {"crops"}
    assert comparable(shared) == comparable(one_worker)
    # a shard rerun after the merge codes and merges nothing again, and answers with the merged results
    caplog.clear()
    written = (shared / "results.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="ctrlic"):
        again = evaluate(codec(), {"crops": images()}, shared, settings(shard="1/2"))
    assert again == {"crops": load_results(shared / "results.json")} and again["crops"]["results"]["bpp"]
    assert (shared / "results.json").stat().st_mtime_ns == written
    assert "0 record(s) coded, 4 reused" in caplog.text and "another shard merged these records" in caplog.text
    # a merge of the same records anywhere else gives the same files
    evaluate(codec(), {"crops": images()}, tmp_path / "merged", settings(merge="only", records=str(store.root)))
    assert comparable(tmp_path / "merged") == comparable(one_worker)


def test_records_of_another_model_are_not_reused(one_worker, tmp_path, caplog):
    other = codec()
    other.set_knobs({"alpha": 1.0})
    for p in other.control.attached_parameters():
        p.data.mul_(2)
    other.prepare()
    with caplog.at_level(logging.INFO, logger="ctrlic"):
        evaluate(other, {"crops": images()}, tmp_path, settings(records=records_copy(one_worker, tmp_path / "records"),
                                                                merge="never"))
    assert "8 record(s) coded, 0 reused" in caplog.text


def test_a_merge_refuses_records_of_an_image_that_changed_since(one_worker, tmp_path):
    changed = images()
    changed[2]["x"] = changed[2]["x"].flip(-1)  # same name, other content
    records = records_copy(one_worker, tmp_path / "records")
    with pytest.raises(MergeModeError, match="1 image\\(s\\) have no records .* of these images"):
        evaluate(codec(), {"crops": changed}, tmp_path, settings(merge="only", records=records))
    assert not (tmp_path / "results.json").exists()
    evaluate(codec(), {"crops": images()}, tmp_path, settings(merge="only", records=records))
    assert comparable(tmp_path) == comparable(one_worker)


def test_a_finer_scale_table_is_an_evaluation_setting_of_its_own(one_worker, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="ctrlic"):
        finer = evaluate(codec(), {"crops": images()}, tmp_path, settings(
            records=records_copy(one_worker, tmp_path / "records"), scale_levels=256, save_bitstreams=True))
    assert "8 record(s) coded, 0 reused" in caplog.text  # the 64-level records are not its own
    results, default = finer["crops"], comparable(one_worker)[0]
    assert results["meta"]["scale_levels"] == 256 and default["meta"]["scale_levels"] == 64
    files = sorted((tmp_path / "bitstreams").rglob("*.ctl"))
    assert len(files) == 8 and all(bitstream.unpack(f.read_bytes())[0].extras["sl"] == 256 for f in files)
    assert results["results"]["bpp"] != default["results"]["bpp"]
    assert results["results"]["psnr-rgb"] == default["results"]["psnr-rgb"]  # the same symbols, decoded the same


def test_a_killed_evaluation_codes_only_the_missing_records_when_run_again(one_worker, tmp_path, caplog):
    store = RecordStore(tmp_path / RECORDS)
    child = forked.start("tests/helpers_eval.py", [tmp_path], env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.monotonic() + 300
    while store.count() < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    assert child.wait().returncode == -signal.SIGKILL, "the evaluation ended before it could be killed"
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / RECORDS).glob("*/*/p*.json")}
    assert 3 <= len(before) < 8 and not (tmp_path / "results.json").exists()
    with caplog.at_level(logging.INFO, logger="ctrlic"):
        evaluate(codec(), {"crops": images()}, tmp_path, settings())
    assert f"{8 - len(before)} record(s) coded, {len(before)} reused" in caplog.text
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in before.items())  # kept, not rewritten
    assert comparable(tmp_path) == comparable(one_worker)


def test_fid_and_kid_from_per_image_features_equal_the_metrics_on_the_images():
    """The merge computes FID/KID from features saved per image: the figures the metrics give on the images."""
    net = TinyFeatures()
    torch.manual_seed(1)
    x = torch.rand(4, 3, 64, 64)
    x_hat = to_8bit((x + 0.2 * torch.randn_like(x)).clamp(0, 1))
    real = [patch_features(net, x[i:i + 1], 32) for i in range(4)]
    fake = [patch_features(net, x_hat[i:i + 1], 32) for i in range(4)]
    assert [f.shape for f in real] == [(5, TinyFeatures.num_features)] * 4
    got = fid_kid(real, fake, kid_subsets=2, kid_subset_size=20)
    fid = PatchFID(feature=net, patch_size=32)
    kid = PatchKID(feature=net, patch_size=32, subsets=2, subset_size=20)  # all 20 patches: order-free
    for metric in (fid, kid):
        metric.update(x_hat, x)
    assert got["fid"] == pytest.approx(float(fid.compute()), rel=1e-3) and got["fid"] > 0
    assert got["kid"] == pytest.approx(float(kid.compute()[0]), rel=1e-3) and got["kid"] > 0

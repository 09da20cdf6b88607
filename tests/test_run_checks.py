"""run.py refuses, in one line with exit code 2, a ckpt_path it cannot use (train, eval, export)."""

from __future__ import annotations

import pytest
import torch

from ctrlic.codecs.build import export_codec
from ctrlic.lightning_modules.checkpoint import open_codec
from ctrlic.lightning_modules.rd import RDModule
from ctrlic.lightning_modules.resume_check import ResumeCheckpointError, check_resume_checkpoint
from ctrlic.lightning_modules.variable_rate import VariableRateModule
from tests.conftest import SMOKE, run_cli
from tests.helpers_untrusted import run_error_line


def _bad_ckpt(case: str, smoke_run, tmp_path) -> tuple[str, tuple[str, ...], str]:
    """(ckpt_path, extra overrides, expected words) for each way a ckpt_path can be wrong."""
    if case == "text file":
        (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
        return str(tmp_path / "notes.ckpt"), (), "is not a PyTorch checkpoint"
    if case == "missing file":
        return str(tmp_path / "nope.ckpt"), (), "does not exist"
    if case == "codec file":
        path = export_codec(open_codec(smoke_run / "checkpoints" / "last.ckpt"), tmp_path / "c.codec.safetensors")
        return str(path), (), "is an exported codec file"
    assert case == "other architecture"  # a tiny Cheng2020-attn checkpoint into an N=128 one
    return str(smoke_run / "checkpoints" / "last.ckpt"), ("backbone.size=q1",), "another architecture"


@pytest.mark.parametrize("case", ["text file", "missing file", "codec file", "other architecture"])
def test_bad_training_ckpt_path_is_refused_in_one_line(case, smoke_run, tmp_path):
    ckpt_path, extra, words = _bad_ckpt(case, smoke_run, tmp_path)
    proc = run_cli(*SMOKE, f"ckpt_path={ckpt_path}", *extra, f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert words in run_error_line(proc)
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "provenance").exists()


@pytest.mark.parametrize("task", ["eval", "export"])
@pytest.mark.parametrize("case", ["text file", "missing file"])
def test_bad_eval_or_export_ckpt_path_is_refused_in_one_line(task, case, tmp_path):
    ckpt_path, _, words = _bad_ckpt(case, None, tmp_path)
    proc = run_cli(*SMOKE, f"task={task}", f"ckpt_path={ckpt_path}", f"export_path={tmp_path / 'x.codec'}",
                   f"hydra.run.dir={tmp_path / 'run'}", check=False)
    assert words in run_error_line(proc)
    assert not (tmp_path / "x.codec").exists()


def test_checkpoint_of_another_training_module_is_refused(smoke_run):
    module = VariableRateModule(open_codec(smoke_run / "checkpoints" / "last.ckpt"))
    with pytest.raises(ResumeCheckpointError, match="written by ctrlic.lightning_modules.rd.RDModule"):
        check_resume_checkpoint(smoke_run / "checkpoints" / "last.ckpt", module)


def test_checkpoint_whose_weights_do_not_fit_is_refused(smoke_run, tmp_path):
    checkpoint = torch.load(smoke_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if ".g_s." not in k}
    torch.save(checkpoint, tmp_path / "partial.ckpt")
    module = RDModule(open_codec(smoke_run / "checkpoints" / "last.ckpt"))
    with pytest.raises(ResumeCheckpointError, match=r"does not fit this run's RDModule: \d+ missing"):
        check_resume_checkpoint(tmp_path / "partial.ckpt", module)

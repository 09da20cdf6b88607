"""Files from elsewhere never run code: no unpickling of arbitrary objects without an explicit per-call
opt-in, no class built unless it is one of ctrlic's own, no format version we do not know."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import save_file

from ctrlic.codecs.bitstream import read_header
from ctrlic.codecs.build import build_codec, export_codec
from ctrlic.codecs.checkpoint import UnsafeCheckpointError
from ctrlic.codecs.codec_file import CODEC_FORMAT, CodecFileError, write_codec_file
from ctrlic.codecs.recorded import RecordedArchitectureError, allowed_targets
from ctrlic.lightning_modules.checkpoint import CHECKPOINT_FORMAT, open_codec
from ctrlic.lightning_modules.discriminator import AdversarialLoss
from ctrlic.lightning_modules.rd import RDModule
from ctrlic.lightning_modules.vq import load_discriminator
from ctrlic.tasks.assemble import assemble_prompt_sets
from tests.conftest import ROOT, SMOKE, run_cli, tiny_stf_with_adapters
from tests.helpers_cli import ctrlic, kodak_crop
from tests.helpers_untrusted import (
    backbone_weights,
    cli_error_line,
    codec_payload_v1,
    open_file_arch,
    run_error_line,
    save_with_marker,
    training_checkpoint,
)

CHENG_TINY = {"_target_": "ctrlic.codecs.backbones.cheng.Cheng2020Attn", "N": 32}
FIXED_RATE = {"_target_": "ctrlic.codecs.control.base.FixedRate"}


@pytest.fixture(scope="module")
def smoke_codec(smoke_run):
    return open_codec(smoke_run / "checkpoints" / "last.ckpt")


# -- pickles that run code ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["compress", "info"])
def test_malicious_pickle_as_model_never_runs(command, smoke_codec, tmp_path):
    marker = tmp_path / "marker"
    evil = save_with_marker(codec_payload_v1(smoke_codec), tmp_path / "evil.codec.pt", marker)
    image = kodak_crop(tmp_path / "img.png", 64, 64)
    args = ("compress", image, tmp_path / "out.ctl", "--model", evil) if command == "compress" else ("info", evil)
    line = cli_error_line(ctrlic(*args, home=tmp_path / "home"))
    assert "arbitrary code" in line and "--trust-pickle" in line and "pathlib" in line
    assert not marker.exists()
    assert not (tmp_path / "out.ctl").exists()


def test_trust_pickle_loads_an_old_pickled_model_and_warns(smoke_codec, tmp_path):
    marker = tmp_path / "marker"
    evil = save_with_marker(codec_payload_v1(smoke_codec), tmp_path / "evil.codec.pt", marker)
    image = kodak_crop(tmp_path / "img.png", 64, 64)
    proc = ctrlic("compress", image, tmp_path / "out.ctl", "--model", evil, "--trust-pickle", home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "executed"  # the opt-in really used the full unpickler
    assert "UNSAFE LOAD: --trust-pickle" in proc.stderr and "executes any code" in proc.stderr
    assert read_header((tmp_path / "out.ctl").read_bytes()).fingerprint == smoke_codec.fingerprint


@pytest.mark.parametrize("task", ["eval", "export", "train"])
def test_malicious_pickle_as_ckpt_path_never_runs(task, smoke_run, tmp_path):
    marker = tmp_path / "marker"
    evil = save_with_marker(training_checkpoint(smoke_run), tmp_path / "evil.ckpt", marker)
    proc = run_cli(*SMOKE, f"task={task}", f"ckpt_path={evil}", f"export_path={tmp_path / 'x.codec'}",
                   f"hydra.run.dir={tmp_path / 'run'}", check=False)
    line = run_error_line(proc)
    assert "arbitrary code" in line and "trust_pickle=true" in line
    assert not marker.exists()
    assert not (tmp_path / "x.codec").exists() and not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow  # ~23 s; the other trust_pickle tests cover the opt-in
def test_trust_pickle_true_lets_export_and_training_use_an_old_pickled_checkpoint(smoke_run, smoke_codec, tmp_path):
    marker = tmp_path / "marker"
    evil = save_with_marker(training_checkpoint(smoke_run), tmp_path / "evil.ckpt", marker)
    out = tmp_path / "codec.safetensors"
    proc = run_cli(*SMOKE, "task=export", f"ckpt_path={evil}", "trust_pickle=true", f"export_path={out}",
                   f"hydra.run.dir={tmp_path / 'export'}")
    assert marker.read_text() == "executed"
    assert "UNSAFE LOAD: trust_pickle=true" in proc.stdout + proc.stderr
    assert open_codec(out).fingerprint == smoke_codec.fingerprint
    marker.unlink()
    run_cli(*SMOKE, f"ckpt_path={evil}", "trust_pickle=true", "trainer.max_steps=9", "callbacks.rd_sweep=null",
            "callbacks.reconstructions=null", f"hydra.run.dir={tmp_path / 'train'}")
    assert marker.read_text() == "executed"
    assert training_checkpoint(tmp_path / "train")["global_step"] == 9


def test_malicious_pickle_as_backbone_checkpoint_runs_only_with_backbone_trust_pickle(smoke_run, tmp_path):
    marker = tmp_path / "marker"
    evil = save_with_marker(backbone_weights(smoke_run), tmp_path / "evil.pth.tar", marker)
    refused = run_cli("experiment=demo", "task=info", f"backbone.checkpoint={evil}",
                      f"hydra.run.dir={tmp_path / 'no'}", check=False)
    line = run_error_line(refused)
    assert "arbitrary code" in line and "backbone.trust_pickle=true" in line
    assert not marker.exists()
    allowed = run_cli("experiment=demo", "task=info", f"backbone.checkpoint={evil}", "backbone.trust_pickle=true",
                      f"hydra.run.dir={tmp_path / 'yes'}")
    assert marker.read_text() == "executed"
    assert "UNSAFE LOAD: backbone.trust_pickle=true" in allowed.stdout + allowed.stderr


def test_discriminator_checkpoint_needs_module_trust_pickle(tmp_path):
    loss = AdversarialLoss(in_channels=3, ndf=8, n_layers=2)
    marker = tmp_path / "marker"
    weights = {"state_dict": {f"loss.{k}": v for k, v in loss.state_dict().items()}}
    evil = save_with_marker(weights, tmp_path / "model.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError, match="module.trust_pickle=true"):
        load_discriminator(loss, str(evil))
    assert not marker.exists()
    load_discriminator(loss, str(evil), trust_pickle=True)
    assert marker.read_text() == "executed"


# -- our own files load without the full unpickler ----------------------------------------------------


def test_our_training_checkpoints_load_with_weights_only(smoke_run):
    path = smoke_run / "checkpoints" / "last.ckpt"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["ctrlic"]["format"] == CHECKPOINT_FORMAT
    assert checkpoint["ctrlic"]["module"] == "ctrlic.lightning_modules.rd.RDModule"


def test_omegaconf_hyperparameters_are_saved_as_plain_data(tmp_path):
    knobs = OmegaConf.create([{"alpha": 0.5}, {"alpha": 1.0}])  # as Hydra passes a config list
    module = RDModule(build_codec(_conf("backbone", "cheng2020_attn", size="tiny")), val_knobs=knobs)
    checkpoint = {"hyper_parameters": dict(module.hparams), "hparams_type": type(module.hparams["val_knobs"])}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)
    assert loaded["hyper_parameters"]["val_knobs"] == [{"alpha": 0.5}, {"alpha": 1.0}]
    assert "hparams_type" not in loaded


def _conf(group: str, name: str, **overrides) -> dict:
    return {**OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / group / f"{name}.yaml")), **overrides}


def _tiny_codecs() -> dict:
    from tests.helpers_beta_calice import tiny_calice_and_beta
    from tests.helpers_control_gic import tiny_codec as tiny_vqgan
    from tests.helpers_lpm import tiny_lpm_codec

    return {
        "cheng": lambda: build_codec(_conf("backbone", "cheng2020_attn", size="tiny")),
        "stf_alpha": lambda: build_codec(*tiny_stf_with_adapters()),
        "stf_beta": lambda: tiny_calice_and_beta()[1],
        "tic_prompts": tiny_lpm_codec,
        "mgcf_instance_lora": lambda: build_codec(_conf("backbone", "mgcf", size="tiny"),
                                                  _conf("control", "instance_lora")),
        "vqgan_granularity": tiny_vqgan,
    }


@pytest.mark.parametrize("family", list(_tiny_codecs()))
def test_exported_codec_file_is_safetensors_with_a_json_header(family, tmp_path):
    torch.manual_seed(0)
    codec = _tiny_codecs()[family]()
    path = export_codec(codec, tmp_path / "c.codec.safetensors")
    with safe_open(str(path), framework="pt") as f:
        metadata, keys = f.metadata(), set(f.keys())
    assert metadata["format"] == CODEC_FORMAT == "ctrlic-codec/2"
    assert json.loads(metadata["arch"]) == json.loads(json.dumps(codec.arch))
    assert metadata["fingerprint"] == codec.fingerprint.hex()
    assert keys == set(codec.backbone.state_dict())  # entropy tables included
    loaded = open_codec(path)
    assert loaded.fingerprint == codec.fingerprint and loaded.config_hash == codec.config_hash
    for key, value in codec.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key


@pytest.mark.parametrize("zip_format", [True, False])
def test_zoo_style_state_dicts_load_weights_only_through_the_hub(zip_format, smoke_run, tmp_path, monkeypatch, caplog):
    """CompressAI's zoo files are plain tensor dicts (``zoo:`` names resolve to URLs read by the hub loader);
    both torch serialization formats of such a dict load without the full unpickler."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    state = backbone_weights(smoke_run)["state_dict"]
    path = tmp_path / f"cheng2020_attn-mse-1-{int(zip_format)}.pth.tar"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    with caplog.at_level(logging.WARNING, logger="ctrlic"):
        codec = build_codec(_conf("backbone", "cheng2020_attn", size="tiny", checkpoint=path.as_uri()))
    assert "UNSAFE" not in caplog.text
    loaded = codec.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if v.numel()), "weights differ"


def test_old_pickled_codec_files_load_with_weights_only(smoke_codec, tmp_path, caplog):
    path = tmp_path / "old.codec.pt"
    torch.save(codec_payload_v1(smoke_codec), path)
    with caplog.at_level(logging.WARNING, logger="ctrlic"):
        loaded = open_codec(path)  # no opt-in: only a weights-only load can have read it
    assert loaded.fingerprint == smoke_codec.fingerprint
    assert "UNSAFE" not in caplog.text


# -- files do not choose what gets built ----------------------------------------------------------------


def test_every_configured_backbone_and_control_class_is_allowed():
    for part in ("backbone", "control"):
        targets = {OmegaConf.load(p).get("_target_") for p in (ROOT / "conf" / part).glob("*.yaml")} - {None}
        assert len(targets) >= 6
        assert targets <= allowed_targets(part), targets - allowed_targets(part)
    assert not allowed_targets("backbone") & allowed_targets("control")


def test_codec_file_naming_builtins_open_is_refused_and_the_file_is_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    crafted = write_codec_file(tmp_path / "crafted.codec.safetensors", open_file_arch(victim),
                               {"w": torch.zeros(1)}, "00" * 8)
    line = cli_error_line(ctrlic("info", crafted, home=tmp_path / "home"))
    assert "refusing to build 'builtins.open'" in line
    assert victim.read_text() == "precious"


def _crafted(victim: Path) -> dict[str, tuple[str, dict]]:
    """(file kind, recorded architecture) of files that try to build something that is not ctrlic's."""
    opener = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    return {
        "torch codec file": ("codec", open_file_arch(victim)),
        "training checkpoint": ("checkpoint", open_file_arch(victim)),
        "nested in the control": ("codec", {"name": "x", "backbone": CHENG_TINY,
                                            "control": {**FIXED_RATE, "inner": opener}}),
        "inside a list": ("codec", {"name": "x", "backbone": {**CHENG_TINY, "_args_": [opener]}, "control": None}),
        "a backbone class as control": ("codec", {"name": "x", "backbone": CHENG_TINY, "control": CHENG_TINY}),
        "another top-level key": ("codec", {"name": "x", "backbone": CHENG_TINY, "control": None, "extra": opener}),
        "not a string": ("codec", {"name": "x", "backbone": {"_target_": ["builtins.open"]}, "control": None}),
        "an interpolation": ("codec", {"name": "x", "backbone": {**CHENG_TINY, "N": "${oc.env:HOME}"},
                                       "control": None}),
    }


@pytest.mark.parametrize("case", list(_crafted(Path("v"))))
def test_recorded_targets_outside_ctrlic_are_refused_wherever_they_sit(case, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    kind, arch = _crafted(victim)[case]
    obj = {"format": "ctrlic-codec/1", "arch": arch, "state_dict": {"w": torch.zeros(1)}, "fingerprint": ""} \
        if kind == "codec" else {"state_dict": {"model.backbone.w": torch.zeros(1)}, "ctrlic": {"arch": arch}}
    torch.save(obj, tmp_path / "crafted.pt")
    with pytest.raises(RecordedArchitectureError):
        open_codec(tmp_path / "crafted.pt")
    assert victim.read_text() == "precious"


def test_assemble_refuses_a_checkpoint_naming_a_foreign_class(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    torch.save({"state_dict": {"model.backbone.w": torch.zeros(1)},
                "ctrlic": {"arch": open_file_arch(victim), "trained_prompt_sets": [0]}}, tmp_path / "a.ckpt")
    with pytest.raises(RecordedArchitectureError, match="builtins.open"):
        assemble_prompt_sets([tmp_path / "a.ckpt"])
    assert victim.read_text() == "precious"


# -- format versions ------------------------------------------------------------------------------------


def test_unknown_format_versions_are_refused(smoke_codec, tmp_path):
    arch = json.dumps(smoke_codec.arch)
    state = {k: v.contiguous() for k, v in smoke_codec.backbone.state_dict().items()}
    save_file(state, tmp_path / "new.safetensors", metadata={"format": "ctrlic-codec/99", "arch": arch})
    with pytest.raises(RecordedArchitectureError, match="format 'ctrlic-codec/99' is not one this ctrlic reads"):
        open_codec(tmp_path / "new.safetensors")
    torch.save({"arch": smoke_codec.arch, "state_dict": state}, tmp_path / "unversioned.pt")
    with pytest.raises(RecordedArchitectureError, match="format None"):
        open_codec(tmp_path / "unversioned.pt")
    torch.save({"state_dict": {}, "ctrlic": {"format": "ctrlic-checkpoint/9", "arch": smoke_codec.arch}},
               tmp_path / "future.ckpt")
    with pytest.raises(RecordedArchitectureError, match="ctrlic-checkpoint/9"):
        open_codec(tmp_path / "future.ckpt")
    save_file(state, tmp_path / "broken.safetensors", metadata={"format": CODEC_FORMAT, "arch": "{not json"})
    with pytest.raises(CodecFileError, match="not valid JSON"):
        open_codec(tmp_path / "broken.safetensors")

"""Hostile files for the loading tests: pickles whose unpickling writes a marker file, crafted architectures."""

from __future__ import annotations

from pathlib import Path

import torch

from ctrlic.codecs.codec import Codec


class WritesMarker:
    """Unpickled by the full unpickler, this calls ``Path(marker).write_text("executed")``: a harmless stand-in
    for a payload that runs code (the pickle names ``pathlib.Path.write_text``, not this class)."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.write_text, (self.marker, "executed"))


def save_with_marker(obj: dict, path: Path, marker: Path) -> Path:
    """``torch.save`` of ``obj`` plus an entry whose unpickling writes ``marker``."""
    torch.save({**obj, "note": WritesMarker(marker)}, path)
    return path


def codec_payload_v1(codec: Codec) -> dict:
    """What ``export_codec`` wrote before safetensors: a pickled dict, format ``ctrlic-codec/1``."""
    codec.prepare()
    return {"format": "ctrlic-codec/1", "arch": codec.arch, "state_dict": codec.backbone.state_dict(),
            "fingerprint": codec.fingerprint.hex()}


def training_checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def backbone_weights(run_dir: Path) -> dict:
    """The backbone's state dict of a training run, as authors' checkpoints wrap it (``{"state_dict": ...}``)."""
    prefix = "model.backbone."
    state = training_checkpoint(run_dir)["state_dict"]
    return {"state_dict": {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}}


def open_file_arch(victim: Path) -> dict:
    """An architecture whose backbone "class" is ``builtins.open`` on ``victim`` in write mode (truncates it)."""
    return {"name": "cheng2020_attn", "size": None, "control": None,
            "backbone": {"_target_": "builtins.open", "file": str(victim), "mode": "w"}}


def run_error_line(proc) -> str:
    """run.py's one error line; asserts exit code 2 and no traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    errors = [line for line in out.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, out[-4000:]
    return errors[0]


def cli_error_line(proc) -> str:
    """The ctrlic command's one error line; asserts exit code 2 and that nothing else went to stderr."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("ctrlic: error: "), proc.stderr
    return lines[0]

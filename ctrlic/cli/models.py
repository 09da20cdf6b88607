"""Opening models for the command, and finding the model of a bitstream by its weights fingerprint.

``compress`` remembers which model file has which fingerprint (``$CTRLIC_HOME/models.json``, default
``~/.cache/ctrlic``), so ``decompress`` works without ``--model`` on the machine that compressed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ctrlic.cli.errors import CLIError
from ctrlic.cli.files import OutputError, atomic_write, check_regular

if TYPE_CHECKING:
    from ctrlic.codecs.codec import Codec

HOME_ENV = "CTRLIC_HOME"


def home() -> Path:
    """Where the command keeps its model index."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "ctrlic"


def _index_path() -> Path:
    return home() / "models.json"


def _read_index() -> dict[str, str]:
    try:
        index = json.loads(_index_path().read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def remember(codec: Codec, source: Path) -> None:
    """Record ``source`` as the model file with ``codec``'s fingerprint (best effort: a read-only home is fine)."""
    index = _read_index()
    key, value = codec.fingerprint.hex(), str(source.resolve())
    if index.get(key) == value:
        return
    index[key] = value
    try:
        atomic_write(_index_path(), lambda tmp: tmp.write_text(json.dumps(index, indent=1, sort_keys=True)))
    except (OSError, OutputError):
        pass


def lookup(fingerprint: bytes) -> Path | None:
    """The remembered model file with these weights, if it still exists."""
    found = _read_index().get(fingerprint.hex())
    return Path(found) if found and Path(found).is_file() else None


def open_model(source: str | Path, cache: dict[Path, Codec] | None = None, *, trust_pickle: bool = False) -> Codec:
    """Load an exported codec file or a ctrlic training checkpoint (once per path when ``cache`` is given).

    ``trust_pickle`` (``--trust-pickle``) lets a file that needs the full unpickler load, with a warning.
    """
    path = Path(source)
    if not path.exists():
        raise CLIError(f"model '{source}' does not exist; pass an exported codec file (.codec.safetensors) or a training checkpoint")
    if path.is_dir():
        raise CLIError(f"model '{source}' is a folder; pass an exported codec file or a checkpoint")
    check_regular(path, "model")
    key = path.resolve()
    if cache is not None and key in cache:
        return cache[key]
    from ctrlic.codecs.checkpoint import PickleTrust  # torch and hydra: only once a model is needed
    from ctrlic.codecs.finite import CodingRangeError
    from ctrlic.lightning_modules.checkpoint import open_codec

    try:
        codec = open_codec(path, PickleTrust(trust_pickle, "--trust-pickle")).cpu().eval()
    except CodingRangeError as exc:
        raise CLIError(f"model '{source}': {exc}") from None
    if cache is not None:
        cache[key] = codec
    return codec

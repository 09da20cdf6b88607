"""One checkpoint loader for the platform: any common container, any common prefix, old key names."""

from __future__ import annotations

import logging
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ctrlic.codecs.codec_file import is_safetensors, read_safetensors
from ctrlic.errors import UserError

#: wrappers under which training scripts store the weights (CompressAI, CAT, Lightning, ours)
CONTAINER_KEYS = ("state_dict", "model_state_dict", "network", "model", "net")
#: prefixes added by DataParallel/DDP, Lightning modules and our own wrappers
PREFIXES = ("module.", "model.", "codec.", "backbone.", "net.", "_orig_mod.")
#: (pattern, replacement) for parameter names of older CompressAI releases and forks
OLD_NAMES = (
    (re.compile(r"entropy_bottleneck\._matrix(\d+)$"), r"entropy_bottleneck.matrices.\1"),
    (re.compile(r"entropy_bottleneck\._bias(\d+)$"), r"entropy_bottleneck.biases.\1"),
    (re.compile(r"entropy_bottleneck\._factor(\d+)$"), r"entropy_bottleneck.factors.\1"),
    (re.compile(r"entropy_bottleneck\._matrices\.(\d+)$"), r"entropy_bottleneck.matrices.\1"),
    (re.compile(r"entropy_bottleneck\._biases\.(\d+)$"), r"entropy_bottleneck.biases.\1"),
    (re.compile(r"entropy_bottleneck\._factors\.(\d+)$"), r"entropy_bottleneck.factors.\1"),
    (re.compile(r"\.downsample\."), ".skip."),
)
ZOO_SCHEME = "zoo:"
#: entropy-coder buffers whose shapes ``update()`` sets (empty until then)
DYNAMIC_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
log = logging.getLogger("ctrlic")


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model; the message says what was found."""


class UnsafeCheckpointError(CheckpointError):
    """A file that only Python's full unpickler reads, which can run code; refused without an opt-in."""


@dataclass(frozen=True)
class PickleTrust:
    """Whether one load may fall back to the full unpickler, and the switch that allows it (for messages).

    ``switch`` is what the user types at this entry point: ``backbone.trust_pickle=true``,
    ``--trust-pickle`` or ``trust_pickle=true``.
    """

    allowed: bool = False
    switch: str = "trust_pickle=true"


#: the default of every load: the full unpickler is never used
NO_TRUST = PickleTrust()


def resolve_source(source: str | Path) -> str:
    """Turn ``zoo:ARCH-METRIC-QUALITY`` (e.g. ``zoo:cheng2020-attn-mse-6``) into CompressAI's URL."""
    source = str(source)
    if not source.startswith(ZOO_SCHEME):
        return source
    from compressai.zoo.image import model_urls

    arch, metric, quality = source[len(ZOO_SCHEME):].rsplit("-", 2)
    try:
        return model_urls[arch][metric][int(quality)]
    except (KeyError, ValueError):
        raise CheckpointError(
            f"{source}: no such CompressAI zoo model; architectures: {', '.join(sorted(model_urls))}, "
            "metrics mse/ms-ssim, qualities 1-8 (1-6 for cheng2020)"
        ) from None


def read_checkpoint(source: str | Path, trust: PickleTrust = NO_TRUST) -> object:
    """Load a checkpoint file or URL (``http(s)://``, ``file://``, ``zoo:``) onto the CPU without running code.

    Safetensors files are read as such; torch files with ``weights_only=True``. A torch file that also
    pickles Python objects is refused unless ``trust.allowed`` (the user's explicit, per-call opt-in),
    and then loaded with a warning that names the risk.
    """
    source = resolve_source(source)
    if "://" in source:
        return _load_torch(lambda safe: torch.hub.load_state_dict_from_url(
            source, map_location="cpu", weights_only=safe), source, trust)
    path = Path(source).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if is_safetensors(path):
        return read_safetensors(path)
    return _load_torch(lambda safe: torch.load(path, map_location="cpu", weights_only=safe), path, trust)


def _load_torch(load: Callable[[bool], object], label: str | Path, trust: PickleTrust) -> object:
    """``load(weights_only=True)``; the full unpickler only when the user allowed it for this file."""
    try:
        return load(True)
    except pickle.UnpicklingError as err:
        names = _unsafe_globals(err, label)
        if not trust.allowed:
            if names:
                raise UnsafeCheckpointError(
                    f"'{label}' holds Python objects besides weights ({', '.join(names)}); only the full "
                    "unpickler reads them, and unpickling can execute arbitrary code hidden in the file. "
                    f"Refused. If you trust where the file comes from, load it with {trust.switch}") from None
            raise CheckpointError(f"'{label}' is not a PyTorch checkpoint (its pickle is not plain data: "
                                  f"{_unpickler_reason(err)})") from None
    except OSError as err:  # unreadable file, failed download
        raise CheckpointError(f"cannot read '{label}' ({err})") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for non-checkpoints
        raise CheckpointError(f"'{label}' is not a PyTorch checkpoint ({type(err).__name__}: "
                              f"{_first_line(err)})") from None
    log.warning("UNSAFE LOAD: %s: loading '%s' with the full unpickler (%s), which executes any code the "
                "file carries; do this only for files from a source you trust, and re-save their weights as "
                "a plain state dict", trust.switch, label, ", ".join(names) or "objects besides weights")
    try:
        return load(False)
    except Exception as err:  # noqa: BLE001 - the full unpickler raises anything the file makes it raise
        raise CheckpointError(f"'{label}' is not a PyTorch checkpoint ({type(err).__name__}: "
                              f"{_first_line(err)})") from None


def _unsafe_globals(err: pickle.UnpicklingError, label: str | Path) -> list[str]:
    """The Python objects (module.name) a weights-only load refused; empty when it failed for another reason."""
    if "Unsupported global" not in str(err):
        return []
    try:  # scans the pickle's opcodes without executing them (zip-format torch files only)
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(label))
    except Exception:  # noqa: BLE001 - legacy format, URL: fall back to the name in the message
        found = []
    return found or re.findall(r"GLOBAL ([\w.]+)", str(err))[:1] or ["unknown"]


def _unpickler_reason(err: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's own reason (e.g. ``Unsupported operand 15``), without torch's advice."""
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
    return found.group(1).strip() if found else _first_line(err)


def _first_line(err: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def extract_state_dict(obj: object) -> dict[str, Tensor]:
    """The tensor mapping inside a plain state dict, ``{"state_dict": ...}`` or similar wrappers."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            return dict(obj)
        for key in CONTAINER_KEYS:
            if isinstance(obj.get(key), Mapping):
                return extract_state_dict(obj[key])
        found = ", ".join(f"{k!r}" for k in list(obj)[:8])
        raise CheckpointError(f"no state dict found: top-level keys are {found}; expected tensors or "
                              f"one of {', '.join(CONTAINER_KEYS)}")
    raise CheckpointError(f"no state dict found: the file holds a {type(obj).__name__}")


def normalize_keys(state: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Strip wrapper prefixes and rename old keys so that ``state`` uses ``target``'s names."""
    state = dict(state)
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in target):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    out = {}
    for key, value in state.items():
        if key not in target:
            for pattern, repl in OLD_NAMES:
                renamed = pattern.sub(repl, key)
                if renamed != key and renamed in target:
                    key = renamed
                    break
        out[key] = value
    return out


def _resize_dynamic_buffers(module: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Give empty CDF buffers (filled by ``update()``) the checkpoint's shapes before a strict load."""
    own = dict(module.named_buffers())
    for key, value in state.items():
        buf = own.get(key)
        if buf is not None and buf.shape != value.shape and key.rsplit(".", 1)[-1] in DYNAMIC_BUFFERS:
            owner, _, name = key.rpartition(".")
            module.get_submodule(owner).register_buffer(name, torch.empty_like(value, device=buf.device))


def describe_mismatch(state: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> str:
    """A short account of missing, unexpected and mis-shaped keys."""
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
              for k in state if k in target and state[k].shape != target[k].shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {'; '.join(items[:3])})")
    return ", ".join(parts)


def load_weights(module: nn.Module, source: str | Path | Mapping, *, strict: bool = True,
                 key_map: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
                 trust: PickleTrust = NO_TRUST) -> list[str]:
    """Load weights from a file, URL or mapping into ``module``; returns the keys it did not fill.

    ``key_map`` first maps the authors' checkpoint layout onto the module's (e.g. a backbone's
    ``checkpoint_key_map``: Control-GIC's counters, raw or EMA weights); a ValueError it raises
    becomes a CheckpointError. ``trust`` is the user's opt-in for files that need the full
    unpickler (see ``read_checkpoint``).
    """
    obj = read_checkpoint(source, trust) if isinstance(source, str | Path) else source
    target = module.state_dict()
    state = normalize_keys(extract_state_dict(obj), target)
    if key_map is not None:
        try:
            state = key_map(state)
        except ValueError as err:
            raise CheckpointError(f"checkpoint {source if isinstance(source, str | Path) else 'state dict'}: "
                                  f"{err}") from None
    _resize_dynamic_buffers(module, state)
    target = module.state_dict()
    problem = describe_mismatch(state, target)
    label = source if isinstance(source, str | Path) else "state dict"
    if problem and strict:
        raise CheckpointError(f"checkpoint {label} does not fit {type(module).__name__}: {problem}")
    if problem:
        warnings.warn(f"checkpoint {label} loaded partially: {problem}", stacklevel=2)
    usable = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    nn.Module.load_state_dict(module, usable, strict=False)
    return [k for k in target if k not in usable]

"""One checkpoint loader for the platform: any common container, any common prefix, old key names."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

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


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model; the message says what was found."""


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


def read_checkpoint(source: str | Path) -> object:
    """Load a checkpoint file or URL (``http(s)://``, ``file://``, ``zoo:``) onto the CPU."""
    source = resolve_source(source)
    if "://" in source:
        return torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=False)
    path = Path(source).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch raises many types for non-checkpoints
        raise CheckpointError(f"'{path}' is not a PyTorch checkpoint ({type(err).__name__}: {err})") from None


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
        if buf is not None and buf.shape != value.shape and key.rsplit(".", 1)[-1] in (
            "_quantized_cdf", "_offset", "_cdf_length", "scale_table"
        ):
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
                 key_map: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None) -> list[str]:
    """Load weights from a file, URL or mapping into ``module``; returns the keys it did not fill.

    ``key_map`` first maps the authors' checkpoint layout onto the module's (e.g. a backbone's
    ``checkpoint_key_map``: Control-GIC's counters, raw or EMA weights); a ValueError it raises
    becomes a CheckpointError.
    """
    obj = read_checkpoint(source) if isinstance(source, str | Path) else source
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

"""What a codec file or training checkpoint records, checked before anything is built from it.

A file must not choose what gets instantiated: every ``_target_`` in a recorded architecture must
name one of ctrlic's own backbone classes (under ``arch["backbone"]``) or control-scheme classes
(under ``arch["control"]``), found by walking ``ctrlic.codecs.backbones`` and ``ctrlic.codecs.control``.
Config files from ``conf/`` are ours and are not checked here. The ``format`` a file declares must
be one this version reads.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from pathlib import Path

from ctrlic.codecs.checkpoint import CheckpointError
from ctrlic.codecs.codec_file import CODEC_FORMAT

#: exported codec files: the pickled torch file of earlier versions, and safetensors + JSON header
CODEC_FORMATS = ("ctrlic-codec/1", CODEC_FORMAT)
#: the packages whose classes a recorded architecture may name, and the base class each must extend
_PACKAGES = {
    "backbone": ("ctrlic.codecs.backbones", "ctrlic.codecs.backbones.base", "Backbone"),
    "control": ("ctrlic.codecs.control", "ctrlic.codecs.control.base", "ControlScheme"),
}


class RecordedArchitectureError(CheckpointError):
    """A recorded architecture or format this version refuses to build from; the message says what."""


@functools.cache
def allowed_targets(part: str) -> frozenset[str]:
    """The dotted names (``module.Class``) of the classes of ``part`` (backbone or control) in its package."""
    package_name, base_module, base_name = _PACKAGES[part]
    base = getattr(importlib.import_module(base_module), base_name)
    package = importlib.import_module(package_name)
    modules = [package] + [importlib.import_module(info.name)
                           for info in pkgutil.walk_packages(package.__path__, f"{package_name}.")]
    return frozenset(f"{obj.__module__}.{obj.__qualname__}" for module in modules for obj in vars(module).values()
                     if inspect.isclass(obj) and issubclass(obj, base) and obj is not base
                     and obj.__module__ == module.__name__)


def check_codec_format(obj: Mapping, source: str | Path | None) -> None:
    """Refuse a codec file whose declared format this version does not know."""
    check_declared_format(obj.get("format"), CODEC_FORMATS, source)


def check_declared_format(declared: object, known: tuple[str, ...], source: str | Path | None) -> None:
    """Refuse a file that declares a format outside ``known``."""
    if declared not in known:
        raise RecordedArchitectureError(
            f"{source if source is not None else 'the codec'}: format {declared!r} is not one this ctrlic reads "
            f"({', '.join(known)}); it was written by another ctrlic version (use that version, or re-export the "
            "model with this one) or is not a ctrlic file")


def check_architecture(arch: object, source: str | Path | None) -> None:
    """Refuse a recorded architecture unless it only names ctrlic's own backbone and control-scheme classes."""
    label = source if source is not None else "the codec"
    if not isinstance(arch, Mapping) or not isinstance(arch.get("name"), str) \
            or not isinstance(arch.get("backbone"), Mapping):
        raise RecordedArchitectureError(f"{label}: the recorded architecture is malformed (expected name, "
                                        "backbone and control); the file is corrupted or not a ctrlic file")
    if not isinstance(arch.get("control"), Mapping | None):
        raise RecordedArchitectureError(f"{label}: the recorded control scheme is malformed")
    for key, value in arch.items():
        part = key if key in _PACKAGES else None
        for target in _targets(value):
            if part is None or target not in allowed_targets(part):
                allowed = "a ctrlic backbone or control-scheme class" if part is None else \
                    f"a ctrlic {part} class ({', '.join(sorted(allowed_targets(part)))})"
                raise RecordedArchitectureError(
                    f"{label}: refusing to build {target!r} named in its recorded architecture ({key}): only "
                    f"{allowed} may be built from a file. The file is not a ctrlic model or was tampered with")
    if "_target_" not in arch["backbone"]:
        raise RecordedArchitectureError(f"{label}: the recorded backbone names no class; the file is corrupted")
    interpolated = next((v for _, v in _leaves(arch) if isinstance(v, str) and "${" in v), None)
    if interpolated is not None:  # Hydra would resolve it (e.g. ${oc.env:...} reads the environment)
        raise RecordedArchitectureError(f"{label}: the recorded architecture holds an interpolation "
                                        f"({interpolated!r}); a ctrlic file records plain values only")


def _targets(node: object):
    """Every ``_target_`` value anywhere inside ``node`` (mappings and lists, recursively)."""
    for key, value in _leaves(node):
        if key == "_target_":
            yield value if isinstance(value, str) else repr(value)


def _leaves(node: object, key: object = None):
    """(key, value) of every non-container value (and every ``_target_``) inside ``node``; list items carry
    their list's key."""
    if isinstance(node, Mapping):
        for k, value in node.items():
            if k == "_target_":  # whatever it holds: a target is never looked into
                yield k, value
            else:
                yield from _leaves(value, k)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _leaves(item, key)
    else:
        yield key, node

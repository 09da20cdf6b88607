"""The import rule: a package imports only packages below it, so the layers never double back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ctrlic"

#: ctrlic's layers, bottom first; a module may import its own layer and the ones below it
LAYERS = (
    ("ctrlic.errors",),
    ("ctrlic.utils",),
    ("ctrlic.metrics",),
    ("ctrlic.codecs.bitstream", "ctrlic.codecs.entropy", "ctrlic.codecs.tiling", "ctrlic.codecs.huffman",
     "ctrlic.codecs.lossless", "ctrlic.codecs.checkpoint", "ctrlic.codecs.codec_file", "ctrlic.codecs.finite",
     "ctrlic.codecs.padding"),
    ("ctrlic.codecs.backbones",),
    ("ctrlic.codecs.control",),
    ("ctrlic.codecs.layout", "ctrlic.codecs.codec", "ctrlic.codecs.rate_search", "ctrlic.codecs.bit_allocation"),
    ("ctrlic.codecs.recorded", "ctrlic.codecs.build"),
    ("ctrlic.datamodules",),
    ("ctrlic.evaluation",),
    ("ctrlic.lightning_modules",),
    ("ctrlic.callbacks",),
    ("ctrlic.tasks",),
    ("ctrlic.cli",),
)


def layer_of(module: str) -> int | None:
    """The index of the layer ``module`` belongs to (the longest matching prefix), None outside them."""
    best, length = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    return best


def imported_modules(source: str, module: str) -> set[str]:
    """Every ``ctrlic`` module imported anywhere in ``source`` (function-level imports included)."""
    found = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found |= {f"{base}.{alias.name}" for alias in node.names} | {base}
    return {m for m in found if m == "ctrlic" or m.startswith("ctrlic.")}


def upward_imports(source: str, module: str) -> list[str]:
    """The imports of ``module`` that reach a layer above its own (one line per imported module)."""
    own = layer_of(module)
    bad = {}
    for target in sorted(imported_modules(source, module)):
        theirs = layer_of(target)
        if own is not None and theirs is not None and theirs > own and not any(
                target.startswith(t + ".") for t in bad):
            bad[target] = f"{module} imports {target} ({LAYERS[theirs][0]} is above {LAYERS[own][0]})"
    return list(bad.values())


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def test_every_module_belongs_to_a_layer():
    loose = [m for m in _modules() if m not in ("ctrlic", "ctrlic.codecs") and layer_of(m) is None]
    assert not loose, f"modules outside the layer list (add them to LAYERS): {loose}"


def test_no_package_imports_a_package_above_it():
    bad = [line for module, path in _modules().items() for line in upward_imports(path.read_text(), module)]
    assert not bad, "\n".join(bad)


def test_the_rule_catches_an_upward_import():
    source = "import torch\n\ndef f():\n    from ctrlic.cli.errors import CLIError\n    from ..control.base import Knob\n"
    found = upward_imports(source, "ctrlic.codecs.backbones.fake")
    assert found == [
        "ctrlic.codecs.backbones.fake imports ctrlic.cli.errors (ctrlic.cli is above ctrlic.codecs.backbones)",
        "ctrlic.codecs.backbones.fake imports ctrlic.codecs.control.base (ctrlic.codecs.control is above "
        "ctrlic.codecs.backbones)",
    ]
    assert upward_imports("from ctrlic.codecs.bitstream import pack\n", "ctrlic.codecs.backbones.fake") == []

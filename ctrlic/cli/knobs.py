"""Knob values from the command line: ``--set NAME=VALUE`` plus shortcuts for declared knob names."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ctrlic.cli.errors import CLIError

if TYPE_CHECKING:
    from ctrlic.codecs.control.base import Knob

#: shortcut option -> the knob name it sets (used only when the codec declares that knob)
SHORTCUTS = {"alpha": "alpha", "beta": "beta", "prompt": "prompt", "steps": "steps"}
#: ``--ratios a,b,c`` -> the granularity scheme's knobs, in this order
RATIO_KNOBS = ("fine", "medium", "coarse")


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CLIError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CLIError(f"{where}: {text!r} is not a finite number")
    return value


def _put(values: dict[str, float], given: dict[str, str], name: str, value: float, where: str) -> None:
    """Record ``name = value`` from option ``where``; the same knob given two different values is refused."""
    if name in values and values[name] != value:
        raise CLIError(f"knob {name!r} is given twice with different values ({given[name]} gives {values[name]:g}, "
                       f"{where} gives {value:g}); give it once")
    values[name], given[name] = value, where


def knob_values(args: argparse.Namespace, knobs: Sequence[Knob]) -> dict[str, float]:
    """The knob values the command line asks for, checked against the codec's declared knobs."""
    declared = [k.name for k in knobs]
    have = ", ".join(declared) or "none (fixed-rate or lossless codec)"
    values: dict[str, float] = {}
    given: dict[str, str] = {}
    for item in args.set:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise CLIError(f"--set {item!r}: write it as NAME=VALUE, e.g. --set alpha=0.5")
        if name not in declared:
            raise CLIError(f"--set {name}: this model has no knob {name!r}; its knobs: {have}")
        _put(values, given, name, _number(text, f"--set {name}"), f"--set {name}")
    for option, name in SHORTCUTS.items():
        text = getattr(args, option)
        if text is None:
            continue
        if name not in declared:
            raise CLIError(f"--{option}: this model has no knob {name!r}; its knobs: {have}")
        _put(values, given, name, _number(text, f"--{option}"), f"--{option}")
    if args.ratios is not None:
        missing = [n for n in RATIO_KNOBS if n not in declared]
        if missing:
            raise CLIError(f"--ratios: this model has no granularity knobs ({', '.join(RATIO_KNOBS)}); "
                           f"its knobs: {have}")
        parts = args.ratios.split(",")
        if len(parts) != len(RATIO_KNOBS):
            raise CLIError(f"--ratios {args.ratios!r}: give three values fine,medium,coarse, e.g. 0.2,0.3,0.5")
        for n, part in zip(RATIO_KNOBS, parts, strict=True):
            _put(values, given, n, _number(part, f"--ratios {n}"), "--ratios")
    return values

"""What the command prints: results on stdout, notes and errors on stderr, a progress bar for batches."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

from rich.console import Console
from rich.progress import Progress

T = TypeVar("T")


def say(message: str) -> None:
    print(message, flush=True)


def note(message: str) -> None:
    print(f"ctrlic: note: {message}", file=sys.stderr, flush=True)


def each(items: Sequence[T], what: str) -> Iterator[T]:
    """Iterate over ``items``, with a progress bar on stderr when there is more than one."""
    if len(items) <= 1:
        yield from items
        return
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(what, total=len(items))
        for item in items:
            yield item
            progress.advance(task)

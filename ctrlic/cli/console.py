"""What the command prints: results on stdout, notes and errors on stderr, a progress bar for batches."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

from rich.console import Console
from rich.progress import Progress

T = TypeVar("T")

#: progress bars on screen (one at most); ``stop`` clears them when a batch ends early
_active: list[Progress] = []


def say(message: str) -> None:
    print(message, flush=True)


def note(message: str) -> None:
    print(f"ctrlic: note: {message}", file=sys.stderr, flush=True)


def each(items: Sequence[T], what: str) -> Iterator[T]:
    """Iterate over ``items``, with a progress bar on stderr when there is more than one."""
    if len(items) <= 1:
        yield from items
        return
    # results stay on stdout when it is a pipe or file; on a terminal rich prints them above the bar
    with Progress(console=Console(stderr=True), transient=True, redirect_stdout=sys.stdout.isatty()) as progress:
        _active.append(progress)
        try:
            task = progress.add_task(what, total=len(items))
            for item in items:
                yield item
                progress.advance(task)
        finally:
            _active.remove(progress)


def stop() -> None:
    """Take down a progress bar a failure or signal interrupted (it hides the terminal's cursor)."""
    while _active:
        _active.pop().stop()

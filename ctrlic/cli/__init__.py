"""The ``ctrlic`` command: compress, decompress, info and eval with trained models, for every method.

It reads the knobs each control scheme declares, so a new method needs no code here. Bad input is
reported in one line on stderr with exit code 2, never a traceback (set CTRLIC_DEBUG=1 to see one).
File arguments are checked before torch is imported, so those mistakes are reported at once.
Ctrl-C and SIGTERM stop it the same way: finished outputs are kept, no partial file is left.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence

from ctrlic.cli import console
from ctrlic.cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, Terminated, is_user_error
from ctrlic.cli.files import preflight
from ctrlic.cli.parser import build_parser

DEBUG_ENV = "CTRLIC_DEBUG"


def _fail(message: str, code: int) -> int:
    console.stop()
    print(f"ctrlic: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) inside the block, as Ctrl-C does."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; returns the exit code (0, 1 for a bug, 2 for bad input, 130/143 interrupted)."""
    debug = bool(os.environ.get(DEBUG_ENV))
    if not debug:
        warnings.filterwarnings("ignore")
    args = build_parser().parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            preflight(args)
            command = importlib.import_module(f"ctrlic.cli.{args.command_module}")
            command.run(args)
        except KeyboardInterrupt as exc:
            what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            return _fail(f"{what}; finished outputs were kept, no partial output was left",
                         exc.exit_code if isinstance(exc, Terminated) else EXIT_INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - one line for everything; a traceback only when debugging
            if debug:
                raise
            if is_user_error(exc):
                return _fail(str(exc), EXIT_USAGE)
            if isinstance(exc, OSError) and exc.filename:  # a file system refusal: a missing place, a full disk
                return _fail(f"'{exc.filename}': {exc.strerror or exc}", EXIT_USAGE)
            return _fail(f"internal error ({type(exc).__name__}: {exc}); rerun with {DEBUG_ENV}=1 and report it",
                         EXIT_INTERNAL)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The errors the command reports in one line (bad user input), and its exit codes.

Kept free of heavy imports: argument and file errors are reported before torch is loaded.
"""

from __future__ import annotations

import sys

#: exit codes: a bug, bad input, interrupted (128 + SIGINT)
EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class CLIError(ValueError):
    """A bad command line or file argument; the message says what was wrong and what to do."""


#: the error classes caused by the user's input (module, class name): one line on stderr, no traceback
USER_ERRORS = (
    ("ctrlic.cli.errors", "CLIError"),
    ("ctrlic.datamodules.image_io", "ImageReadError"),
    ("ctrlic.datamodules.images", "DataConfigError"),
    ("ctrlic.codecs.bitstream", "BitstreamError"),
    ("ctrlic.codecs.checkpoint", "CheckpointError"),
    ("ctrlic.codecs.control.base", "KnobError"),
    ("ctrlic.codecs.rate_search", "RateSearchError"),
    ("ctrlic.codecs.tiling", "TilingError"),
    ("ctrlic.codecs.entropy.robust", "EntropyPathError"),
)


def is_user_error(exc: BaseException) -> bool:
    """True for the user-input errors above (a class whose module was never imported cannot match)."""
    for module_name, class_name in USER_ERRORS:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(exc, getattr(module, class_name)):
            return True
    return False


def about(path: object, exc: Exception) -> Exception:
    """``exc`` with the file it concerns in front, when it is a user error (else unchanged)."""
    return CLIError(f"'{path}': {exc}") if is_user_error(exc) else exc

"""The errors the command reports in one line (bad user input), and its exit codes.

Kept free of heavy imports: argument and file errors are reported before torch is loaded.
"""

from __future__ import annotations

from ctrlic.errors import UserError

#: exit codes: a bug, bad input, interrupted (128 + SIGINT; SIGTERM gives 128 + 15)
EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is; exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_code = 128 + signum


class CLIError(UserError):
    """A bad command line or file argument; the message says what was wrong and what to do."""


def is_user_error(exc: BaseException) -> bool:
    """True for errors caused by the user's input (one line on stderr, exit code 2, no traceback)."""
    return isinstance(exc, UserError)


def about(path: object, exc: Exception) -> Exception:
    """``exc`` with the file it concerns in front, when it is a user error (else unchanged)."""
    return CLIError(f"'{path}': {exc}") if is_user_error(exc) else exc

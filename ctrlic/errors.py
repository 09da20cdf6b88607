"""The one base class for errors that mean "the user asked for something impossible".

Entry points (``run.py`` tasks, the ``ctrlic`` command) catch ``UserError`` in one place and report
it in one line with exit code 2; anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user (a file, a config value, a knob); the message says what and what to do."""


def user_error(err: BaseException | None) -> UserError | None:
    """The ``UserError`` behind ``err`` (Hydra wraps errors raised while instantiating), if any."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None

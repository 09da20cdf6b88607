"""One user-error base: every error class ctrlic defines is a UserError unless it means a bug."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import ctrlic
from ctrlic.errors import UserError, user_error

#: errors that mean a bug or a broken machine, not bad input: they keep their traceback
INTERNAL_ERRORS = {"LosslessMismatchError"}


def _error_classes() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(ctrlic.__path__, "ctrlic."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            is_error = inspect.isclass(obj) and issubclass(obj, Exception) and not issubclass(obj, Warning)
            if is_error and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_error_class_is_a_user_error_or_listed_internal():
    classes = _error_classes()
    assert len(classes) >= 15, sorted(classes)  # the walk really found the package's errors
    stray = [name for name, cls in classes.items()
             if not issubclass(cls, UserError) and cls.__name__ not in INTERNAL_ERRORS]
    assert not stray, f"not UserError and not listed internal: {stray}"


def test_user_error_found_behind_wrappers():
    inner = UserError("bad knob")
    try:
        try:
            raise inner
        except UserError as err:
            raise RuntimeError("Error instantiating ...") from err
    except RuntimeError as outer:
        assert user_error(outer) is inner
    assert user_error(RuntimeError("a bug")) is None

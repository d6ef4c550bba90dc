"""The error hierarchy lives in one module, and every error is also a builtin one."""

from __future__ import annotations

import builtins
import importlib
import pkgutil

import pitools
from pitools import errors


def _all_errors() -> set[type]:
    for info in pkgutil.walk_packages(pitools.__path__, "pitools."):
        if not info.name.endswith("__main__"):  # every module, so that every subclass is defined
            importlib.import_module(info.name)
    seen, todo = set(), [errors.PitoolsError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return seen


def test_every_error_is_defined_in_errors_py_and_exported():
    found = _all_errors()
    assert len(found) >= 20
    outside = sorted(f"{e.__module__}.{e.__name__}" for e in found if e.__module__ != "pitools.errors")
    assert outside == []
    assert {e.__name__ for e in found} <= set(errors.__all__)


def test_every_error_also_derives_from_a_builtin_and_has_an_exit_code():
    builtin_errors = {v for v in vars(builtins).values() if isinstance(v, type) and issubclass(v, Exception)}
    for e in _all_errors():
        bases = {b for b in e.__mro__ if b in builtin_errors} - {Exception, BaseException}
        assert bases, f"{e.__name__} has no builtin error base (except ValueError/RuntimeError/… would miss it)"
        assert e.exit_code in (1, 2), e.__name__


def test_check_int_takes_python_and_numpy_integers_and_names_what_it_refuses():
    import numpy as np
    import pytest

    assert errors.check_int("n", np.int64(5), 1, 10) == 5 and type(errors.check_int("n", np.int32(5), 1)) is int
    for bad in (True, 2.0, "3", None, 0, 11):
        with pytest.raises(errors.ConfigError, match=rf"`n` = {bad!r} must be an integer from 1 to 10"):
            errors.check_int("n", bad, 1, 10)
    with pytest.raises(errors.DataError, match=r"`limit` = 0 must be rows"):
        errors.check_int("limit", 0, 1, allowed="rows", error=errors.DataError)

"""The pitools error hierarchy.

Every error raised on purpose derives from :class:`PitoolsError`, and also from the
builtin that fits it, so ``except ValueError`` keeps working for callers who do not know
pitools. Messages name the argument in backticks, show the value with ``!r``, say what is
allowed and how to fix it.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable

__all__ = [
    "PitoolsError",
    "ConfigError",
    "DataError",
    "StoreError",
    "NoStoreError",
    "DamagedStoreError",
    "StoreExistsError",
    "MixedDataError",
    "IngestError",
    "MemoryBudgetError",
    "DatabaseError",
    "DatabaseUnavailable",
    "DatabaseLocked",
    "EvaluationLogError",
    "EvolveError",
    "DataFolderNotWritable",
    "LockHeld",
    "NightlyError",
    "NightlyLocked",
    "ServiceError",
    "SystemctlError",
    "QuarantineError",
    "NightError",
    "StaleDataError",
    "did_you_mean",
    "check_int",
]


class PitoolsError(Exception):
    """Root of every error pitools raises on purpose.

    ``exit_code`` is what the command line exits with: 2 for bad usage or input (the
    default), 1 when the work itself failed.
    """

    exit_code = 2


class ConfigError(PitoolsError, ValueError):
    """A profile, parameter file or ``--set`` override is invalid."""


class DataError(PitoolsError, ValueError):
    """A request for data cannot be met (unknown symbol, empty range, bad field)."""


class StoreError(PitoolsError, RuntimeError):
    """The bar store is locked or damaged: the work cannot be done."""

    exit_code = 1


class NoStoreError(StoreError):
    """There is no store where one was expected (a wrong path is bad input)."""

    exit_code = 2


class DamagedStoreError(StoreError):
    """The store's manifest is missing, unreadable or of the wrong shape while data files are
    there: nothing writes into it until ``pitools store repair`` rebuilds the manifest."""

    exit_code = 2


class StoreExistsError(StoreError):
    """A store is already where a new one would be written (bad input: use --force)."""

    exit_code = 2


class MixedDataError(StoreError):
    """Real and synthetic bars would end up in one store: real files imported into a store that
    ``pitools demo-data`` built, or the demo written over imported bars (bad input: choose
    another store, or ``--force``). ``store`` is the store folder, ``source`` what it holds
    (its manifest's ``info["source"]``)."""

    exit_code = 2

    def __init__(self, message: str, store: str = "", source: str = ""):
        super().__init__(message)
        self.store, self.source = store, source


class IngestError(PitoolsError, ValueError):
    """Nothing usable could be imported."""


class MemoryBudgetError(PitoolsError, MemoryError):
    """A request would exceed the memory budget; raised before anything is allocated."""


class NightError(ConfigError):
    """A ``--date`` that is not a closed session: in the future, not closed yet, or a day the
    exchange is closed (bad input: nothing is written)."""


class StaleDataError(DataError):
    """The store is too far behind the night to publish signals from (the work failed: exit 1)."""

    exit_code = 1


# ---------------------------------------------------------------- of the commands and the box

class DatabaseError(PitoolsError, RuntimeError):
    """trades.db cannot be used as it is (not SQLite, corrupt, a newer schema, a failed migration)."""

    exit_code = 2


class DatabaseUnavailable(DatabaseError):
    """trades.db is sound but cannot be written now (its disk is full, another process holds
    it): the work failed, the database is as it was."""

    exit_code = 1


class DatabaseLocked(DatabaseUnavailable):
    """Another process held trades.db's lock for longer than the busy timeout."""


class EvaluationLogError(PitoolsError, RuntimeError):
    """An evaluation log cannot be read at all (not a file, no permission): the work failed."""

    exit_code = 1


class EvolveError(PitoolsError, RuntimeError):
    """The evolution could not save its work (a full disk, an I/O error): the work failed."""

    exit_code = 1


class DataFolderNotWritable(ConfigError):
    """The profile's `data_dir` cannot be written: bad input (the folder is the user's setting)."""


class LockHeld(PitoolsError, RuntimeError):
    """Another process holds the lock: this run did nothing (the work could not be done)."""

    exit_code = 1


class NightlyError(PitoolsError, RuntimeError):
    """The nightly run could not do its work."""

    exit_code = 1


class NightlyLocked(NightlyError):
    """Another nightly run holds the lock."""


class ServiceError(PitoolsError, ValueError):
    """The units cannot be rendered or installed as asked (bad input: exit code 2)."""

    exit_code = 2


class SystemctlError(PitoolsError, RuntimeError):
    """``systemctl`` or ``loginctl`` failed while installing (the work failed: exit code 1)."""

    exit_code = 1


class QuarantineError(StoreError):
    """Bad files or rows could not be written to the quarantine (exit 1: the work failed).

    The other files were imported; ``report`` holds every outcome, the unrecorded reasons
    included.
    """

    def __init__(self, message: str, report: "IngestReport"):
        super().__init__(message)
        self.report = report


def check_int(name: str, value: object, low: int, high: int | None = None, allowed: str | None = None,
              error: type[PitoolsError] = ConfigError) -> int:
    """`value` as an int if it is an integer (a Python or numpy one, not a bool) from `low` to
    `high`; else `error` naming `name`, the value and `allowed` (default: "an integer from LOW
    to HIGH")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or \
            (high is not None and value > high):
        allowed = allowed or (f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}")
        raise error(f"`{name}` = {value!r} must be {allowed}")
    return int(value)


def did_you_mean(value: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for close matches of `value`, or ``""``."""
    matches = difflib.get_close_matches(str(value), [str(c) for c in choices], n=n, cutoff=0.6)
    if not matches:
        return ""
    if len(matches) == 1:
        return f" Did you mean {matches[0]!r}?"
    return " Did you mean one of " + ", ".join(repr(m) for m in matches) + "?"

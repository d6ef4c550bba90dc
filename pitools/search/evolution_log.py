"""The evaluation log of one strategy, ``<data_dir>/evolve/<strategy>/evaluations.jsonl``.

One JSON object a line, one line per evaluation, appended after every generation
(:mod:`pitools.search.evolve`). The log is the memory of the search: the optimizer is rebuilt
from it, the incumbents and tomorrow's parameters (:func:`pitools.market.signals.best_params`)
are read from it, and the research notebook shows it. This module is its only reader
and its only writer.

How the log stays readable:

* **A record** is a JSON object with ``params`` (a dict), ``fitness`` (a finite number,
  or null for a failed candidate) and ``night`` (``YYYY-MM-DD``); the evolution adds
  ``generation``, ``incumbent``, the scoring details and ``error``. A line that is not
  one (damage, a hand edit, a line torn by a crash) is skipped, with one warning per
  read naming the file and the line numbers: one bad line never breaks a night.
* **A night reads only its past**: with ``night=``, records of later nights are left out,
  so a run dated in the future cannot steer the nights before it.
* **A torn last line** (a crash or a full disk mid-append leaves a line without its
  newline) is repaired before the next append, so a record is never glued onto a
  fragment: a fragment that is a whole record only lacked its newline, which is added;
  anything else is moved to ``evaluations.jsonl.torn`` beside the log (kept, not
  deleted, so nothing is lost and it can be looked at) and the log is cut back to its
  last whole line. The warning does not come back every night.
* **A failed append** (disk full) is rolled back to the log's size before it, so a half
  generation is never left behind; the error is raised for the caller to report.

>>> records = read_evaluations("data/evolve/sma_cross/evaluations.jsonl", night="2026-11-20")
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from pitools.errors import DataError, EvaluationLogError

__all__ = ["LOG_NAME", "EvaluationLogError", "read_evaluations", "read_evaluation_log", "append_evaluations", "as_night", "torn_path"]

log = logging.getLogger("pitools")

LOG_NAME = "evaluations.jsonl"
_NIGHT_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CHUNK = 1 << 16
_MAX_LISTED = 10  # line numbers named in a warning


# ---------------------------------------------------------------- reading

def read_evaluations(path: str | os.PathLike, night=None) -> list[dict]:
    """The records of the evaluation log at `path`, oldest first; ``[]`` when there is no log.

    Parameters
    ----------
    path : path-like
        An ``evaluations.jsonl``.
    night : str or date, optional
        Only records of this night and earlier ones (``YYYY-MM-DD``): a night reads only
        its past. Default: every record.

    Lines that are not records (see the module doc) are skipped with one warning naming
    the file and the line numbers.

    Raises
    ------
    DataError
        `night` is not a ``YYYY-MM-DD`` date.
    EvaluationLogError
        The log exists but cannot be read.

    Example
    -------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "evaluations.jsonl"
    >>> _ = p.write_text('{"night": "2026-11-19", "params": {"fast": 5}, "fitness": 1.5}\\n'
    ...                  '{"night": "2100-01-01", "params": {"fast": 9}, "fitness": 9.0}\\n')
    >>> [r["params"] for r in read_evaluations(p, night="2026-11-20")]
    [{'fast': 5}]
    """
    path = Path(path)
    until = as_night(night)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise EvaluationLogError(f"cannot read the evaluation log {str(path)!r}: {exc.strerror or exc}; fix its "
                                 "permissions, or move it aside to start that strategy's search afresh") from None
    records, bad = [], {}
    for n, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue  # the end of the file, or a blank line: nothing lost
        rec, problem = _parse(line)
        if problem:
            bad.setdefault(problem, []).append(n)
        elif until is None or rec["night"] <= until:
            records.append(rec)
    if bad:
        # Not moved aside here: a reader must not write (it runs beside the evolution); a torn
        # last line is repaired by the next append, other damage is left for a person to see.
        log.warning("%s: %s; skipped (a torn last line is moved to %s by the next append; move other such lines "
                    "there by hand to keep them and silence this warning)", path,
                    "; ".join(_lines(numbers, problem) for problem, numbers in bad.items()), torn_path(path).name)
    return records


def _parse(line: bytes) -> tuple[dict | None, str | None]:
    """(record, None) or (None, what is wrong with the line)."""
    try:
        rec = json.loads(line)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None, "not JSON"
    return (rec, None) if (problem := _problem(rec)) is None else (None, problem)


def _problem(rec) -> str | None:
    if not isinstance(rec, dict):
        return "not a JSON object"
    if not isinstance(rec.get("params"), dict):
        return "without `params` (a dict of parameter values)"
    fitness = rec.get("fitness", ())
    if fitness is not None and (isinstance(fitness, bool) or not isinstance(fitness, (int, float))
                                or not math.isfinite(fitness)):
        return "without `fitness` (a finite number, or null for a failed candidate)"
    if not isinstance(rec.get("night"), str) or not _NIGHT_RE.fullmatch(rec["night"]):
        return "without `night` (a 'YYYY-MM-DD' date)"
    return None


def _lines(numbers: list[int], problem: str) -> str:
    shown = ", ".join(map(str, numbers[:_MAX_LISTED]))
    more = f" and {len(numbers) - _MAX_LISTED} more" if len(numbers) > _MAX_LISTED else ""
    return f"line {shown} is {problem}" if len(numbers) == 1 else f"lines {shown}{more} are {problem}"


def as_night(night) -> str | None:
    """`night` (``"YYYY-MM-DD"``, a date or a timestamp) as ``"YYYY-MM-DD"``; None stays None.

    Records compare their nights as strings: ISO dates sort by time.

    >>> as_night("2026-11-20"), as_night(None)
    ('2026-11-20', None)
    """
    if night is None:
        return None
    if isinstance(night, _dt.datetime):  # pandas.Timestamp too
        return night.date().isoformat()
    if isinstance(night, _dt.date):
        return night.isoformat()
    if isinstance(night, str) and _NIGHT_RE.fullmatch(night):
        with contextlib.suppress(ValueError):
            return _dt.date.fromisoformat(night).isoformat()
    raise DataError(f"`night` = {night!r} must be a date 'YYYY-MM-DD' (the night whose past is read), or None for "
                    "every night")


# ---------------------------------------------------------------- writing

def torn_path(path: str | os.PathLike) -> Path:
    """Where torn fragments of the log at `path` are kept: ``evaluations.jsonl.torn``."""
    path = Path(path)
    return path.with_name(path.name + ".torn")


def append_evaluations(path: str | os.PathLike, records: list[dict]) -> None:
    """Append `records` to the log at `path` (created if missing), durably (fsync).

    A torn last line is repaired first (see the module doc). The records are serialised
    before the file is touched (NaN is refused: pass None); if writing fails the log is
    cut back to its size before, and the ``OSError`` is raised.
    """
    path = Path(path)
    data = "".join(json.dumps(rec, allow_nan=False, default=_json_default) + "\n" for rec in records).encode()
    if path.exists():
        _repair_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):  # shrinking needs no space; best effort all the same
                os.ftruncate(fd, size)
                os.fsync(fd)
            raise
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of `data` is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _repair_tail(path: Path) -> None:
    """Make the log end with a newline, so the next record starts a line of its own."""
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        start = _after_last_newline(fh, size)
        fh.seek(start)
        fragment = fh.read()
        if _parse(fragment)[1] is None:
            fh.write(b"\n")  # a whole record that only lost its newline: keep it in the log
            log.warning("%s: the last record had no newline (a crash mid-append); completed it", path)
        else:
            _keep_fragment(torn_path(path), fragment)
            fh.truncate(start)
            log.warning("%s: the last line was torn (a crash or a full disk mid-append): moved its %d bytes to %s; "
                        "the log goes on from its last whole record", path, len(fragment), torn_path(path))
        fh.flush()
        os.fsync(fh.fileno())


def _after_last_newline(fh, size: int) -> int:
    """Offset just after the last ``\\n`` of the file (0 when there is none), reading backwards."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        fh.seek(start)
        i = fh.read(end - start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def _keep_fragment(torn: Path, fragment: bytes) -> None:
    # Saved (and fsynced) before the log is cut: a crash in between leaves the fragment in
    # both places, never in neither.
    with open(torn, "ab") as fh:
        fh.write(fragment + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


# ---------------------------------------------------------------- every strategy's log as a table

def read_evaluation_log(data_dir, night: str | None = None, strategies=None) -> pd.DataFrame:
    """Evaluations from ``<data_dir>/evolve/<strategy>/evaluations.jsonl``, read by
    :func:`read_evaluations` (lines that are not records skipped, with a warning).

    Parameters
    ----------
    data_dir : path-like
        The profile's data directory.
    night : str, optional
        Only this night's evaluations (``YYYY-MM-DD``).
    strategies : sequence of str, optional
        Default: every strategy with a log.

    Returns
    -------
    pandas.DataFrame
        ``strategy``, ``night``, ``generation``, ``params`` (dict), ``fitness`` (NaN when
        the candidate failed), ``incumbent``, and the scoring details of each record.
    """
    night = as_night(night)
    root = Path(data_dir) / "evolve"
    names = list(strategies) if strategies is not None else sorted(p.name for p in root.glob("*") if p.is_dir())
    rows = []
    for name in names:
        # night=: this night and earlier ones (a night reads only its past), then this one alone
        for rec in read_evaluations(root / name / LOG_NAME, night=night):
            if night is None or rec["night"] == night:
                rows.append({"strategy": name, **rec})
    cols = ["strategy", "night", "generation", "params", "fitness", "incumbent"]
    df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)
    df["fitness"] = pd.to_numeric(df["fitness"], errors="coerce").astype(float)
    return df

"""One exclusive lock per resource: a non-blocking ``flock`` on a file, refused with who holds it.

Why ``flock``: the kernel drops the lock when its holder dies (even by ``kill -9`` or a
power cut), so a crashed run never blocks the next one and there is no stale lock to
clean up. A second taker is refused at once (never queued behind a night that may take
hours), and the message says who holds the lock: the holder writes its ``info`` (pid,
start time, …) into the lock file as one JSON object once it holds it.

A lock is held by an open file description: a forked child (a pool worker) shares it,
an ``exec``'d program does not (Python opens files non-inheritable).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / ".lock"
>>> with exclusive_lock(path, {"profile": "ci"}, "an evolve run"):
...     read_holder(path)["profile"]
'ci'
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from pitools.errors import LockHeld, PitoolsError

__all__ = ["LockHeld", "exclusive_lock", "read_holder", "NIGHTLY_PID_ENV"]

# Set by the nightly runner for the kernels it starts: a lock they take says which night's
# runner they belong to, so the next night can tell a leftover of a killed run.
NIGHTLY_PID_ENV = "PITOOLS_NIGHTLY_PID"


def read_holder(path: str | os.PathLike) -> dict:
    """What the holder of the lock at `path` wrote about itself; ``{}`` when nothing (yet).

    A lock file in another format (an older pitools wrote ``pid 12, started …``) comes
    back as ``{"holder": text}``.
    """
    try:
        text = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return {}
    if not text:
        return {}  # taken a moment ago: the holder has not written its info yet
    try:
        info = json.loads(text)
    except json.JSONDecodeError:
        return {"holder": text}
    return info if isinstance(info, dict) else {"holder": text}


def _describe(info: dict) -> str:
    if "holder" in info:
        return str(info["holder"])
    if "pid" not in info:
        return "a process that has not said who it is yet"
    rest = ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("pid", "started"))
    return f"pid {info['pid']}, started {info.get('started', 'at an unknown time')}" + (f", {rest}" if rest else "")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, info: dict, what: str,
                   hint: str = "wait for it to finish and try again",
                   error: type[PitoolsError] = LockHeld) -> Iterator[Path]:
    """Hold an exclusive lock on `path` for the ``with`` block, or raise `error` at once.

    Parameters
    ----------
    path : path-like
        The lock file; its folder is created. The file is never removed (removing it
        while another process waits on it would give two holders).
    info : dict
        Who is taking the lock (JSON-able); ``pid`` and ``started`` (UTC, ISO 8601) are
        added unless given. Written into the lock file for whoever is refused.
    what : str
        The kind of run the lock guards, for the message: ``"another evolve run"``.
    hint : str
        How to go on when refused.
    error : PitoolsError subclass
        Raised when the lock is held (default :class:`LockHeld`, exit code 1).

    Raises
    ------
    LockHeld (or `error`)
        "`what` holds the lock 'PATH' (pid N, started T, …); `hint`".
    OSError
        When the lock file cannot be created or written (a read-only or full folder):
        the caller knows what the folder is and says so.

    Example
    -------
    >>> with exclusive_lock("data/evolve.lock", {"profile": "demo"}, "another evolve run"):
    ...     with exclusive_lock("data/evolve.lock", {"profile": "ci"}, "another evolve run"):
    ...         pass
    Traceback (most recent call last):
    pitools.errors.LockHeld: another evolve run holds the lock 'data/evolve.lock' (pid ..., started ...)...
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # "a+": taking a look never truncates what the holder wrote
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise error(f"{what} holds the lock {str(path)!r} ({_describe(read_holder(path))}); {hint}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "started": _now(), **info}, default=str) + "\n")
        fh.flush()
        yield path
    finally:
        fh.close()  # closing the last descriptor releases the lock


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")

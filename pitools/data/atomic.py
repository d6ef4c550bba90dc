"""Crash-safe file writes: write a temp file beside the target, fsync, rename.

A reader sees the old file or the new one, never a half-written one: ``os.replace`` is
atomic on POSIX file systems, and the directory is fsynced so the rename survives a
power cut (a Pi on a home LAN loses power more often than a server).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "write_bytes_atomic", "write_text_atomic", "fsync_dir", "TMP_PREFIX"]

TMP_PREFIX = ".tmp-"


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry (a rename or a new file) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", perms: int | None = None) -> Iterator[IO]:
    """Open a temp file beside `path`; on a clean exit it replaces `path` atomically.

    On an exception the temp file is removed and `path` is left as it was. The file is
    created 0600; `perms` (e.g. ``0o644``) is set before the rename, so the name never
    points at a file with the wrong mode.

    Example
    -------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_write(target, "w") as fh:
    ...     _ = fh.write("hello")
    >>> target.read_text()
    'hello'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            if perms is not None:
                os.fchmod(fh.fileno(), perms)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, perms: int | None = None) -> None:
    """Replace `path` with `data` atomically (mode 0600, or `perms`)."""
    with atomic_write(path, "wb", perms=perms) as fh:
        fh.write(data)


def write_text_atomic(path: str | os.PathLike, text: str, perms: int | None = None) -> None:
    """Replace `path` with `text` (UTF-8) atomically (mode 0600, or `perms`)."""
    write_bytes_atomic(path, text.encode("utf-8"), perms)

"""Room for the record: space set aside in the run folder for the run's closing writes."""

from __future__ import annotations

import os
from pathlib import Path

RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 4 << 20


def _reserve_space(run_dir: Path) -> None:
    """Set aside RESERVE_BYTES in the run folder, given back before the run's closing writes
    (:func:`_close_run`): a disk that fills up during the night — a notebook's output, another
    program — still takes run.json, the trades.db row, the index and the log's last lines, so
    the night ends `failed` with the reason, not `running`. Allocated, not sparse."""
    path = run_dir / RESERVE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError as exc:  # posix_fallocate's error names no file
        raise OSError(exc.errno, f"{exc.strerror} (setting aside {RESERVE_BYTES >> 20} MiB for the run's record)",
                      str(path)) from None
    finally:
        os.close(fd)


def _release_space(run_dir: Path) -> None:
    (run_dir / RESERVE_NAME).unlink(missing_ok=True)

"""The run's lock (on :func:`pitools.locks.exclusive_lock`): one nightly run at a time."""

from __future__ import annotations

from pathlib import Path

from pitools.errors import NightlyLocked
from pitools.locks import exclusive_lock

OUTPUTS_LOCK = ".nightly.lock"


def _nightly_lock(folder: Path, info: dict, name: str = "nightly.lock"):
    """The run's lock on ``<folder>/<name>`` (:func:`pitools.locks.exclusive_lock`). A run takes
    one in its data directory (trades.db, optimizer state) and one in its outputs folder,
    which profiles with different data directories share."""
    return exclusive_lock(folder / name, info, "another nightly run", error=NightlyLocked,
                          hint="wait for it to finish (`systemctl status pitools-nightly` or "
                               "outputs/index.html shows it)")

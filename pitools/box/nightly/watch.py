"""Watching a notebook's process tree: peak PSS, the wall-clock limit, and stopping leftovers (psutil)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

import psutil

from pitools.locks import LockHeld, exclusive_lock, read_holder
from pitools.memory import pool_pss_bytes, rss_bytes

log = logging.getLogger("pitools.box.nightly")  # one logger name for the whole runner (nightly.log lines)

_SAMPLE_S = 0.25



def descendants(pid: int | None = None) -> list[int]:
    """Every process below `pid` (default: this one): the kernel and its pool workers."""
    try:
        return [p.pid for p in psutil.Process(pid or os.getpid()).children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


class _KernelWatch(threading.Thread):
    """Samples the PSS of everything below this process and enforces the wall-clock limit."""

    def __init__(self, timeout_s: float, ignore: frozenset[int] = frozenset()):
        super().__init__(daemon=True, name="pitools-kernel-watch")
        self.ignore = ignore  # children the caller had before the notebook: not ours to count or kill

        self._pss, self._rss = pool_pss_bytes, rss_bytes
        self.timeout_s = timeout_s
        self.peak_pss = 0
        self.peak_rss = 0
        self.timed_out = False
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._halt.wait(_SAMPLE_S):
            pids = [p for p in descendants() if p not in self.ignore]
            self.peak_pss = max(self.peak_pss, self._pss(pids))
            self.peak_rss = max([self.peak_rss, *(r for r in map(self._rss, pids) if r)])
            if time.monotonic() - self._t0 > self.timeout_s and not self.timed_out:
                self.timed_out = True
                log.error("wall-clock limit of %.0f s reached: stopping the kernel", self.timeout_s)
                _kill(pids)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_leftovers(data_dir: Path, wait_s: float = 10.0) -> None:
    """Stop a killed night's kernel that still holds evolve.lock.

    A kernel runs in its own session, so only systemd's cgroup kill reaches it when its
    runner is killed; it may go on evolving and hold the lock. This run holds the nightly
    lock, so a holder that names a runner which is gone is such a leftover: kill it and its
    pool, as the cgroup kill would have, and wait for the lock. A `pitools evolve` a person
    started names no runner and is left alone (03_research will say the lock is held).
    """
    path = data_dir / "evolve.lock"
    holder = read_holder(path)
    runner, pid = holder.get("nightly"), holder.get("pid")
    if not (isinstance(runner, int) and isinstance(pid, int)) or runner == os.getpid() or _alive(runner) \
            or not _alive(pid):
        return
    log.warning("pid %d (evolving for the killed nightly run of pid %d) still holds %s: stopping it", pid, runner, path)
    _kill([*descendants(pid), pid])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with exclusive_lock(path, {"nightly": os.getpid(), "note": "checked free"}, "the killed run's kernel"):
                return
        except LockHeld:
            time.sleep(0.1)


def _kill(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)

"""Memory as the kernel counts it: RSS of one process, PSS summed over a pool (via psutil).

Never virtual size: a process that maps a 2 GB file or reserves arenas has a huge VIRT
and costs nothing — counting VIRT is what made the old watchdog reboot the box.
PSS (proportional set size) splits shared pages between the processes that share them,
so the PSS of a forked pool adds up to what the pool really takes.

Every figure comes from psutil (no module of pitools reads ``/proc`` by hand) and every
function returns None where the figure is unavailable (a process that is gone, or one we
may not read), so callers print ``n/a`` instead of failing.

Platforms. On Linux, PSS is ``Pss`` of ``smaps_rollup`` (psutil's ``memory_full_info``).
Where the OS has no PSS (macOS, Windows) :func:`pss_bytes` falls back to USS (the pages
only that process holds) and, where even that is refused, to RSS: the figures still work
on a Mac, a pool's sum then undercounts shared pages (USS) or counts them once per
process (RSS).

>>> from pitools.memory import rss_bytes, pss_bytes, format_mb
>>> rss_bytes() > 0 and pss_bytes() > 0
True
>>> format_mb(3 * 2**20)
'3.0 MB'
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable

import psutil

__all__ = ["rss_bytes", "peak_rss_bytes", "pss_bytes", "pool_pss_bytes", "available_bytes", "format_mb",
           "tree_pids", "tree_pss_bytes", "PeakSampler"]

_KB = 1024
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ProcessLookupError, PermissionError,
         FileNotFoundError)


def _process(pid: int | str) -> psutil.Process:
    return psutil.Process() if pid in ("self", None) else psutil.Process(int(pid))


def _is_self(pid: int | str) -> bool:
    return pid in ("self", None) or int(pid) == os.getpid()


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size of `pid` now (``VmRSS``); None if the process is gone."""
    try:
        return _process(pid).memory_info().rss
    except _GONE:
        return None


def peak_rss_bytes(pid: int | str = "self") -> int | None:
    """Peak resident set size of `pid` (the high-water mark, ``VmHWM``).

    For this process it is ``getrusage(RUSAGE_SELF).ru_maxrss`` (kB on Linux, bytes on
    macOS), never below the RSS now; psutil exposes no high-water mark of another process,
    so for any other pid this is None (unavailable).
    """
    if not _is_self(pid):
        return None
    try:
        import resource
    except ImportError:  # Windows
        return rss_bytes()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = maxrss if sys.platform == "darwin" else maxrss * _KB
    now = rss_bytes()
    return max(peak, now) if now is not None else peak


def pss_bytes(pid: int | str = "self") -> int | None:
    """Proportional set size of `pid`; None if the process is gone.

    Linux: ``Pss`` (``smaps_rollup``). Where the OS reports no PSS (macOS, Windows): the USS
    of `pid`, or its RSS where USS is refused (see the module docstring).
    """
    try:
        proc = _process(pid)
    except _GONE:
        return None
    try:
        full = proc.memory_full_info()
    except (psutil.AccessDenied, PermissionError):
        return rss_bytes(pid)  # e.g. another user's process on macOS: RSS is all there is
    except _GONE:
        return None
    pss = getattr(full, "pss", None)
    if pss is not None:
        return pss
    uss = getattr(full, "uss", None)
    return uss if uss is not None else full.rss


def pool_pss_bytes(pids: Iterable[int]) -> int:
    """PSS summed over `pids` (a parent and its workers): what the pool really takes."""
    return sum(p for p in (pss_bytes(pid) for pid in pids) if p is not None)


def tree_pids(pid: int | str = "self") -> list[int]:
    """`pid` and all its descendants (children, recursively), `pid` first; [] if it is gone."""
    try:
        proc = _process(pid)
        return [proc.pid, *(c.pid for c in proc.children(recursive=True))]
    except _GONE:
        return []


def tree_pss_bytes(pid: int | str = "self") -> int | None:
    """PSS summed over `pid` and its descendants (a kernel and the pool it forked); None if
    `pid` is gone."""
    pids = tree_pids(pid)
    return pool_pss_bytes(pids) if pids else None


def available_bytes() -> int | None:
    """``MemAvailable`` of the machine: what can be allocated without swapping."""
    try:
        return psutil.virtual_memory().available
    except (OSError, RuntimeError, AttributeError):
        return None


def format_mb(n: int | float | None) -> str:
    """``123.4 MB`` (or ``n/a``)."""
    return "n/a" if n is None else f"{n / (_KB * _KB):.1f} MB"


class PeakSampler(threading.Thread):
    """The one memory sampler: a daemon thread that samples the PSS summed over this process
    and ``pids`` (a list the caller may refill while it runs, e.g. with a pool's workers),
    or over whatever ``measure()`` returns, and keeps the peak.

    A PSS read walks the page tables (~4 ms a process of 250 MB, more on a Pi) and the
    workers need every core: after the first sample (at `first_s`, so a short map's workers
    are still measured while they work) the period grows so that sampling takes at most
    `max_share` of one core, and is never below `period_s`.

    >>> s = PeakSampler([]); s.start(); s.stop() > 0
    True
    """

    def __init__(self, pids: list[int] | None = None, measure: Callable[[], int | None] | None = None, *,
                 period_s: float = 0.2, first_s: float = 0.05, max_share: float = 0.05,
                 name: str = "pitools-pss"):
        super().__init__(name=name, daemon=True)
        self.pids = pids if pids is not None else []
        self.peak, self.taken, self._halt = 0, 0, threading.Event()
        self._measure = measure or (lambda: pool_pss_bytes([os.getpid(), *self.pids]))
        self._period, self._first, self._share = period_s, first_s, max_share

    def sample(self) -> float:
        """One sample now; returns the seconds it took."""
        t0 = time.perf_counter()
        value = self._measure()
        if value is not None:
            self.peak = max(self.peak, value)
        return time.perf_counter() - t0

    def run(self) -> None:
        period = self._first
        while not self._halt.wait(period):
            period = max(self._period, self.sample() / self._share)
            self.taken += 1

    def stop(self) -> int:
        """Stop sampling; the peak (one sample now if none was taken yet)."""
        self._halt.set()
        if self.is_alive():
            self.join()
        if not self.peak:  # shorter than one period
            self.sample()
        return self.peak

"""Memory as the kernel counts it: RSS of one process, PSS summed over a pool.

Never virtual size: a process that maps a 2 GB file or reserves arenas has a huge VIRT
and costs nothing — counting VIRT is what made the old watchdog reboot the box.
PSS (proportional set size) splits shared pages between the processes that share them,
so the PSS of a forked pool adds up to what the pool really takes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["rss_bytes", "peak_rss_bytes", "pss_bytes", "pool_pss_bytes", "available_bytes", "format_mb"]

_KB = 1024


def _status_field(pid: int | str, name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(name + ":"):
                    return int(line.split()[1]) * _KB
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size of `pid` now (``VmRSS``); None if the process is gone."""
    return _status_field(pid, "VmRSS")


def peak_rss_bytes(pid: int | str = "self") -> int | None:
    """Peak resident set size of `pid` (``VmHWM``, the high-water mark)."""
    return _status_field(pid, "VmHWM")


def pss_bytes(pid: int | str = "self") -> int | None:
    """Proportional set size of `pid` from ``/proc/<pid>/smaps_rollup``; None if unavailable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * _KB
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def pool_pss_bytes(pids: Iterable[int]) -> int:
    """PSS summed over `pids` (a parent and its workers): what the pool really takes."""
    return sum(p for p in (pss_bytes(pid) for pid in pids) if p is not None)


def available_bytes() -> int | None:
    """``MemAvailable`` of the machine: what can be allocated without swapping."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * _KB
    except FileNotFoundError:
        return None
    return None


def format_mb(n: int | float | None) -> str:
    """``123.4 MB`` (or ``n/a``)."""
    return "n/a" if n is None else f"{n / (_KB * _KB):.1f} MB"

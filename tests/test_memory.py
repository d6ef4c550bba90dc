"""Memory is read as RSS/PSS from /proc, never as virtual size."""

from __future__ import annotations

import mmap
import os

import numpy as np

from pitools.memory import available_bytes, format_mb, peak_rss_bytes, pool_pss_bytes, pss_bytes, rss_bytes

MB = 1024 * 1024


def test_rss_grows_with_touched_memory_and_not_with_reserved_memory():
    before = rss_bytes()
    reserved = mmap.mmap(-1, 512 * MB)  # reserved, untouched: virtual size only
    assert rss_bytes() - before < 32 * MB
    touched = np.ones(96 * MB // 8)  # written: resident
    assert rss_bytes() - before > 80 * MB
    assert peak_rss_bytes() >= rss_bytes()
    del touched
    reserved.close()


def test_pss_of_self_and_of_a_pool():
    own = pss_bytes()
    assert own is not None and 0 < own <= rss_bytes()
    assert pool_pss_bytes([os.getpid()]) == own or abs(pool_pss_bytes([os.getpid()]) - own) < 4 * MB
    assert pss_bytes(2**22 + 12345) is None  # a pid that does not exist
    assert available_bytes() > 0
    assert format_mb(3 * MB) == "3.0 MB" and format_mb(None) == "n/a"

"""Memory is read as RSS/PSS from /proc, never as virtual size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from pitools.memory import available_bytes, format_mb, peak_rss_bytes, pool_pss_bytes, pss_bytes, rss_bytes

MB = 1024 * 1024

# In a fresh process: memory freed by earlier tests would otherwise be reused in place.
_PROBE = textwrap.dedent("""
    import json, mmap
    import numpy as np
    from pitools.memory import rss_bytes, peak_rss_bytes, pss_bytes
    out = {"start": rss_bytes()}
    reserved = mmap.mmap(-1, 512 * 2**20)      # reserved, untouched: virtual size only
    out["reserved"] = rss_bytes()
    touched = np.ones(96 * 2**20 // 8)         # written: resident
    out["touched"] = rss_bytes()
    out["peak"] = peak_rss_bytes()
    out["pss"] = pss_bytes()
    print(json.dumps(out))
""")


def test_rss_grows_with_touched_memory_and_not_with_reserved_memory():
    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    m = json.loads(r.stdout)
    assert m["reserved"] - m["start"] < 32 * MB
    assert m["touched"] - m["reserved"] > 80 * MB
    assert m["peak"] >= m["touched"]
    assert 0 < m["pss"] <= m["touched"] + MB


def test_pss_of_self_and_of_a_pool():
    own = pss_bytes()
    assert own is not None and 0 < own <= rss_bytes() + MB
    assert abs(pool_pss_bytes([os.getpid()]) - own) < 4 * MB
    assert pss_bytes(2**22 + 12345) is None  # a pid that does not exist
    assert peak_rss_bytes() >= rss_bytes() - MB
    assert available_bytes() > 0
    assert format_mb(3 * MB) == "3.0 MB" and format_mb(None) == "n/a"

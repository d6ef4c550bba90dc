"""numba's cache goes where pitools.kernels.use_cache_dir puts it, and a late move is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent("""
    import sys
    import pitools.kernels
    pitools.kernels.use_cache_dir(sys.argv[1])
    import numpy as np
    import pitools as pt
    from pitools.data.panel import Panel
    rng = np.random.default_rng(0)
    c = np.asfortranarray(50 * np.exp(np.cumsum(rng.normal(0, 0.01, (300, 2)), axis=0)))
    import pandas as pd
    panel = Panel(pd.bdate_range("2024-01-01", periods=300), ["A", "B"],
                  {"open": c, "high": c * 1.01, "low": c * 0.99, "close": c})
    print(pt.backtest("ts_momentum", panel, {"lookback": 20}).portfolio["n_trades"])
    try:
        pitools.kernels.use_cache_dir(sys.argv[1] + "-elsewhere")
    except pt.ConfigError as exc:
        print("refused:", exc)
""")


def test_kernels_are_cached_in_the_chosen_directory(tmp_path):
    cache = tmp_path / "numba-cache"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(cache)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.splitlines()[0]) > 0
    assert "refused: numba is already imported" in out.stdout and "-elsewhere" in out.stdout
    index_files = list(cache.rglob("*.nbi"))
    assert any("driver" in p.name for p in index_files), sorted(p.name for p in index_files)
    assert not (tmp_path / "numba-cache-elsewhere").exists()

"""numba's cache: one folder per user (pitools.kernels.cache_dir) shared by every data folder
and profile; it goes where use_cache_dir puts it, and a late move is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import END, ROOT, run_cli
from pitools.kernels import cache_dir

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


@pytest.mark.parametrize("env, expected", [
    ({"HOME": "/home/pi"}, "/home/pi/.cache/pitools/numba"),
    ({"HOME": "/home/pi", "XDG_CACHE_HOME": "/srv/cache"}, "/srv/cache/pitools/numba"),
    ({"HOME": "/home/pi", "XDG_CACHE_HOME": "relative/cache"}, "/home/pi/.cache/pitools/numba"),  # XDG: ignored
    ({"HOME": "/home/pi", "XDG_CACHE_HOME": "/srv/cache", "NUMBA_CACHE_DIR": "/fast/nb"}, "/fast/nb"),  # user wins
])
def test_cache_dir_is_per_user_and_numba_cache_dir_wins(env, expected):
    assert cache_dir(env) == Path(expected)


def _cache_files(folder: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def test_a_second_data_folder_compiles_nothing(tmp_path):
    """`pitools evolve` on data folder A compiles the kernels into the user's cache; the same
    command on a fresh data folder B loads every one of them and writes nothing."""
    import pitools as pt

    store = tmp_path / "store"
    pt.make_demo_store(store, n_symbols=3, years=1, seed=1, end=END)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    # a cache of this test's own (cold at first), and numba's own log of what it saved/loaded
    env.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), NUMBA_DEBUG_CACHE="1", PITOOLS_HOME=str(ROOT))
    cache = tmp_path / "xdg" / "pitools" / "numba"

    def evolve(data_dir: Path):
        out = run_cli("evolve", "--profile", "ci", "--set", f"data_dir={data_dir}", "--set", "population_size=2",
                      "--set", "generations=1", "--strategy", "sma_cross", "--backend", "serial",
                      "--store", str(store), env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    first = evolve(tmp_path / "a")
    assert "[cache] data saved to" in first and str(cache) in first  # cold: compiled, into the shared cache
    before = _cache_files(cache)
    assert any(p.suffix == ".nbi" and "driver" in p.name for p in before), sorted(p.name for p in before)

    second = evolve(tmp_path / "b")
    assert "[cache] data loaded from" in second
    assert "saved to" not in second, [line for line in second.splitlines() if "saved to" in line]
    assert _cache_files(cache) == before  # not one index or object file written or touched
    assert [p for d in ("a", "b") for p in (tmp_path / d).rglob("*.nb[ic]")] == []  # none per data folder

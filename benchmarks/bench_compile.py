"""numba compilation: every kernel cold, then warm import + first call, each in a fresh process.

The cache lives in a fresh temporary ``NUMBA_CACHE_DIR`` (as the per-user
``~/.cache/pitools/numba`` of :func:`pitools.kernels.cache_dir` does on the Pi). "Cold" compiles the eight strategies through
``pt.backtest`` (the numba loop, and the equity/trade-list path) and the public
indicators; "warm" is a new process with that cache: ``import pitools`` and the first
backtest, then every other strategy.

Goals of the backtest-engine issue: cold <= 30 s, warm import + first call <= 2 s.

    .venv/bin/python benchmarks/bench_compile.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from bench_backtest import store

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import pitools as pt
t_import = time.perf_counter() - t0
panel = pt.load_panel(sys.argv[1])
times = {}
for name in pt.strategies.names():
    t = time.perf_counter()
    res = pt.backtest(name, panel, fees=0.001)
    res.portfolio
    times[name] = time.perf_counter() - t
t = time.perf_counter()
for name in pt.strategies.names():
    res = pt.backtest(name, panel, fees=0.001)
    res.equity, res.trades
times["equity and trades"] = time.perf_counter() - t
t = time.perf_counter()
import pitools.engine.indicators
c = panel.close[:, 0].astype(np.float64)
for f, args in ((pt.indicators.sma, (c, 10)), (pt.indicators.ema, (c, 10)), (pt.indicators.rsi, (c,)),
                (pt.indicators.atr, (c, c, c)), (pt.indicators.bollinger, (c,)), (pt.indicators.donchian, (c, c)),
                (pt.indicators.roc, (c, 5)), (pt.indicators.rolling_volatility, (c, 5))):
    f(*args)
times["indicators"] = time.perf_counter() - t
print(json.dumps({"import": t_import, **times}))
"""


def _run(panel_path, cache: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(panel_path)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    path = store(50, 2)
    with tempfile.TemporaryDirectory(prefix="pitools-numba-") as cache:
        cold = _run(path, cache)
        warm = _run(path, cache)
    total_cold = sum(v for k, v in cold.items() if k != "import")
    first_warm = warm["import"] + warm["sma_cross"]
    print("numba compilation, fresh cache dir, fresh processes (seconds)")
    print(f"{'step':<22}{'cold':>8}{'warm':>8}")
    for k in cold:
        print(f"{k:<22}{cold[k]:8.2f}{warm[k]:8.2f}")
    print(f"all kernels cold: {total_cold:.1f} s (goal <= 30 s: {'PASS' if total_cold <= 30 else 'MISS'})")
    print(f"warm import + first call: {first_warm:.2f} s (goal <= 2 s: {'PASS' if first_warm <= 2 else 'MISS'})")


if __name__ == "__main__":
    main()

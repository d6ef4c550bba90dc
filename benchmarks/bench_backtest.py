"""Backtest throughput: symbol-bars per second per core for every strategy.

Runs ``pt.backtest(name, panel, fees=0.001)`` with default parameters (long-only, next-open
fills) on a 100-symbol × 3-year and a 2,556-symbol × 20-year demo panel (built once and
cached under ``benchmarks/.data``) and reads ``res.portfolio`` — what an optimizer scores.
Two columns per panel: with the per-symbol stats (the default) and with
``per_symbol_stats=False`` (the portfolio only). One warm-up call per strategy first, so
numba compilation is not timed. One process, one core: the kernels are single-threaded.

Goals of the backtest-engine issue: sma_cross >= 100 M symbol-bars/s/core, no strategy
below 30 M.

    .venv/bin/python benchmarks/bench_backtest.py [--repeats 3] [--small-only]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".data"
END = "2026-11-20"


def store(symbols: int, years: int) -> Path:
    import pitools as pt

    path = DATA / f"full-{symbols}x{years}"
    info = pt.Store.open(path).info if pt.Store.exists(path) else {}
    want = {"source": "demo", "seed": 7, "n_symbols": symbols, "years": years, "end": END}
    if info != want:
        pt.make_demo_store(path, n_symbols=symbols, years=years, seed=7, end=END, force=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--small-only", action="store_true")
    args = ap.parse_args()
    import pitools as pt

    sizes = [(100, 3)] + ([] if args.small_only else [(2556, 20)])
    print("backtest throughput, M symbol-bars/s on one core (median of", args.repeats, "runs);")
    print("'stats': per-symbol stats and the portfolio, 'portfolio': per_symbol_stats=False")
    print(f"{'strategy':<22}" + "".join(f"{f'{s}x{y}y stats':>17}{'portfolio':>11}" for s, y in sizes) + "   goal")
    panels = [pt.load_panel(store(s, y)) for s, y in sizes]
    for name in pt.strategies.names():
        row = f"{name:<22}"
        for panel in panels:
            for per_symbol in (True, False):
                run = lambda: pt.backtest(name, panel, fees=0.001, per_symbol_stats=per_symbol).portfolio  # noqa: E731
                run()  # warm-up: compile or load the numba cache
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - t0)
                rate = panel.n_bars * panel.n_symbols / statistics.median(times) / 1e6
                row += f"{rate:{17 if per_symbol else 11}.1f}"
        print(row + ("   >= 100" if name == "sma_cross" else "   >= 30"))

if __name__ == "__main__":
    main()

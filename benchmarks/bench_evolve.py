"""The old system's full research run: 8 strategies, population 20, 3 generations, 100 × 3 y.

``pitools.search.evolve.evolve`` with the shipped ``params/strategies.yaml`` on the 100-symbol ×
3-year demo store, a fresh state directory each time (night one: no incumbents), numba
cache warm. Prints the evolution time (the search itself, after the panel is loaded), the
evaluations, the pool's peak PSS, and the leaderboard of the 2-worker run. The old system
took 3–4 minutes for this on the Pi; the goal here is <= 5 s.

    .venv/bin/python benchmarks/bench_evolve.py [--workers 1,2]
    .venv/bin/python benchmarks/bench_evolve.py --moonshot      # 2,556 × 20 y, 2 workers

The moonshot is the whole universe: 2,556 symbols × 20 years, same search, goal <= 120 s
with the PSS summed over the whole pool <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_backtest import store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    ap.add_argument("--moonshot", action="store_true", help="2,556 symbols x 20 years on 2 workers instead")
    args = ap.parse_args()
    if args.moonshot:
        return moonshot()
    import pitools as pt
    from pitools.config import load_profile
    from pitools.search.evolve import evolve
    from pitools.memory import format_mb

    path = store(100, 3)
    panel = pt.load_panel(path, fields=("open", "high", "low", "close"))
    for name in pt.strategies.names():  # warm the numba cache: workers must not compile
        pt.backtest(name, panel)
    print(f"research run: 8 strategies x population 20 x 3 generations on {panel.n_symbols} symbols x "
          f"{panel.n_bars} bars")
    results = {}
    for n in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory(prefix="pitools-evolve-") as tmp:
            prof = load_profile("demo", overrides=[f"data_dir={tmp}", "population_size=20", "generations=3",
                                                   f"n_workers={n}", "max_symbols=100", "max_years=3"])
            rep = evolve(prof, panel=panel, progress=False, backend="serial" if n == 1 else "process")
        results[n] = rep
        print(f"  {n} worker{'s' if n > 1 else ' '}: {rep.elapsed_s:6.2f} s evolution, {rep.evaluations} evaluations "
              f"({rep.evaluations / rep.elapsed_s:.0f}/s), pool peak PSS {format_mb(rep.peak_pss_bytes)}")
    best = min(r.elapsed_s for r in results.values())
    print(f"goal: <= 5 s of evolution time: {best:.2f} s {'PASS' if best <= 5 else 'MISS'} "
          "(the old system: 3-4 minutes on the Pi)")
    last = results[max(results)]
    print()
    print(last.to_text())


def moonshot() -> None:
    import pitools as pt
    from pitools.config import load_profile
    from pitools.search.evolve import evolve
    from pitools.memory import format_mb, peak_rss_bytes

    panel = pt.load_panel(store(2556, 20), fields=("open", "high", "low", "close"))
    for name in pt.strategies.names():  # warm the numba cache on a slice: workers must not compile
        pt.backtest(name, pt.Panel(panel.dates[:300], panel.symbols[:20],
                                   {f: panel.field(f)[:300, :20].copy(order="F") for f in panel.fields}))
    print(f"moonshot: 8 strategies x population 20 x 3 generations on {panel.n_symbols} symbols x {panel.n_bars} "
          f"bars ({format_mb(panel.nbytes)} panel), 2 workers")
    with tempfile.TemporaryDirectory(prefix="pitools-evolve-") as tmp:
        prof = load_profile("pi_full", overrides=[f"data_dir={tmp}", "population_size=20", "generations=3",
                                                  "n_workers=2", "max_symbols=2556", "max_years=20"])
        rep = evolve(prof, panel=panel, progress=False)
    print(f"  {rep.elapsed_s:.1f} s evolution, {rep.evaluations} evaluations, pool peak PSS "
          f"{format_mb(rep.peak_pss_bytes)} (parent peak RSS {format_mb(peak_rss_bytes())})")
    print(f"goal: <= 120 s: {'PASS' if rep.elapsed_s <= 120 else 'MISS'}; pool PSS <= 1.5 GB: "
          f"{'PASS' if rep.peak_pss_bytes <= 1.5 * 1024 ** 3 else 'MISS'}")
    print()
    print(rep.to_text())


if __name__ == "__main__":
    main()

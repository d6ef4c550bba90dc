"""Fitness-map scaling: the same map of backtests on 1, 2, 4 (8) workers, and its overhead.

Each candidate is one ``pt.backtest(name, panel, params, fees=0.001,
per_symbol_stats=False).portfolio["sharpe"]`` on a 500-symbol × 10-year demo panel (built
once and cached under ``benchmarks/.data``): the strategies of the eight in turn with
seeded random parameters from their spaces, as an optimizer asks them (``--strategy
sma_cross`` for one only). 1 worker is ``backend="serial"``; more is the fork pool
(``backend="process"``), pool start and stop included. Median of ``--repeats`` maps. The
same again with ``--large`` candidates (default 256): a pool map has a fixed cost (fork,
the warm-up evaluation in the parent, joining the workers), which a map of 64 short
evaluations feels and a longer one does not. Then the map's own costs: a map of one
trivial candidate per worker (the fixed cost), and 2,000 candidates of a function
returning 0.0 (the per-evaluation overhead of the chunking).

Goals of the fitness-map issue: 2 workers >= 1.8x, 4 workers >= 3.5x the 1-worker time
(the old system: 2.3x on 4 workers).

    .venv/bin/python benchmarks/bench_fitness.py [--workers 1,2,4] [--candidates 64]
        [--large 256] [--symbols 500] [--years 10] [--repeats 3] [--strategy NAME]
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

from bench_backtest import store

GOALS = {2: 1.8, 4: 3.5}


def evaluate(candidate: dict, panel) -> float:
    """One backtest, scored as the optimizer scores it (module-level: the pool inherits it)."""
    import pitools as pt

    params = dict(candidate)
    name = params.pop("strategy")
    return float(pt.backtest(name, panel, params, fees=0.001, per_symbol_stats=False).portfolio["sharpe"])


def nothing(candidate: dict, panel) -> float:
    return 0.0


def candidates(n: int, names: list[str], seed: int = 7) -> list[dict]:
    """`n` valid parameter sets, cycling through `names`, drawn uniformly from each space."""
    import pitools as pt
    from pitools.errors import DataError

    rng, out = np.random.default_rng(seed), []
    while len(out) < n:
        strategy = pt.strategies.get(names[len(out) % len(names)])
        params = {k: int(rng.integers(p.low, p.high + 1)) if p.kind == "int" else float(rng.uniform(p.low, p.high))
                  for k, p in strategy.space.items()}
        try:
            strategy.validate(params)
        except DataError:  # a constraint such as fast < slow: draw again
            continue
        out.append({"strategy": strategy.name, **params})
    return out


def timed_map(fn, cands, panel, workers: int, repeats: int):
    """(median seconds, the results of the last map) of `repeats` maps."""
    import pitools.search.fitness as fitness

    times, res = [], None
    for _ in range(repeats):
        res = fitness.fitness_map(fn, cands, panel, n_workers=workers, backend="serial" if workers == 1 else "process",
                                  progress=False)
        times.append(res.elapsed_s)
    return statistics.median(times), res


def scaling(fn, cands, panel, workers: list[int], repeats: int, cpus: int) -> None:
    from pitools.memory import format_mb

    print(f"\n{len(cands)} candidates")
    print(f"{'workers':>7}{'time s':>9}{'evals/s':>9}{'speed-up':>10}{'efficiency':>12}{'peak PSS':>12}   goal")
    base, first = None, None
    for n in workers:
        t, res = timed_map(fn, cands, panel, n, repeats)
        base = base or t
        first = first if first is not None else res
        same = "" if res.values.tobytes() == first.values.tobytes() else "   RESULTS DIFFER from 1 worker"
        goal = (f"   >= {GOALS[n]}x {'PASS' if base / t >= GOALS[n] else 'MISS'}" if n in GOALS else "") + same
        print(f"{n:>7}{t:>9.3f}{len(cands) / t:>9.0f}{base / t:>9.2f}x{base / t / n:>11.0%}"
              f"{format_mb(res.peak_pss_bytes):>12}{goal}")
        if n > cpus:
            print(f"        ({n} workers on {cpus} CPUs: oversubscribed)")
    print(f"per evaluation: {base / len(cands) * 1e3:.2f} ms on one core; {len(first.errors)} candidates scored -inf"
          + (f" (first: {next(iter(first.errors.values()))})" if first.errors else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cpus = os.cpu_count() or 1
    default = [1, 2] + [n for n in (4, 8) if cpus >= n]
    ap.add_argument("--workers", default=",".join(map(str, default)), help="comma-separated worker counts")
    ap.add_argument("--candidates", type=int, default=64)
    ap.add_argument("--large", type=int, default=256, help="a second, longer map (0: skip)")
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategy", action="append", help="only this strategy (repeatable); default: all eight")
    args = ap.parse_args()
    import pitools as pt
    from pitools.memory import format_mb

    workers = sorted({int(w) for w in args.workers.split(",")} | {1})
    panel = pt.load_panel(store(args.symbols, args.years), fields=("open", "high", "low", "close"))
    names = args.strategy or pt.strategies.names()
    for name in names:  # warm the numba cache: no map pays for compilation
        pt.backtest(name, panel)
    print(f"fitness map of backtests ({', '.join(names) if len(names) < 8 else 'the eight strategies in turn'}) "
          f"on {panel.n_symbols} symbols x {panel.n_bars} bars ({format_mb(panel.nbytes)} panel), "
          f"median of {args.repeats} maps; {cpus} CPUs")
    for size in [args.candidates] + ([args.large] if args.large else []):
        scaling(evaluate, candidates(size, names), panel, workers, args.repeats, cpus)
    print()
    print("the map's own costs, fn -> 0.0: fixed (one candidate per worker) and per evaluation (2,000 candidates)")
    trivial = [{"x": i} for i in range(2000)]
    for n in workers:
        fixed, _ = timed_map(nothing, trivial[:n + 1], panel, n, args.repeats)
        t, res = timed_map(nothing, trivial, panel, n, args.repeats)
        print(f"{n:>7} worker{'s' if n > 1 else ' '}: fixed {fixed * 1e3:5.1f} ms; 2,000 in {t * 1e3:6.1f} ms, "
              f"{len(trivial) / t:>9,.0f} evals/s, {(t - fixed) / len(trivial) * 1e6:5.1f} us per evaluation "
              f"(chunksize {-(-len(trivial) // (n * 4))})")


if __name__ == "__main__":
    main()

"""Tune-notebook latency: a slider move to updated figure data, 100 symbols × 3 years.

A :class:`pitools.notebook.tune.TuneSession` on all 100 symbols of the 100 × 3-year demo store
(shared with bench_backtest, cached under ``benchmarks/.data``), numba warm. Each of
``--moves`` seeded slider moves (two thirds sma_cross fast/slow, one third rsi_reversion
n/lower/upper; fast < slow and lower < upper kept, so every move redraws) is timed from
the parameter change to the figure's traces holding the new data:
``session.update(...)`` (the backtest and its stats, then the figure data) plus
``apply(fig, result)`` into one ``go.FigureWidget``. Reported: median and p95 of the
whole and of its parts, the goal (<= 50 ms) as PASS/MISS, and the whole TuneApp refresh
(the same plus the stats table's HTML and the message) as set through a slider.

Peer, measured in the same run on the same moves: the naive way — ``pt.backtest``, the
equity from ``res.equity`` with pandas (mean of the symbols' daily returns, compounded),
buy & hold with pandas, ``res.trades`` filtered to the symbol, and a new ``go.Figure``
(make_subplots) built each time.

    .venv/bin/python benchmarks/bench_tune.py [--moves 50] [--symbols 100] [--years 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def moves(n: int, seed: int = 7) -> list[tuple[str, dict]]:
    """(strategy, one slider's change) for `n` moves; each keeps the parameters valid."""
    rng = np.random.default_rng(seed)
    sma, rsi = {"fast": 10, "slow": 30}, {"n": 14, "lower": 30.0, "upper": 70.0}
    out = []
    for i in range(n):
        if i % 3 < 2:
            if i % 2:
                sma["fast"] = int(rng.integers(3, min(60, sma["slow"] - 1) + 1))
                out.append(("sma_cross", {"fast": sma["fast"]}))
            else:
                sma["slow"] = int(rng.integers(max(10, sma["fast"] + 1), 251))
                out.append(("sma_cross", {"slow": sma["slow"]}))
        else:
            key = ("n", "lower", "upper")[i % 9 // 3]
            value = {"n": int(rng.integers(3, 31)), "lower": round(float(rng.uniform(10, 45)), 1),
                     "upper": round(float(rng.uniform(55, 90)), 1)}[key]
            rsi[key] = value
            out.append(("rsi_reversion", {key: value}))
    return out


def naive_update(panel, strategy: str, params: dict, focus: str, kwargs: dict):
    """The peer: pandas-computed curves, all trades, a new figure every time."""
    import pandas as pd
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    import pitools as pt

    res = pt.backtest(strategy, panel, params, **kwargs)
    equity = 10_000.0 * (1 + res.equity.pct_change().mean(axis=1).fillna(0.0)).cumprod()
    close = pd.DataFrame(panel.close, index=panel.dates, columns=panel.symbols).astype(float)
    bh = 10_000.0 * (close.ffill() / close.bfill().iloc[0]).fillna(1.0).mean(axis=1)
    drawdown = equity / equity.cummax() - 1
    trades = res.trades
    trades = trades[trades["symbol"] == focus]
    stats = res.stats
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True)
    fig.add_trace(go.Scatter(x=close.index, y=close[focus], name=focus), row=1, col=1)
    fig.add_trace(go.Scatter(x=trades["entry_time"], y=trades["entry_price"], mode="markers"), row=1, col=1)
    fig.add_trace(go.Scatter(x=trades["exit_time"], y=trades["exit_price"], mode="markers"), row=1, col=1)
    fig.add_trace(go.Scatter(x=equity.index, y=equity.to_numpy()), row=2, col=1)
    fig.add_trace(go.Scatter(x=bh.index, y=bh.to_numpy()), row=2, col=1)
    fig.add_trace(go.Scatter(x=drawdown.index, y=drawdown.to_numpy(), fill="tozeroy"), row=3, col=1)
    return fig, stats


def _p95(xs: list[float]) -> float:
    return float(np.percentile(xs, 95))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=50)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--years", type=int, default=3)
    args = ap.parse_args()
    from bench_backtest import store

    from pitools.notebook.tune import TuneApp, TuneSession, apply, make_figure

    path = store(args.symbols, args.years)
    session = TuneSession(path)
    panel = session.panel
    fig = make_figure()
    print(f"tune latency on {panel!r}")
    print(f"figure: {type(fig).__name__}; fills and fees as the research: {session.backtest_kwargs}")
    for name in ("sma_cross", "rsi_reversion"):  # warm: numba cache, imports, first figure
        apply(fig, session.update(strategy=name))
        naive_update(panel, name, None, session.focus, session.backtest_kwargs)

    plan = moves(args.moves)
    parts = {"backtest + stats": [], "figure data": [], "apply to FigureWidget": [], "total": []}
    naive = []
    for strategy, change in plan:
        t0 = time.perf_counter()
        res = session.update(change, strategy=strategy)
        t1 = time.perf_counter()
        assert apply(fig, res), res.error
        t2 = time.perf_counter()
        parts["backtest + stats"].append(res.timings["backtest"])
        parts["figure data"].append(res.timings["figure_data"])
        parts["apply to FigureWidget"].append((t2 - t1) * 1e3)
        parts["total"].append((t2 - t0) * 1e3)
        t3 = time.perf_counter()
        naive_update(panel, strategy, res.params, session.focus, session.backtest_kwargs)
        naive.append((time.perf_counter() - t3) * 1e3)

    # the whole app: a slider set as a person would, through the observers
    app = TuneApp(TuneSession(panel))
    app_ms = []
    for strategy, change in plan:
        if app.strategy.value != strategy:
            app.strategy.value = strategy
        (key, value), = change.items()
        t0 = time.perf_counter()
        app.sliders[key].value = value
        app_ms.append((time.perf_counter() - t0) * 1e3)
        assert "#b00020" not in app.message.value, app.message.value

    by = {s: [t for (name, _), t in zip(plan, parts["total"]) if name == s] for s in ("sma_cross", "rsi_reversion")}
    print(f"\n{len(plan)} slider moves ({len(by['sma_cross'])} sma_cross, {len(by['rsi_reversion'])} rsi_reversion), "
          f"{panel.n_symbols} symbols x {panel.n_bars} bars, ms:")
    print(f"{'part':<44}{'median':>9}{'p95':>9}")
    for name, xs in parts.items():
        print(f"{name:<44}{statistics.median(xs):9.2f}{_p95(xs):9.2f}")
    for name, xs in by.items():
        print(f"{'  total, ' + name:<44}{statistics.median(xs):9.2f}{_p95(xs):9.2f}")
    print(f"{'TuneApp refresh (+ stats table HTML, message)':<44}{statistics.median(app_ms):9.2f}{_p95(app_ms):9.2f}")
    print(f"{'peer: naive (pandas curves, new go.Figure)':<44}{statistics.median(naive):9.2f}{_p95(naive):9.2f}")
    total = statistics.median(parts["total"])
    print(f"\ngoal: <= 50 ms from a parameter change to updated figure data: median {total:.1f} ms, "
          f"p95 {_p95(parts['total']):.1f} ms -> {'PASS' if _p95(parts['total']) <= 50 else 'MISS'}")
    print(f"naive / pitools.notebook.tune (median): {statistics.median(naive) / total:.1f}x")


if __name__ == "__main__":
    main()

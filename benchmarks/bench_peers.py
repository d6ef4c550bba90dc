"""The same SMA-cross parameter sweep by pitools, vectorbt and backtesting.py, on one core.

Throughput is symbol-bars × parameter sets per second. Each peer runs the semantics it
shares with a pitools mode (the modes tests/test_peers.py checks trade for trade), and a
sanity line shows that both sides computed the same thing for one parameter set:

* vectorbt ``Portfolio.from_signals`` (long while SMA(fast) > SMA(slow), fills at the
  close, fees 0.1 %, all-in) against ``pt.backtest(fill="close", direction="long_only")``
  on the 100-symbol × 3-year demo panel; per-symbol total return and Sharpe are read.
* backtesting.py ``Backtest.optimize`` (long above, short below, whole shares, fills at
  the next open, commission 0.1 %) against ``pt.backtest(fill="next_open",
  direction="long_short", integer_shares=True)`` on its own GOOG daily data (2,148 bars);
  backtesting.py's process pool is replaced by a single thread so both use one core.

Warm-up runs (numba compilation of both numba users) are not timed.

    .venv/bin/python benchmarks/bench_peers.py [--repeats 3]
"""

from __future__ import annotations

import os

os.environ["TQDM_DISABLE"] = "1"  # before tqdm is imported: backtesting.py's per-run progress bars

import argparse
import itertools
import multiprocessing
import statistics
import time
import warnings

import backtesting
import numpy as np
import pandas as pd

from bench_backtest import store

WINDOWS = (5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100)
GRID = [(f, s) for f, s in itertools.combinations(WINDOWS, 2)]  # fast < slow: 55 sets
FEES = 0.001


def _timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (compilation, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def pitools_sweep(panel, grid, **kwargs) -> pd.DataFrame:
    import pitools as pt

    rows = {}
    for fast, slow in grid:
        res = pt.backtest("sma_cross", panel, {"fast": fast, "slow": slow}, fees=FEES, **kwargs)
        rows[(fast, slow)] = res.stats[["total_return", "sharpe", "final_equity"]]
    return pd.concat(rows, names=["fast", "slow"])


def vectorbt_sweep(close: pd.DataFrame, grid):
    import vectorbt as vbt

    fast_ma, slow_ma = vbt.MA.run_combs(close, window=list(WINDOWS), r=2, short_names=["fast", "slow"])
    entries = fast_ma.ma_above(slow_ma)
    exits = fast_ma.ma_below(slow_ma)
    pf = vbt.Portfolio.from_signals(close, entries, exits, fees=FEES, init_cash=10_000.0, freq="1D")
    return pf.total_return(), pf.sharpe_ratio(), pf.final_value()


class SmaState(backtesting.Strategy):
    """Long while SMA(fast) > SMA(slow), short while below (module level: the pool pickles it)."""

    fast, slow = 10, 30

    def init(self):
        sma = lambda x, n: pd.Series(x).rolling(n).mean()  # noqa: E731
        self.f = self.I(sma, self.data.Close, self.fast)
        self.s = self.I(sma, self.data.Close, self.slow)

    def next(self):
        if self.f[-1] > self.s[-1] and not self.position.is_long:
            self.position.close()
            self.buy()
        elif self.f[-1] < self.s[-1] and not self.position.is_short:
            self.position.close()
            self.sell()


def backtesting_sweep(goog, grid):
    # one worker process: one core at work, like the others
    backtesting.Pool = lambda *a, **k: multiprocessing.get_context("fork").Pool(1)
    bt = backtesting.Backtest(goog, SmaState, cash=10_000, commission=FEES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bt.optimize(fast=list(WINDOWS), slow=list(WINDOWS), constraint=lambda p: p.fast < p.slow,
                           maximize="Equity Final [$]", return_heatmap=True)[1], bt


def goog_panel():
    from backtesting.test import GOOG

    from pitools.data.panel import Panel

    arrays = {f: np.asfortranarray(GOOG[f.capitalize()].to_numpy(np.float64).reshape(-1, 1))
              for f in ("open", "high", "low", "close")}
    return GOOG, Panel(GOOG.index, ["GOOG"], arrays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import pitools as pt

    print(f"SMA-cross sweep: {len(GRID)} parameter sets (fast < slow from {WINDOWS}), fees {FEES:.1%}, one core")

    # --- vectorbt, 100 symbols x 3 years
    panel = pt.load_panel(store(100, 3))
    close = pd.DataFrame(panel.close.astype(np.float64), index=panel.dates, columns=panel.symbols)
    work = panel.n_bars * panel.n_symbols * len(GRID)
    t_pt, ours = _timed(lambda: pitools_sweep(panel, GRID, fill="close", direction="long_only"), args.repeats)
    t_vbt, theirs = _timed(lambda: vectorbt_sweep(close, GRID), max(1, args.repeats))
    final = theirs[2].xs((10, 30), level=("fast_window", "slow_window"))
    # symbols without gaps: vectorbt's rolling means see a gap as NaN, pitools skips it
    whole = ~np.isnan(panel.close).any(axis=0)
    mine = ours.loc[(10, 30), "final_equity"]
    symbols = [s for s, ok in zip(panel.symbols, whole) if ok]
    rel = (mine.loc[symbols] / final.loc[symbols] - 1).abs()
    same = rel[rel <= 1e-9].index
    # where SMA(10) == SMA(30) exactly (prices in cents repeat), pitools' sign is 0 (flat) while
    # vectorbt's "above"/"below" are both False (hold): the only difference between the two
    ties = (close.rolling(10).mean() - close.rolling(30).mean() == 0).any()
    explained = [s for s in rel.index.difference(same) if ties[s]]
    print(f"\n{panel.n_symbols} symbols x {panel.n_bars} bars x {len(GRID)} sets = {work / 1e6:.1f} M symbol-bar-sets")
    print(f"  pitools    {t_pt:8.3f} s  {work / t_pt / 1e6:9.2f} M/s")
    print(f"  vectorbt   {t_vbt:8.3f} s  {work / t_vbt / 1e6:9.2f} M/s")
    print(f"  pitools / vectorbt throughput: {t_vbt / t_pt:.1f}x   (goal >= 20x)")
    print(f"  same result check (fast=10, slow=30), {len(symbols)} symbols without gaps: final equity equal "
          f"(<= 1e-9) for {len(same)}; {len(explained)} of the other {len(symbols) - len(same)} have a bar where "
          f"the two means tie exactly (pitools goes flat, vectorbt holds)")

    # --- backtesting.py, GOOG
    goog, gpanel = goog_panel()
    gwork = gpanel.n_bars * len(GRID)
    t_pt_g, ours_g = _timed(lambda: pitools_sweep(gpanel, GRID, fill="next_open", direction="long_short",
                                                  integer_shares=True), args.repeats)
    t_bt, (heat, bt) = _timed(lambda: backtesting_sweep(goog, GRID), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_g = bt.run(fast=10, slow=30)._trades
    mine_g = pt.backtest("sma_cross", gpanel, {"fast": 10, "slow": 30}, fees=FEES, fill="next_open",
                         direction="long_short", integer_shares=True).trades
    mine_g = mine_g[~mine_g.open_at_end]
    print(f"\nGOOG {gpanel.n_bars} bars x {len(GRID)} sets = {gwork / 1e6:.2f} M symbol-bar-sets")
    print(f"  pitools        {t_pt_g:8.3f} s  {gwork / t_pt_g / 1e6:9.3f} M/s")
    print(f"  backtesting.py {t_bt:8.3f} s  {gwork / t_bt / 1e6:9.3f} M/s")
    print(f"  pitools / backtesting.py, same data: {t_bt / t_pt_g:.0f}x")
    print(f"  pitools at scale (100 x 3 y, next open, long/short, whole shares) / backtesting.py per symbol-bar:")
    t_pt_s, _ = _timed(lambda: pitools_sweep(panel, GRID, fill="next_open", direction="long_short",
                                             integer_shares=True), args.repeats)
    print(f"    {work / t_pt_s / 1e6:.2f} M/s vs {gwork / t_bt / 1e6:.3f} M/s = "
          f"{(work / t_pt_s) / (gwork / t_bt):.0f}x   (goal >= 1000x)")
    # backtesting.py first calls next() one bar after its indicators are defined, pitools acts on
    # that bar: the first entry differs by a day, every later reversal is on the same bar
    same = np.array_equal(mine_g.exit_time.iloc[1:].to_numpy(), theirs_g.ExitTime.iloc[1:].to_numpy())
    print(f"  same result check (fast=10, slow=30): {len(mine_g)} vs {len(theirs_g)} closed trades, "
          f"exit dates after the first {'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()

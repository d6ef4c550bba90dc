"""The simulation kernel agrees with the peers on real GOOG daily bars (shipped by backtesting.py).

* backtesting.py: an SMA cross that closes and reverses on each cross, filled at the next
  open in whole shares — same trade list, same final equity (its default run, where a trade
  still open at the end is marked to the last close and not counted as closed).
* vectorbt: ``Portfolio.from_signals`` long-only at the close with fees — same equity curve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pitools.kernels.simulation import T_ENTRY_BAR, T_ENTRY_PRICE, T_EXIT_BAR, T_EXIT_PRICE, T_OPEN_AT_END, T_PNL, \
    T_SIZE, simulate_nb

backtesting = pytest.importorskip("backtesting")
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import GOOG  # noqa: E402

NO_TRAIL = np.empty(0)


def ohlc():
    return tuple(GOOG[c].to_numpy(float) for c in ("Open", "High", "Low", "Close"))


def cross_targets(fast: int, slow: int) -> np.ndarray:
    """+1 / -1 on the bars where the fast SMA crosses above / below the slow one, else NaN."""
    close = GOOG.Close
    diff = (close.rolling(fast).mean() - close.rolling(slow).mean()).to_numpy()
    target = np.full(len(diff), np.nan)
    up = (diff[:-1] < 0) & (diff[1:] > 0)
    down = (diff[:-1] > 0) & (diff[1:] < 0)
    target[1:][up] = 1.0
    target[1:][down] = -1.0
    return target


class SmaCross(Strategy):
    fast, slow = 10, 20

    def init(self):
        sma = lambda x, n: pd.Series(x).rolling(n).mean()  # noqa: E731
        self.sma1 = self.I(sma, self.data.Close, self.fast)
        self.sma2 = self.I(sma, self.data.Close, self.slow)

    def next(self):
        if crossover(self.sma1, self.sma2):
            self.position.close()
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.position.close()
            self.sell()


@pytest.mark.parametrize("fast,slow,commission", [(10, 20, 0.0), (10, 20, 0.002), (5, 30, 0.001)])
def test_sma_cross_reversals_match_backtesting_py(fast, slow, commission):
    stats = Backtest(GOOG, SmaCross, cash=10_000, commission=commission).run(fast=fast, slow=slow)
    theirs = stats._trades
    eq, _, trades = simulate_nb(*ohlc(), cross_targets(fast, slow), False, False, commission, 0.0, 10_000.0, True,
                                np.nan, np.nan, NO_TRAIL)
    closed = trades[trades[:, T_OPEN_AT_END] == 0]
    assert len(closed) == stats["# Trades"] > 20
    assert eq[-1] == pytest.approx(stats["Equity Final [$]"], rel=1e-12)
    np.testing.assert_array_equal(closed[:, T_SIZE], theirs["Size"].abs().to_numpy())
    np.testing.assert_array_equal(closed[:, T_ENTRY_BAR], theirs["EntryBar"].to_numpy())
    np.testing.assert_array_equal(closed[:, T_EXIT_BAR], theirs["ExitBar"].to_numpy())
    np.testing.assert_allclose(closed[:, T_ENTRY_PRICE], theirs["EntryPrice"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(closed[:, T_EXIT_PRICE], theirs["ExitPrice"].to_numpy(), rtol=1e-12)
    if commission == 0.0:
        np.testing.assert_allclose(closed[:, T_PNL], theirs["PnL"].to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("fast,slow,fees", [(10, 30, 0.001), (20, 50, 0.0025), (5, 15, 0.0)])
def test_long_only_close_fills_match_vectorbt(fast, slow, fees):
    vbt = pytest.importorskip("vectorbt")
    close = GOOG.Close
    up = close.rolling(fast).mean() > close.rolling(slow).mean()
    entries = up & ~up.shift(fill_value=False)
    exits = ~up & up.shift(fill_value=False)
    pf = vbt.Portfolio.from_signals(close, entries, exits, fees=fees, init_cash=10_000)
    target = np.where(entries, 1.0, np.where(exits, 0.0, np.nan))
    eq, _, trades = simulate_nb(*ohlc(), target, True, True, fees, 0.0, 10_000.0, False, np.nan, np.nan, NO_TRAIL)
    np.testing.assert_allclose(eq, pf.value().to_numpy(), rtol=1e-9)
    assert len(trades) == pf.trades.count()

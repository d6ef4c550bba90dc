"""Equal-weight portfolio equity: one definition (pitools.engine.backtest.equal_weight_equity),
checked against a pandas reference, and the same curve in res.portfolio, the tune figure and
the research chart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from pitools.engine.backtest import equal_weight_equity
from pitools.kernels.layout import SESSIONS_PER_YEAR
from pitools.kernels.metrics import METRIC_NAMES, equity_metrics_nb
from pitools.notebook import charts
from pitools.notebook.tune import TuneSession

OHLC = ("open", "high", "low", "close")


def _reference(returns, cash):
    """Obviously correct, bar by bar: nothing before the bar preceding the first return;
    `cash` there; then each bar multiplies the previous equity by 1 + its return (0 for a gap)."""
    r = pd.Series(returns, dtype=float)
    out = pd.Series(np.nan, index=r.index)
    defined = r[r.notna()]
    if defined.empty:
        return out.to_numpy()
    first = defined.index[0]
    prev = cash
    if first > 0:
        out.iloc[first - 1] = cash
    for i in range(first, len(r)):
        ret = 0.0 if pd.isna(r.iloc[i]) else r.iloc[i]
        prev = prev * (1.0 + ret)
        out.iloc[i] = prev
    return out.to_numpy()


def _panel_returns(seed):
    """Mean return per bar over the symbols that have started, from a small price panel with
    late listings and NaN gaps (what the backtest's portfolio_returns mean)."""
    rng = np.random.default_rng(seed)
    n, k = 40, 4
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.02, (n, k)), axis=0)))
    close.iloc[: rng.integers(1, 10), 0] = np.nan        # lists late
    close.iloc[: rng.integers(5, 20), 1] = np.nan        # lists later
    close.iloc[rng.integers(20, 30), 2] = np.nan         # a halt
    close.iloc[:3] = np.nan                              # nobody before bar 3
    rets = close.ffill().pct_change(fill_method=None)
    started = close.notna().cummax()
    rets = rets.where(started, np.nan).fillna(0.0).where(started)
    return rets.mean(axis=1).to_numpy()                  # NaN where no symbol has started


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cash", [1.0, 10_000.0])
def test_equal_weight_equity_matches_a_pandas_reference(seed, cash):
    r = _panel_returns(seed)
    assert np.isnan(r[:3]).all() and np.isfinite(r[3:]).all()
    got = equal_weight_equity(r, cash)
    np.testing.assert_allclose(got, _reference(r, cash), rtol=1e-12, equal_nan=True)
    assert np.isnan(got[:2]).all() and got[2] == cash


@pytest.mark.parametrize("returns", [
    [np.nan, np.nan], [], [0.1, np.nan, -0.2], [np.nan, 0.1, np.nan, -0.5], [np.nan, np.nan, 0.0, 0.3, np.nan],
])
def test_equal_weight_equity_edges(returns):
    np.testing.assert_allclose(equal_weight_equity(returns, 3.0), _reference(returns, 3.0), rtol=1e-12,
                               equal_nan=True)


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    path = tmp_path_factory.mktemp("ew") / "store"
    pt.make_demo_store(path, n_symbols=5, years=1, seed=3, end="2026-11-20")
    return pt.load_panel(path, fields=OHLC)


def test_chart_tune_and_portfolio_share_one_equity(panel):
    res = pt.backtest("sma_cross", panel, {"fast": 5, "slow": 20}, cash=10_000.0)
    eq = res.portfolio_equity
    np.testing.assert_allclose(eq, _reference(res.portfolio_returns, 10_000.0), rtol=1e-12, equal_nan=True)
    # res.portfolio's metrics are those of this curve
    m = pd.Series(equity_metrics_nb(eq, (np.isfinite(res.portfolio_returns)).astype(np.uint8),
                                    SESSIONS_PER_YEAR), index=METRIC_NAMES)
    pd.testing.assert_series_equal(res.portfolio[list(METRIC_NAMES)], m, check_names=False)
    assert res.portfolio["final_equity"] == eq[np.isfinite(eq)][-1]
    # the research chart (start = 1.0) starts on the same bar
    chart = charts.portfolio_equity(res.portfolio_returns, panel.dates)
    np.testing.assert_allclose(chart.to_numpy() * 10_000.0, eq, rtol=1e-12, equal_nan=True)
    assert chart.index.equals(panel.dates)
    # the tune figure's equity trace
    session = TuneSession(panel, backtest_kwargs={"cash": 10_000.0})
    data = session.update({"fast": 5, "slow": 20}).figure_data
    np.testing.assert_allclose(data.equity, eq, rtol=1e-12, equal_nan=True)

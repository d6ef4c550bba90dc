"""`pt.backtest`: bad input named before any kernel runs, results consistent, no lookahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from pitools.data.panel import Panel
from pitools.errors import DataError

EIGHT = pt.strategies.names()


@pytest.fixture(scope="module")
def panel(demo_store):
    return pt.load_panel(demo_store)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"strategy": "sma_crossover"}, "unknown strategy 'sma_crossover'.*'sma_cross'"),
    ({"params": {"fast": 40, "slow": 20}}, "`fast` must be < `slow`"),
    ({"params": {"slow": 1000}}, "`slow` = 1000 is out of range"),
    ({"fees": -0.001}, "`fees` = -0.001"),
    ({"slippage": 2}, "`slippage` = 2"),
    ({"fill": "next_close"}, "`fill` = 'next_close'.*'next_open'"),
    ({"direction": "short_only"}, "`direction` = 'short_only'"),
    ({"cash": 0}, "`cash` = 0"),
    ({"stop_loss": 1.5}, "`stop_loss` = 1.5"),
    ({"regime_filter": ([0, 1], {0})}, "one code per bar"),
])
def test_bad_input_is_named(panel, kwargs, fragment):
    args = {"strategy": "sma_cross", "params": None, **kwargs}
    with pytest.raises(DataError, match=fragment):
        pt.backtest(args.pop("strategy"), panel, args.pop("params"), **args)


def test_a_panel_without_the_needed_fields(demo_store):
    closes = pt.load_panel(demo_store, fields=("close",))
    with pytest.raises(DataError, match="lacks open, high, low"):
        pt.backtest("sma_cross", closes)


@pytest.mark.parametrize("name", EIGHT)
def test_every_strategy_runs_and_reports_every_stat(panel, name):
    res = pt.backtest(name, panel, fees=0.0005, direction="long_short")
    assert list(res.stats.columns) == ["total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar",
                                       "n_trades", "win_rate", "exposure", "profit_factor", "final_equity"]
    assert res.stats.index.tolist() == panel.symbols
    assert (res.stats["final_equity"] >= 0).all()
    assert res.portfolio["n_trades"] == res.stats["n_trades"].sum() > 0
    assert np.isfinite(res.portfolio[["total_return", "sharpe", "max_drawdown"]].astype(float)).all()


@pytest.mark.parametrize("name", ["sma_cross", "atr_breakout", "xs_momentum"])
def test_skipping_per_symbol_stats_changes_nothing_but_the_work(panel, name):
    full = pt.backtest(name, panel, fees=0.001, direction="long_short", stop_loss=0.1)
    lean = pt.backtest(name, panel, fees=0.001, direction="long_short", stop_loss=0.1, per_symbol_stats=False)
    pd.testing.assert_series_equal(lean.portfolio, full.portfolio)
    pd.testing.assert_frame_equal(lean.stats, full.stats)  # built by a second pass on first access


def test_portfolio_is_the_equal_weight_mean_of_symbol_returns(panel):
    res = pt.backtest("macd", panel, fees=0.001)
    assert "_curves" not in res.__dict__  # equity and trades are not built by a plain run
    eq = res.equity
    rets = eq.pct_change(fill_method=None)
    mean = rets.mean(axis=1, skipna=True).fillna(0.0)
    ref = 10_000.0 * (1 + mean).cumprod()
    assert res.portfolio["final_equity"] == pytest.approx(ref.iloc[-1], rel=1e-9)
    # per-symbol final equity and trades agree with the lazily built curves and trade list
    assert np.allclose(res.stats["final_equity"], eq.ffill().iloc[-1])
    trades = res.trades
    closed = trades[~trades.open_at_end].groupby("symbol").size().reindex(panel.symbols, fill_value=0)
    assert (closed.to_numpy() == res.stats["n_trades"].to_numpy()).all()


def test_flat_everywhere_keeps_the_cash(panel):
    codes = np.zeros(panel.n_bars, dtype=int)
    res = pt.backtest("ts_momentum", panel, direction="long_short", cash=5_000.0, regime_filter=(codes, {1}))
    assert (res.stats["n_trades"] == 0).all() and np.allclose(res.stats["final_equity"], 5_000.0)
    gated = pt.backtest("ts_momentum", panel, regime_filter=(codes, {0}))
    plain = pt.backtest("ts_momentum", panel)
    pd.testing.assert_frame_equal(gated.stats, plain.stats)


def _truncate(panel: Panel, t: int) -> Panel:
    return Panel(panel.dates[:t], panel.symbols, {f: panel.field(f)[:t] for f in panel.fields})


@pytest.mark.parametrize("name", EIGHT)
def test_no_lookahead_truncating_after_t_changes_nothing_before(panel, name):
    full = pt.backtest(name, panel, {"lookback": 60, "top_k": 3} if name == "xs_momentum" else None,
                       direction="long_short").equity
    t = int(panel.n_bars * 0.6)
    part = pt.backtest(name, _truncate(panel, t), {"lookback": 60, "top_k": 3} if name == "xs_momentum" else None,
                       direction="long_short").equity
    np.testing.assert_array_equal(full.to_numpy()[:t], part.to_numpy())


def test_the_loop_for_any_kernel_equals_the_builtin_switch(panel):
    """run_symbols_nb (a custom strategy's kernel) and run_builtin_nb share one loop."""
    from pitools.kernels import driver, signals

    args = (panel.open, panel.high, panel.low, panel.close, np.array([10.0, 30.0]), np.empty(0, np.bool_), False,
            False, 0.001, 0.0, 1e4, False, np.nan, np.nan, True)
    builtin = driver.run_builtin_nb(driver.BUILTIN_KERNELS.index("sma_cross_nb"), *args)
    generic = driver.run_symbols_nb(signals.sma_cross_nb, *args)
    for a, b in zip(builtin, generic):
        np.testing.assert_array_equal(a, b)
    assert np.nansum(builtin[0][:, 6]) > 0  # trades happened

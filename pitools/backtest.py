"""``pt.backtest``: validate, run the strategy's kernels symbol by symbol, wrap the result.

One numba loop (:mod:`pitools.kernels.driver`) keeps one symbol's arrays at a time (bars,
never bars × symbols × candidates);
per-bar portfolio returns are accumulated as a sum and a count over the symbols that
trade that bar, which is the equal-weight, daily-rebalanced portfolio the optimizer scores.
Equity curves and trade lists are rebuilt only when ``res.equity`` / ``res.trades`` are
first read (by a plain Python loop over the same kernels, which the tests hold against the
numba loop), so an optimizer that reads ``res.portfolio`` never pays for them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import strategies as _strategies
from .data.panel import Panel
from .errors import DataError, did_you_mean

__all__ = ["backtest", "BacktestResult", "FILLS", "DIRECTIONS"]

FILLS = ("next_open", "close")
DIRECTIONS = ("long_only", "long_short")
STAT_COLUMNS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "n_trades", "win_rate",
                "exposure", "profit_factor", "final_equity")


def _choice(name: str, value, allowed) -> str:
    if value not in allowed:
        raise DataError(f"`{name}` = {value!r} is not allowed.{did_you_mean(str(value), allowed)} "
                        f"Allowed: {', '.join(map(repr, allowed))}")
    return value


def _fraction(name: str, value, allow_none: bool = False, high: float = 1.0) -> float:
    if value is None and allow_none:
        return np.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < high):
        none = " or None" if allow_none else ""
        raise DataError(f"`{name}` = {value!r} must be a fraction from 0 to {high:g} (exclusive){none}")
    return float(value)


@dataclass(frozen=True)
class _Run:
    strategy: _strategies.Strategy
    params: dict
    panel: Panel
    fill_close: bool
    long_only: bool
    fees: float
    slippage: float
    cash: float
    integer_shares: bool
    stop_loss: float
    take_profit: float
    gate: np.ndarray | None  # per-bar bool: may hold positions


def _targets(run: _Run):
    """Yield (j, target, trail) per symbol."""
    p = np.array(list(run.params.values()), dtype=np.float64)
    kernel = run.strategy.signal_kernel()
    panel = run.panel
    if run.strategy.portfolio_level:
        all_targets = kernel(np.asfortranarray(panel.close, dtype=np.float64), p)
        for j in range(panel.n_symbols):
            yield j, np.ascontiguousarray(all_targets[:, j]), np.empty(0)
        return
    o, h, lo, c = panel.open, panel.high, panel.low, panel.close
    for j in range(panel.n_symbols):
        target, trail = kernel(o[:, j], h[:, j], lo[:, j], c[:, j], p)
        yield j, target, trail


def _simulate(run: _Run, keep_curves: bool):
    from .kernels.metrics import equity_metrics_nb, trade_metrics_nb
    from .kernels.simulation import T_OPEN_AT_END, T_PNL, simulate_nb

    panel = run.panel
    if not keep_curves and not run.strategy.portfolio_level:
        from .kernels.driver import run_symbols_nb

        gate = run.gate if run.gate is not None else np.empty(0, dtype=np.bool_)
        stats, ret_sum, ret_count = run_symbols_nb(
            run.strategy.signal_kernel(), panel.open, panel.high, panel.low, panel.close,
            np.array(list(run.params.values()), dtype=np.float64), gate, run.fill_close, run.long_only, run.fees,
            run.slippage, run.cash, run.integer_shares, run.stop_loss, run.take_profit)
        return stats, ret_sum, ret_count, None, []
    n_bars = panel.n_bars
    ret_sum = np.zeros(n_bars)
    ret_count = np.zeros(n_bars)
    stats = np.full((panel.n_symbols, len(STAT_COLUMNS)), np.nan)
    curves = np.full((n_bars, panel.n_symbols), np.nan) if keep_curves else None
    trade_lists = []
    o, h, lo, c = panel.open, panel.high, panel.low, panel.close
    for j, target, trail in _targets(run):
        if run.gate is not None:
            target = np.where(run.gate | np.isnan(target), target, 0.0)
        eq, exposure, trades = simulate_nb(o[:, j], h[:, j], lo[:, j], c[:, j], target, run.fill_close,
                                           run.long_only, run.fees, run.slippage, run.cash, run.integer_shares,
                                           run.stop_loss, run.take_profit, trail)
        m = equity_metrics_nb(eq, exposure, 252.0)
        closed = trades[trades[:, T_OPEN_AT_END] == 0.0]
        tm = trade_metrics_nb(closed[:, T_PNL])
        finite = np.flatnonzero(np.isfinite(eq))
        stats[j] = (m[0], m[1], m[2], m[3], m[4], m[5], tm[0], tm[1], m[6], tm[2],
                    eq[finite[-1]] if finite.size else np.nan)
        if finite.size > 1:  # the symbol's daily returns, counted where it traded
            seg = eq[finite[0]:finite[-1] + 1]
            prev = seg[:-1]
            r = np.divide(seg[1:], prev, out=np.ones_like(prev), where=prev > 0) - 1.0  # a wiped-out account: 0
            ret_sum[finite[0] + 1:finite[-1] + 1] += r
            ret_count[finite[0] + 1:finite[-1] + 1] += 1
        if keep_curves:
            curves[:, j] = eq
            trade_lists.append((j, trades))
    return stats, ret_sum, ret_count, curves, trade_lists


class BacktestResult:
    """What :func:`backtest` returns: ``stats``, ``portfolio``, and lazily ``equity`` / ``trades``."""

    def __init__(self, run: _Run, stats: np.ndarray, ret_sum: np.ndarray, ret_count: np.ndarray):
        self._run = run
        self.params = dict(run.params)
        self.strategy = run.strategy.name
        self.stats = pd.DataFrame(stats, index=pd.Index(run.panel.symbols, name="symbol"), columns=STAT_COLUMNS)
        self.stats["n_trades"] = self.stats["n_trades"].astype("int64")
        self._ret_sum, self._ret_count = ret_sum, ret_count

    @functools.cached_property
    def portfolio(self) -> pd.Series:
        """Metrics of the equal-weight portfolio of the symbols (daily rebalanced)."""
        from .kernels.metrics import METRIC_NAMES, equity_metrics_nb

        active = self._ret_count > 0
        r = np.where(active, self._ret_sum / np.maximum(self._ret_count, 1), 0.0)
        started = np.flatnonzero(active)
        equity = np.full(len(r), np.nan)
        if started.size:
            first = max(started[0] - 1, 0)
            equity[first:] = self._run.cash * np.cumprod(1.0 + r[first:])
        m = equity_metrics_nb(equity, active.astype(np.uint8), 252.0)
        out = pd.Series(dict(zip(METRIC_NAMES, m)))
        out["n_trades"] = int(self.stats["n_trades"].sum())
        out["final_equity"] = equity[np.isfinite(equity)][-1] if np.isfinite(equity).any() else np.nan
        return out

    @functools.cached_property
    def _curves(self):
        _, _, _, curves, trade_lists = _simulate(self._run, keep_curves=True)
        return curves, trade_lists

    @property
    def equity(self) -> pd.DataFrame:
        """Equity per symbol (dates × symbols), built on first access."""
        return pd.DataFrame(self._curves[0], index=self._run.panel.dates, columns=self._run.panel.symbols)

    @property
    def trades(self) -> pd.DataFrame:
        """One row per trade: symbol, entry_time, exit_time, side, size, entry_price, exit_price, pnl, return."""
        from .kernels.simulation import (T_ENTRY_BAR, T_ENTRY_PRICE, T_EXIT_BAR, T_EXIT_PRICE, T_OPEN_AT_END,
                                         T_PNL, T_RETURN, T_SIDE, T_SIZE)

        dates, symbols = self._run.panel.dates, self._run.panel.symbols
        rows = []
        for j, t in self._curves[1]:
            for k in range(t.shape[0]):
                rows.append((symbols[j], dates[int(t[k, T_ENTRY_BAR])], dates[int(t[k, T_EXIT_BAR])],
                             "long" if t[k, T_SIDE] > 0 else "short", t[k, T_SIZE], t[k, T_ENTRY_PRICE],
                             t[k, T_EXIT_PRICE], t[k, T_PNL], t[k, T_RETURN], bool(t[k, T_OPEN_AT_END])))
        return pd.DataFrame(rows, columns=["symbol", "entry_time", "exit_time", "side", "size", "entry_price",
                                           "exit_price", "pnl", "return", "open_at_end"])

    def __repr__(self) -> str:
        p = self.portfolio
        return (f"<BacktestResult {self.strategy} {self.params} on {len(self.stats)} symbols: "
                f"portfolio sharpe {p['sharpe']:.2f}, total return {p['total_return']:+.1%}, "
                f"{p['n_trades']} trades>")


def backtest(strategy: str, panel: Panel, params: Mapping | None = None, *, fill: str = "next_open",
             direction: str = "long_only", fees: float = 0.0, slippage: float = 0.0, cash: float = 10_000.0,
             integer_shares: bool = False, stop_loss: float | None = None, take_profit: float | None = None,
             regime_filter: tuple[np.ndarray, Iterable[int]] | None = None) -> BacktestResult:
    """Backtest a registered strategy on every symbol of `panel`.

    Parameters
    ----------
    strategy : str
        A name of :func:`pitools.strategies.names`.
    panel : Panel
        From :func:`pitools.load_panel` with open, high, low and close.
    params : dict, optional
        The strategy's parameters; missing ones take the defaults of its space.
    fill : {"next_open", "close"}
        ``next_open`` fills a bar's signal at the next bar's open (matches backtesting.py);
        ``close`` fills at the signal bar's close (matches vectorbt's ``from_signals``).
    direction : {"long_only", "long_short"}
    fees, slippage : float
        Fractions of traded value / of price, each side.
    cash : float
        Starting equity of each symbol's account.
    integer_shares : bool
        Whole shares only (backtesting.py's sizing).
    stop_loss, take_profit : float, optional
        Fractions of the entry price.
    regime_filter : (codes, allowed), optional
        A per-bar regime code array (length ``panel.n_bars``) and the codes in which
        positions may be held; elsewhere the strategy is flat.

    Example
    -------
    >>> res = pt.backtest("sma_cross", panel, {"fast": 10, "slow": 30}, fees=0.001)   # doctest: +SKIP
    >>> res.portfolio["sharpe"], res.stats.head()                                    # doctest: +SKIP
    """
    spec = _strategies.get(strategy)
    checked = spec.validate(params)
    if not isinstance(panel, Panel):
        raise DataError(f"`panel` must be a pitools Panel (from pt.load_panel), got {type(panel).__name__}")
    missing = [f for f in spec.fields if f not in panel]
    if missing:
        raise DataError(f"{strategy} needs the panel fields {', '.join(spec.fields)}; this panel lacks "
                        f"{', '.join(missing)}. Load it with `pt.load_panel(..., fields={spec.fields!r})`.")
    _choice("fill", fill, FILLS)
    _choice("direction", direction, DIRECTIONS)
    if isinstance(cash, bool) or not isinstance(cash, (int, float)) or not cash > 0:
        raise DataError(f"`cash` = {cash!r} must be a positive amount")
    gate = None
    if regime_filter is not None:
        try:
            codes, allowed = regime_filter
        except (TypeError, ValueError):
            raise DataError("`regime_filter` must be (codes, allowed): a per-bar regime code array and the "
                            "codes in which positions may be held") from None
        codes = np.asarray(codes)
        if codes.shape != (panel.n_bars,):
            raise DataError(f"`regime_filter` codes have shape {codes.shape}, expected ({panel.n_bars},) "
                            "— one code per bar of the panel")
        gate = np.isin(codes, list(allowed))
    run = _Run(spec, checked, panel, fill == "close", direction == "long_only", _fraction("fees", fees),
               _fraction("slippage", slippage), float(cash), bool(integer_shares),
               _fraction("stop_loss", stop_loss, True), _fraction("take_profit", take_profit, True, high=100.0),
               gate)
    stats, ret_sum, ret_count, _, _ = _simulate(run, keep_curves=False)
    return BacktestResult(run, stats, ret_sum, ret_count)

"""``pt.backtest``: validate, run the strategy's kernels symbol by symbol, wrap the result.

One numba loop (:mod:`pitools.kernels.driver`) keeps one symbol's arrays at a time (bars,
never bars × symbols × candidates); per-bar portfolio returns are accumulated as a sum and
a count over the symbols that trade that bar, which is the equal-weight, daily-rebalanced
portfolio the optimizer scores. Equity curves and trade lists are rebuilt only when
``res.equity`` / ``res.trades`` are first read (a Python loop over the same per-symbol
kernel), so an optimizer that reads ``res.portfolio`` never pays for them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pitools.engine import strategies as _strategies
from pitools.data.panel import Panel
from pitools.errors import DataError, did_you_mean
from pitools.kernels.layout import (SESSIONS_PER_YEAR, STAT_FIELDS, T_ENTRY_BAR, T_ENTRY_PRICE, T_EXIT_BAR, T_EXIT_PRICE,
                             T_OPEN_AT_END, T_PNL, T_RETURN, T_SIDE, T_SIZE)

__all__ = ["backtest", "BacktestResult", "equal_weight_equity", "FILLS", "DIRECTIONS"]

FILLS = ("next_open", "close")
DIRECTIONS = ("long_only", "long_short")
STAT_COLUMNS = STAT_FIELDS


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


    def settings(self) -> tuple:
        """The arguments the driver kernels take after the price arrays."""
        gate = self.gate if self.gate is not None else np.empty(0, dtype=np.bool_)
        return (gate, self.fill_close, self.long_only, self.fees, self.slippage, self.cash, self.integer_shares,
                self.stop_loss, self.take_profit)

    @property
    def param_array(self) -> np.ndarray:
        return np.array(list(self.params.values()), dtype=np.float64)

    def universe_targets(self) -> np.ndarray:
        """Targets of a portfolio-level strategy for every symbol (bars × symbols)."""
        return universe_targets(self.strategy, self.panel, self.param_array)


def universe_targets(strategy, panel: Panel, values: np.ndarray) -> np.ndarray:
    """Targets (bars × symbols) of the portfolio-level `strategy` with parameter `values`."""
    return strategy.signal_kernel()(np.asfortranarray(panel.close, dtype=np.float64), values)


def symbol_signals(strategy, panel: Panel, values: np.ndarray):
    """Per symbol ``(j, (open, high, low, close), target, trail)``: the bars as the kernels take
    them and the signal kernel's output (a portfolio-level strategy: its column of the universe's
    targets, no trail)."""
    targets = universe_targets(strategy, panel, values) if strategy.portfolio_level else None
    kernel = None if strategy.portfolio_level else strategy.signal_kernel()
    for j in range(panel.n_symbols):
        bars = tuple(np.ascontiguousarray(a[:, j]) for a in (panel.open, panel.high, panel.low, panel.close))
        if targets is not None:
            yield j, bars, np.ascontiguousarray(targets[:, j]), np.empty(0)
        else:
            yield (j, bars, *kernel(*bars, values))


def _stats(run: _Run, per_symbol: bool = True):
    """(stats, ret_sum, ret_count) from one numba loop over the symbols.

    ``per_symbol=False`` skips the running metrics of each symbol where the kernel allows
    it; `stats` is then a [1, 1] array holding the total number of closed trades.
    """
    from pitools.kernels.driver import run_builtin_nb, run_symbols_nb, run_targets_nb  # numba: on first use

    p = run.panel
    if run.strategy.portfolio_level:
        return run_targets_nb(run.universe_targets(), p.open, p.high, p.low, p.close, *run.settings())
    if run.strategy.builtin_id is not None:
        return run_builtin_nb(run.strategy.builtin_id, p.open, p.high, p.low, p.close, run.param_array,
                              *run.settings(), per_symbol)
    return run_symbols_nb(run.strategy.kernel_nb(), p.open, p.high, p.low, p.close, run.param_array,
                          *run.settings(), per_symbol)


def _curves(run: _Run):
    """Equity (bars × symbols), each symbol's trades and next position, from the same kernels."""
    from pitools.kernels.simulation import simulate_curves_nb

    p = run.panel
    curves = np.full((p.n_bars, p.n_symbols), np.nan)
    next_positions = np.full(p.n_symbols, np.nan)
    trade_lists = []
    for j, (o, h, lo, c), target, trail in symbol_signals(run.strategy, p, run.param_array):
        curves[:, j], _, trades, next_positions[j] = simulate_curves_nb(o, h, lo, c, target, trail,
                                                                        *run.settings())
        trade_lists.append((j, trades))
    return curves, trade_lists, next_positions


class BacktestResult:
    """What :func:`backtest` returns: ``stats``, ``portfolio``, and lazily ``equity`` / ``trades``."""

    def __init__(self, run: _Run, stats: np.ndarray, ret_sum: np.ndarray, ret_count: np.ndarray):
        self._run = run
        self.params = dict(run.params)
        self.strategy = run.strategy.name
        # per-symbol stats, or None when the backtest ran without them (then built on first access)
        self._stats = stats if stats.shape[1] == len(STAT_COLUMNS) else None
        self._n_trades = int(np.nansum(stats[:, STAT_COLUMNS.index("n_trades")] if self._stats is not None
                                       else stats[0, 0]))
        self._ret_sum, self._ret_count = ret_sum, ret_count

    @functools.cached_property
    def stats(self) -> pd.DataFrame:
        """One row per symbol: the ``STAT_COLUMNS`` (built on first access: an optimizer
        reading only ``portfolio`` does not pay for the DataFrame)."""
        if self._stats is None:
            self._stats = _stats(self._run)[0]
        columns = {name: self._stats[:, i] for i, name in enumerate(STAT_COLUMNS)}
        columns["n_trades"] = columns["n_trades"].astype(np.int64)
        return pd.DataFrame(columns, index=self._run.panel.symbol_index, copy=False)

    @property
    def n_trades(self) -> int:
        """Closed trades of all symbols."""
        return self._n_trades

    @property
    def portfolio_returns(self) -> np.ndarray:
        """Daily returns of the equal-weight portfolio (float64, one per bar): the mean
        return of the symbols that have started by that bar, NaN before any has."""
        active = self._ret_count > 0
        return np.where(active, self._ret_sum / np.maximum(self._ret_count, 1), np.nan)

    @functools.cached_property
    def portfolio_equity(self) -> np.ndarray:
        """Equity of the equal-weight portfolio (float64, one per bar), starting at `cash`:
        :func:`equal_weight_equity` of :attr:`portfolio_returns`."""
        return equal_weight_equity(self.portfolio_returns, self._run.cash)

    @functools.cached_property
    def portfolio(self) -> pd.Series:
        """Metrics of the equal-weight portfolio of the symbols (daily rebalanced)."""
        from pitools.kernels.metrics import METRIC_NAMES, equity_metrics_nb

        active = self._ret_count > 0
        equity = self.portfolio_equity
        m = equity_metrics_nb(equity, active.astype(np.uint8), SESSIONS_PER_YEAR)
        final = equity[np.isfinite(equity)][-1] if active.any() else np.nan
        # one Series from complete values: growing one by one costs pandas ~0.4 ms a key
        return pd.Series(np.append(m, (self._n_trades, final)), index=METRIC_NAMES + ("n_trades", "final_equity"))

    @functools.cached_property
    def _curves(self):
        return _curves(self._run)

    @property
    def equity(self) -> pd.DataFrame:
        """Equity per symbol (dates × symbols), built on first access."""
        return pd.DataFrame(self._curves[0], index=self._run.panel.dates, columns=self._run.panel.symbols)

    @property
    def trades(self) -> pd.DataFrame:
        """One row per trade: symbol, entry_time, exit_time, side, size, entry_price, exit_price, pnl, return."""
        dates, symbols = self._run.panel.dates, self._run.panel.symbols
        rows = []
        for j, t in self._curves[1]:
            for k in range(t.shape[0]):
                rows.append((symbols[j], dates[int(t[k, T_ENTRY_BAR])], dates[int(t[k, T_EXIT_BAR])],
                             "long" if t[k, T_SIDE] > 0 else "short", t[k, T_SIZE], t[k, T_ENTRY_PRICE],
                             t[k, T_EXIT_PRICE], t[k, T_PNL], t[k, T_RETURN], bool(t[k, T_OPEN_AT_END])))
        return pd.DataFrame(rows, columns=["symbol", "entry_time", "exit_time", "side", "size", "entry_price",
                                           "exit_price", "pnl", "return", "open_at_end"])

    @property
    def next_positions(self) -> pd.Series:
        """Per symbol, the position held once the last bar's order fills: +1 long, -1 short,
        0 flat (NaN for a symbol without bars) — what to trade at the next session. Built
        with the lazy equity and trades."""
        return pd.Series(self._curves[2], index=self._run.panel.symbol_index, name="next_position")

    def __repr__(self) -> str:
        p = self.portfolio
        return (f"<BacktestResult {self.strategy} {self.params} on {len(self.stats)} symbols: "
                f"portfolio sharpe {p['sharpe']:.2f}, total return {p['total_return']:+.1%}, "
                f"{p['n_trades']} trades>")


def equal_weight_equity(returns, cash: float = 1.0) -> np.ndarray:
    """Compound the equal-weight portfolio's daily returns into equity: the one definition
    (``res.portfolio``, the tune figure and :func:`pitools.notebook.charts.portfolio_equity`).

    Parameters
    ----------
    returns : array-like of float
        Daily returns, one per bar (``res.portfolio_returns``): NaN where no symbol has
        started; a later NaN counts as a return of 0.
    cash : float
        Equity at the start.

    Returns
    -------
    numpy.ndarray
        NaN before the bar preceding the first defined return; `cash` at that bar (the
        equity the first return applies to); then ``cash * cumprod(1 + r)``. When the first
        bar already has a return, the curve starts at ``cash * (1 + r[0])``. All NaN when no
        return is defined.

    Example
    -------
    >>> equal_weight_equity([np.nan, np.nan, 0.1, np.nan, -0.5], 100.0).round(6).tolist()
    [nan, 100.0, 110.0, 110.0, 55.0]
    """
    r = np.asarray(returns, dtype=np.float64)
    active = np.isfinite(r)
    out = np.full(r.shape, np.nan)
    started = np.flatnonzero(active)
    if started.size:
        first = max(started[0] - 1, 0)
        out[first:] = cash * np.cumprod(1.0 + np.where(active, r, 0.0)[first:])
    return out


def backtest(strategy: str, panel: Panel, params: Mapping | None = None, *, fill: str = "next_open",
             direction: str = "long_only", fees: float = 0.0, slippage: float = 0.0, cash: float = 10_000.0,
             integer_shares: bool = False, stop_loss: float | None = None, take_profit: float | None = None,
             regime_filter: tuple[np.ndarray, Iterable[int]] | None = None,
             per_symbol_stats: bool = True) -> BacktestResult:
    """Backtest a registered strategy on every symbol of `panel`.

    Parameters
    ----------
    strategy : str
        A name of :func:`pitools.engine.strategies.names`.
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
    per_symbol_stats : bool
        False skips the running metrics of each symbol (about 40 % of the work): what an
        optimizer that scores ``res.portfolio`` wants. ``res.stats`` then costs a second
        pass on first access.

    Example
    -------
    >>> res = pt.backtest("sma_cross", panel, {"fast": 10, "slow": 30}, fees=0.001)
    >>> res.stats.shape, list(res.stats.columns[:3])        # one row per symbol
    ((8, 11), ['total_return', 'cagr', ...])
    >>> bool(0 <= res.portfolio["max_drawdown"] <= 1)      # the deepest fall, a fraction
    True
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
    return BacktestResult(run, *_stats(run, bool(per_symbol_stats)))

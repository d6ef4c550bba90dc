"""One numba loop over every symbol: signal → simulation → metrics, no Python per symbol.

``run_symbols_nb(kernel, …)`` takes a signal kernel of :mod:`pitools.kernels.signals` as its
first argument (numba compiles one specialisation per kernel); ``run_targets_nb`` takes
targets a portfolio-level strategy computed for the whole universe. Both go through
``symbol_nb`` (regime gate + simulation), which the lazy equity/trades path uses too. Per symbol it keeps only
that symbol's arrays; across symbols it accumulates the per-bar sum and count of returns
that make the equal-weight portfolio.
"""

from __future__ import annotations

import numba
import numpy as np

from .metrics import equity_metrics_nb, trade_metrics_nb
from .simulation import T_OPEN_AT_END, T_PNL, simulate_nb

__all__ = ["run_symbols_nb", "run_targets_nb", "symbol_nb", "N_STATS"]

_jit = numba.njit(cache=True, error_model="numpy")
N_STATS = 11  # the columns of pitools.backtest.STAT_COLUMNS


@_jit
def _row(eq, exposure, trades, out):
    m = equity_metrics_nb(eq, exposure, 252.0)
    n_closed = 0
    for k in range(trades.shape[0]):
        if trades[k, T_OPEN_AT_END] == 0.0:
            n_closed += 1
    pnl = np.empty(n_closed)
    q = 0
    for k in range(trades.shape[0]):
        if trades[k, T_OPEN_AT_END] == 0.0:
            pnl[q] = trades[k, T_PNL]
            q += 1
    tm = trade_metrics_nb(pnl)
    last = np.nan
    for t in range(eq.shape[0] - 1, -1, -1):
        if np.isfinite(eq[t]):
            last = eq[t]
            break
    out[0], out[1], out[2], out[3], out[4], out[5] = m[0], m[1], m[2], m[3], m[4], m[5]
    out[6], out[7], out[8], out[9], out[10] = tm[0], tm[1], m[6], tm[2], last


@_jit
def _add_returns(eq, ret_sum, ret_count):
    prev = np.nan
    for t in range(eq.shape[0]):
        e = eq[t]
        if not np.isfinite(e):
            continue
        if np.isfinite(prev):
            ret_sum[t] += e / prev - 1.0 if prev > 0.0 else 0.0  # a wiped-out account earns 0
            ret_count[t] += 1.0
        prev = e


@_jit
def symbol_nb(open_, high, low, close, target, trail, gate, fill_close, long_only, fees, slippage, cash,
              integer_shares, stop_loss, take_profit):
    """One symbol: flat where the regime `gate` forbids positions (empty gate: no filter), then simulate.

    Returns ``simulate_nb``'s (equity, exposure, trades).
    """
    if gate.shape[0] == close.shape[0]:
        target = target.copy()
        for t in range(target.shape[0]):
            if not gate[t] and np.isfinite(target[t]):
                target[t] = 0.0
    return simulate_nb(open_, high, low, close, target, fill_close, long_only, fees, slippage, cash,
                       integer_shares, stop_loss, take_profit, trail)


@_jit
def run_symbols_nb(kernel, open_, high, low, close, params, gate, fill_close, long_only, fees, slippage, cash,
                   integer_shares, stop_loss, take_profit):
    """Backtest every column with a per-symbol signal `kernel`.

    Returns (stats[n_symbols, N_STATS], ret_sum[n_bars], ret_count[n_bars]).
    """
    n_bars, n_syms = close.shape
    stats = np.full((n_syms, N_STATS), np.nan)
    ret_sum = np.zeros(n_bars)
    ret_count = np.zeros(n_bars)
    for j in range(n_syms):
        o = np.ascontiguousarray(open_[:, j])
        h = np.ascontiguousarray(high[:, j])
        lo = np.ascontiguousarray(low[:, j])
        c = np.ascontiguousarray(close[:, j])
        target, trail = kernel(o, h, lo, c, params)
        eq, exposure, trades = symbol_nb(o, h, lo, c, target, trail, gate, fill_close, long_only, fees, slippage,
                                         cash, integer_shares, stop_loss, take_profit)
        _row(eq, exposure, trades, stats[j])
        _add_returns(eq, ret_sum, ret_count)
    return stats, ret_sum, ret_count


@_jit
def run_targets_nb(targets, open_, high, low, close, gate, fill_close, long_only, fees, slippage, cash,
                   integer_shares, stop_loss, take_profit):
    """Like :func:`run_symbols_nb` for targets already computed for every symbol
    (portfolio-level strategies such as xs_momentum rank the universe first)."""
    n_bars, n_syms = close.shape
    stats = np.full((n_syms, N_STATS), np.nan)
    ret_sum = np.zeros(n_bars)
    ret_count = np.zeros(n_bars)
    no_trail = np.empty(0)
    for j in range(n_syms):
        eq, exposure, trades = symbol_nb(
            np.ascontiguousarray(open_[:, j]), np.ascontiguousarray(high[:, j]), np.ascontiguousarray(low[:, j]),
            np.ascontiguousarray(close[:, j]), np.ascontiguousarray(targets[:, j]), no_trail, gate, fill_close,
            long_only, fees, slippage, cash, integer_shares, stop_loss, take_profit)
        _row(eq, exposure, trades, stats[j])
        _add_returns(eq, ret_sum, ret_count)
    return stats, ret_sum, ret_count

"""One numba loop over every symbol: signal → simulation and metrics, no Python per symbol.

``run_symbols_nb(kernel, …)`` takes a signal kernel of :mod:`pitools.kernels.signals` as its
first argument (numba compiles one specialisation per kernel); ``run_targets_nb`` takes
targets a portfolio-level strategy computed for the whole universe. Both call
:func:`~pitools.kernels.simulation.simulate_into_nb` without per-bar outputs: the metrics
are accumulated as the bars go, and the per-bar sum and count of returns that make the
equal-weight portfolio are added in the same pass. ``symbol_nb`` runs the same simulation
for one symbol with its equity curve and trades (the lazy ``res.equity`` / ``res.trades``).
"""

from __future__ import annotations

import numba
import numpy as np

from .simulation import N_STATS, TRADE_FIELDS, simulate_into_nb

__all__ = ["run_symbols_nb", "run_targets_nb", "symbol_nb", "N_STATS"]

_jit = numba.njit(cache=True, error_model="numpy")


@_jit
def symbol_nb(open_, high, low, close, target, trail, gate, fill_close, long_only, fees, slippage, cash,
              integer_shares, stop_loss, take_profit):
    """One symbol with its curves: (equity, exposure, trades), flat where `gate` is False."""
    n = close.shape[0]
    equity = np.full(n, np.nan)
    exposure = np.zeros(n, np.uint8)
    trades = np.empty((n + 1, len(TRADE_FIELDS)))
    none = np.empty(0)
    k = simulate_into_nb(open_, high, low, close, target, trail, gate, fill_close, long_only, fees, slippage, cash,
                         integer_shares, stop_loss, take_profit, equity, exposure, trades, none, none, none)
    return equity, exposure, trades[:k].copy()


@_jit
def run_symbols_nb(kernel, open_, high, low, close, params, gate, fill_close, long_only, fees, slippage, cash,
                   integer_shares, stop_loss, take_profit):
    """Backtest every column with a per-symbol signal `kernel`.

    Returns (stats[n_symbols, N_STATS], ret_sum[n_bars], ret_count[n_bars]).
    """
    n_bars, n_syms = close.shape
    stats = np.full((n_syms, N_STATS), np.nan)
    ret_sum = np.zeros(n_bars)
    ret_count = np.zeros(n_bars + 1)
    none = np.empty(0)
    no_trades = np.empty((0, len(TRADE_FIELDS)))
    no_exposure = np.empty(0, np.uint8)
    target = np.empty(n_bars)  # the signal buffers, reused for every symbol
    trail = np.empty(n_bars)
    for j in range(n_syms):
        o, h, lo, c = open_[:, j], high[:, j], low[:, j], close[:, j]
        has_trail = kernel(o, h, lo, c, params, target, trail)
        simulate_into_nb(o, h, lo, c, target, trail if has_trail else none, gate, fill_close, long_only, fees, slippage, cash,
                         integer_shares, stop_loss, take_profit, none, no_exposure, no_trades, stats[j], ret_sum,
                         ret_count)
    return stats, ret_sum, np.cumsum(ret_count[:n_bars])


@_jit
def run_targets_nb(targets, open_, high, low, close, gate, fill_close, long_only, fees, slippage, cash,
                   integer_shares, stop_loss, take_profit):
    """Like :func:`run_symbols_nb` for targets already computed for every symbol
    (portfolio-level strategies such as xs_momentum rank the universe first)."""
    n_bars, n_syms = close.shape
    stats = np.full((n_syms, N_STATS), np.nan)
    ret_sum = np.zeros(n_bars)
    ret_count = np.zeros(n_bars + 1)
    none = np.empty(0)
    no_trades = np.empty((0, len(TRADE_FIELDS)))
    no_exposure = np.empty(0, np.uint8)
    for j in range(n_syms):
        simulate_into_nb(open_[:, j], high[:, j], low[:, j], close[:, j], targets[:, j], none, gate, fill_close,
                         long_only, fees, slippage, cash, integer_shares, stop_loss, take_profit, none, no_exposure,
                         no_trades, stats[j], ret_sum, ret_count)
    return stats, ret_sum, np.cumsum(ret_count[:n_bars])

"""One numba loop over every symbol: signal → simulation and metrics, no Python per symbol.

``run_symbols_nb(kernel, …)`` takes a signal kernel of :mod:`pitools.kernels.signals` as its
first argument (numba compiles one specialisation per kernel); ``run_targets_nb`` takes
targets a portfolio-level strategy computed for the whole universe. Both call
:func:`~pitools.kernels.simulation.simulate_into_nb` without per-bar outputs: the metrics
are accumulated as the bars go, and the per-bar sum and count of returns that make the
equal-weight portfolio are added in the same pass. The lazy ``res.equity`` / ``res.trades``
run the same simulation per symbol with its curves
(:func:`~pitools.kernels.simulation.simulate_curves_nb`).
"""

from __future__ import annotations

import numba
import numpy as np

from pitools.kernels.signals import (atr_breakout_nb, bollinger_reversion_nb, donchian_breakout_nb, macd_nb, rsi_reversion_nb,
                      sma_cross_nb, ts_momentum_nb)
from pitools.kernels.simulation import N_STATS, TRADE_FIELDS, simulate_into_nb

__all__ = ["run_symbols_nb", "run_builtin_nb", "builtin_signals_nb", "run_targets_nb", "N_STATS",
           "BUILTIN_KERNELS"]

_jit = numba.njit(cache=True, error_model="numpy")

# The built-in per-symbol signal kernels, by number. numba does not cache a function for a
# dispatcher passed as an argument (it recompiles in every new process, ~0.5 s a strategy),
# so the built-ins are reached through this switch, compiled and cached once for all.
BUILTIN_KERNELS = ("sma_cross_nb", "macd_nb", "rsi_reversion_nb", "bollinger_reversion_nb", "donchian_breakout_nb",
                   "atr_breakout_nb", "ts_momentum_nb")


@_jit
def _builtin_signal(kernel_id, open_, high, low, close, params, target, trail):
    if kernel_id == 0:
        return sma_cross_nb(open_, high, low, close, params, target, trail)
    if kernel_id == 1:
        return macd_nb(open_, high, low, close, params, target, trail)
    if kernel_id == 2:
        return rsi_reversion_nb(open_, high, low, close, params, target, trail)
    if kernel_id == 3:
        return bollinger_reversion_nb(open_, high, low, close, params, target, trail)
    if kernel_id == 4:
        return donchian_breakout_nb(open_, high, low, close, params, target, trail)
    if kernel_id == 5:
        return atr_breakout_nb(open_, high, low, close, params, target, trail)
    return ts_momentum_nb(open_, high, low, close, params, target, trail)


@_jit
def builtin_signals_nb(kernel_id, open_, high, low, close, params):
    """Built-in signal kernel number `kernel_id` with fresh buffers: ``(target, trail)``."""
    n = close.shape[0]
    target = np.empty(n)
    trail = np.empty(n)
    if _builtin_signal(kernel_id, open_, high, low, close, params, target, trail):
        return target, trail
    return target, trail[:0]


@_jit
def _call_kernel(kernel, open_, high, low, close, params, target, trail):
    return kernel(open_, high, low, close, params, target, trail)


@numba.njit(cache=True, error_model="numpy", inline="always")
def _symbol_loop(signal, which, open_, high, low, close, params, gate, fill_close, long_only, fees, slippage, cash,
                 integer_shares, stop_loss, take_profit, per_symbol):
    """The loop of run_builtin_nb / run_symbols_nb: ``signal(which, …)`` fills the buffers."""
    n_bars, n_syms = close.shape
    stats = np.full((n_syms, N_STATS), np.nan) if per_symbol else np.zeros((1, 1))
    ret_sum = np.zeros(n_bars)
    ret_count = np.zeros(n_bars + 1)
    none = np.empty(0)
    no_trades = np.empty((0, len(TRADE_FIELDS)))
    no_exposure = np.empty(0, np.uint8)
    target = np.empty(n_bars)  # the signal buffers, reused for every symbol
    trail = np.empty(n_bars)
    for j in range(n_syms):
        o, h, lo, c = open_[:, j], high[:, j], low[:, j], close[:, j]
        has_trail = signal(which, o, h, lo, c, params, target, trail)
        simulate_into_nb(o, h, lo, c, target, trail if has_trail else none, gate, fill_close, long_only, fees,
                         slippage, cash, integer_shares, stop_loss, take_profit, none, no_exposure, no_trades,
                         stats[j] if per_symbol else stats[0], ret_sum, ret_count)
    return stats, ret_sum, np.cumsum(ret_count[:n_bars])


@_jit
def run_builtin_nb(kernel_id, open_, high, low, close, params, gate, fill_close, long_only, fees, slippage, cash,
                   integer_shares, stop_loss, take_profit, per_symbol):
    """Backtest every column with the built-in signal kernel number `kernel_id`.

    Returns (stats, ret_sum[n_bars], ret_count[n_bars]): stats is [n_symbols, N_STATS],
    or with ``per_symbol=False`` (no running metrics per symbol: the portfolio only) a
    [1, 1] array holding the number of closed trades of all symbols.
    """
    return _symbol_loop(_builtin_signal, kernel_id, open_, high, low, close, params, gate, fill_close, long_only,
                        fees, slippage, cash, integer_shares, stop_loss, take_profit, per_symbol)


@_jit
def run_symbols_nb(kernel, open_, high, low, close, params, gate, fill_close, long_only, fees, slippage, cash,
                   integer_shares, stop_loss, take_profit, per_symbol):
    """:func:`run_builtin_nb` for any signal `kernel` (a registered custom strategy);
    compiled again in each new process for each kernel."""
    return _symbol_loop(_call_kernel, kernel, open_, high, low, close, params, gate, fill_close, long_only, fees,
                        slippage, cash, integer_shares, stop_loss, take_profit, per_symbol)


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

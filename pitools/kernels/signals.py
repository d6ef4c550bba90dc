"""Signal kernels of the per-symbol strategies: one symbol's bars in, target positions out.

Every kernel has the signature ``(open, high, low, close, params) -> (target, trail)``:

* ``params`` is a float64 array in the order of the strategy's parameter space;
* ``target[t]`` is +1 / -1 / 0 (long, short, flat) or NaN (no opinion: hold), using bars
  up to ``t`` only; the simulation clips -1 to 0 when long-only;
* ``trail`` holds trailing-stop distances in price units, or is empty when the strategy
  has none.

A target is NaN until the strategy's indicators are defined, so a symbol enters only once
they are; indicators skip the symbol's missing bars (see :mod:`pitools.kernels.indicators`).
"""

from __future__ import annotations

import numba
import numpy as np

from .indicators import atr_nb, bollinger_nb, ema_nb, roc_nb, rolling_max_nb, rolling_min_nb, rsi_nb, sma_nb

__all__ = ["sma_cross_nb", "macd_nb", "rsi_reversion_nb", "bollinger_reversion_nb", "donchian_breakout_nb",
           "atr_breakout_nb", "ts_momentum_nb", "xs_momentum_nb"]

_jit = numba.njit(cache=True, error_model="numpy")
_NO_TRAIL = np.empty(0)


@_jit
def _sign_or_nan(x):
    out = np.full(x.shape[0], np.nan)
    for t in range(x.shape[0]):
        if np.isfinite(x[t]):
            out[t] = 1.0 if x[t] > 0 else (-1.0 if x[t] < 0 else 0.0)
    return out


@_jit
def _previous_valid(x):
    """x shifted by one VALID bar: the value at the symbol's previous bar, NaN at gaps."""
    out = np.full(x.shape[0], np.nan)
    prev = np.nan
    for t in range(x.shape[0]):
        if np.isfinite(x[t]):
            out[t] = prev
            prev = x[t]
    return out


@_jit
def sma_cross_nb(open_, high, low, close, params):
    """Long while SMA(fast) > SMA(slow), short (or flat) while below. params: fast, slow."""
    return _sign_or_nan(sma_nb(close, int(params[0])) - sma_nb(close, int(params[1]))), _NO_TRAIL


@_jit
def macd_nb(open_, high, low, close, params):
    """Long while MACD > its signal line. params: fast, slow, signal."""
    line = ema_nb(close, int(params[0])) - ema_nb(close, int(params[1]))
    return _sign_or_nan(line - ema_nb(line, int(params[2]))), _NO_TRAIL


@_jit
def rsi_reversion_nb(open_, high, low, close, params):
    """Buy oversold (RSI < lower), sell overbought (RSI > upper), else hold. params: n, lower, upper."""
    r = rsi_nb(close, int(params[0]))
    lower, upper = params[1], params[2]
    out = np.full(close.shape[0], np.nan)
    for t in range(close.shape[0]):
        if np.isfinite(r[t]):
            if r[t] < lower:
                out[t] = 1.0
            elif r[t] > upper:
                out[t] = -1.0
    return out, _NO_TRAIL


@_jit
def bollinger_reversion_nb(open_, high, low, close, params):
    """Long below the lower band until the middle; short above the upper band until the middle.

    params: n, k. The exit at the middle band needs the strategy's own state, kept here.
    """
    mid, upper, lower = bollinger_nb(close, int(params[0]), params[1])
    out = np.full(close.shape[0], np.nan)
    state = 0.0
    for t in range(close.shape[0]):
        c = close[t]
        if not (np.isfinite(c) and np.isfinite(mid[t])):
            continue
        if c < lower[t]:
            state = 1.0
        elif c > upper[t]:
            state = -1.0
        elif (state > 0 and c >= mid[t]) or (state < 0 and c <= mid[t]):
            state = 0.0
        out[t] = state
    return out, _NO_TRAIL


@_jit
def donchian_breakout_nb(open_, high, low, close, params):
    """Turtle-style: long on a close above the prior `entry`-bar high, out below the prior
    `exit`-bar low (mirror for shorts). params: entry, exit."""
    hi_prev = _previous_valid(rolling_max_nb(high, int(params[0])))
    lo_prev = _previous_valid(rolling_min_nb(low, int(params[0])))
    exit_lo = _previous_valid(rolling_min_nb(low, int(params[1])))
    exit_hi = _previous_valid(rolling_max_nb(high, int(params[1])))
    out = np.full(close.shape[0], np.nan)
    state = 0.0
    for t in range(close.shape[0]):
        c = close[t]
        if not (np.isfinite(c) and np.isfinite(hi_prev[t]) and np.isfinite(exit_lo[t])):
            continue
        if c > hi_prev[t]:
            state = 1.0
        elif c < lo_prev[t]:
            state = -1.0
        elif (state > 0 and c < exit_lo[t]) or (state < 0 and c > exit_hi[t]):
            state = 0.0
        out[t] = state
    return out, _NO_TRAIL


@_jit
def atr_breakout_nb(open_, high, low, close, params):
    """Keltner channel breakout with an ATR trailing stop. params: n, k, trail_mult.

    Long on a close above EMA(n) + k·ATR(n), short below EMA(n) − k·ATR(n); the position is
    protected by a stop trailing trail_mult·ATR behind the best price since entry.
    """
    n = int(params[0])
    mid = ema_nb(close, n)
    a = atr_nb(high, low, close, n)
    out = np.full(close.shape[0], np.nan)
    for t in range(close.shape[0]):
        if np.isfinite(mid[t]) and np.isfinite(a[t]) and np.isfinite(close[t]):
            if close[t] > mid[t] + params[1] * a[t]:
                out[t] = 1.0
            elif close[t] < mid[t] - params[1] * a[t]:
                out[t] = -1.0
    return out, a * params[2]


@_jit
def ts_momentum_nb(open_, high, low, close, params):
    """Time-series momentum: long after a positive `lookback`-bar return, short after a negative one."""
    return _sign_or_nan(roc_nb(close, int(params[0]))), _NO_TRAIL


@_jit
def xs_momentum_nb(close, params):
    """Cross-sectional momentum over a (bars × symbols) close array → targets of the same shape.

    Every `rebalance` bars (counted from the first bar where at least `top_k` symbols have
    a `lookback`-bar return) the `top_k` symbols with the highest return get +1, the
    `top_k` with the lowest get -1 (kept flat when long-only), the rest 0; between
    rebalances the targets are NaN (hold). A symbol without a bar or a return that day is 0.
    params: lookback, top_k, rebalance.
    """
    n_bars, n_syms = close.shape
    lookback, top_k, every = int(params[0]), int(params[1]), int(params[2])
    ret = np.empty((n_bars, n_syms))
    for j in range(n_syms):
        ret[:, j] = roc_nb(close[:, j], lookback)
    out = np.full((n_bars, n_syms), np.nan)
    start = -1
    for t in range(n_bars):
        have = 0
        for j in range(n_syms):
            if np.isfinite(ret[t, j]):
                have += 1
        if start < 0 and have >= top_k:
            start = t
        if start < 0 or (t - start) % every != 0:
            continue
        vals = np.empty(have)
        idx = np.empty(have, np.int64)
        m = 0
        for j in range(n_syms):
            out[t, j] = 0.0
            if np.isfinite(ret[t, j]):
                vals[m] = ret[t, j]
                idx[m] = j
                m += 1
        order = np.argsort(vals, kind="mergesort")  # ties: lower symbol index first, stable
        k = min(top_k, have)
        for q in range(k):
            out[t, idx[order[have - 1 - q]]] = 1.0
        for q in range(min(k, have - k)):
            out[t, idx[order[q]]] = -1.0
    return out

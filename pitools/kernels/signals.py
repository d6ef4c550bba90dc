"""Signal kernels of the per-symbol strategies: one symbol's bars in, target positions out.

Every kernel has the signature ``(open, high, low, close, params, target, trail) -> bool``
and writes into the two float64 buffers it is given (one pair reused for every symbol of
a backtest, so nothing is allocated per symbol on the hot path):

* ``params`` is a float64 array in the order of the strategy's parameter space;
* ``target[t]`` becomes +1 / -1 / 0 (long, short, flat) or NaN (no opinion: hold), using
  bars up to ``t`` only; the simulation clips -1 to 0 when long-only;
* ``trail[t]`` becomes a trailing-stop distance in price units when the strategy has one,
  and the kernel returns True; otherwise it returns False and ``trail`` is untouched.

``signals_nb(kernel, open, high, low, close, params)`` allocates the buffers and returns
``(target, trail)`` (``trail`` empty when there is none) for callers outside the hot loop.

A target is NaN until the strategy's indicators are defined, so a symbol enters only once
they are; indicators skip the symbol's missing bars (see :mod:`pitools.kernels.indicators`).
"""

from __future__ import annotations

import numba
import numpy as np

from pitools.kernels.indicators import _rolling_max_dense, _rolling_std_dense, atr_nb, ema_nb, roc_nb, rsi_nb, sma_nb

__all__ = ["signals_nb", "sma_cross_nb", "macd_nb", "rsi_reversion_nb", "bollinger_reversion_nb",
           "donchian_breakout_nb", "atr_breakout_nb", "ts_momentum_nb", "xs_momentum_nb"]

_jit = numba.njit(cache=True, error_model="numpy")
_inline = numba.njit(cache=True, error_model="numpy", inline="always")


@_jit
def signals_nb(kernel, open_, high, low, close, params):
    """Run a signal `kernel` with fresh buffers: ``(target, trail)``, trail empty if unused."""
    n = close.shape[0]
    target = np.empty(n)
    trail = np.empty(n)
    if kernel(open_, high, low, close, params, target, trail):
        return target, trail
    return target, trail[:0]


@_inline
def _sign_into(x, target):
    for t in range(x.shape[0]):
        v = x[t]
        target[t] = (1.0 if v > 0 else (-1.0 if v < 0 else 0.0)) if np.isfinite(v) else np.nan


@_jit
def sma_cross_nb(open_, high, low, close, params, target, trail):
    """Long while SMA(fast) > SMA(slow), short (or flat) while below. params: fast, slow.

    One streaming pass over the valid closes: a ring of the last `slow` feeds two running
    sums, and ``sign(sum_fast·slow − sum_slow·fast)`` is the sign of the difference of the
    means without a division. Float32 prices (the panel's dtype) make the float64 running
    sums exact, so they cannot drift; a window of one repeated price compares as exactly
    equal means (flat), as :func:`~pitools.kernels.indicators.sma_nb` gives the constant.
    """
    fast, slow = int(params[0]), int(params[1])
    ring = np.empty(slow)
    total_f = 0.0
    total_s = 0.0
    cnt = 0
    slot = -1
    run_start = 0  # the count at which the current run of one repeated price began
    last = np.nan
    for i in range(close.shape[0]):
        v = np.float64(close[i])
        if not np.isfinite(v):
            target[i] = np.nan
            continue
        slot += 1
        if slot == slow:
            slot = 0
        old_slot = slot - fast  # the value leaving the fast window
        if old_slot < 0:
            old_slot += slow
        total_f += v - ring[old_slot] if cnt >= fast else v
        total_s += v - ring[slot] if cnt >= slow else v
        ring[slot] = v
        if v != last:
            run_start = cnt
            last = v
        cnt += 1
        same = cnt - run_start
        mean_f = v * fast if same >= fast else total_f  # both scaled by fast·slow
        mean_s = v * slow if same >= slow else total_s
        d = mean_f * slow - mean_s * fast
        target[i] = (1.0 if d > 0 else (-1.0 if d < 0 else 0.0)) if cnt >= slow else np.nan
    return False


@_jit
def macd_nb(open_, high, low, close, params, target, trail):
    """Long while MACD > its signal line. params: fast, slow, signal."""
    line = ema_nb(close, int(params[0])) - ema_nb(close, int(params[1]))
    _sign_into(line - ema_nb(line, int(params[2])), target)
    return False


@_jit
def rsi_reversion_nb(open_, high, low, close, params, target, trail):
    """Buy oversold (RSI < lower), sell overbought (RSI > upper), else hold. params: n, lower, upper."""
    r = rsi_nb(close, int(params[0]))
    lower, upper = params[1], params[2]
    for t in range(close.shape[0]):
        target[t] = np.nan
        if np.isfinite(r[t]):
            if r[t] < lower:
                target[t] = 1.0
            elif r[t] > upper:
                target[t] = -1.0
    return False


@_jit
def bollinger_reversion_nb(open_, high, low, close, params, target, trail):
    """Long below the lower band until the middle; short above the upper band until the middle.

    params: n, k. The exit at the middle band needs the strategy's own state, kept here.
    The bands are those of :func:`~pitools.kernels.indicators.bollinger_nb` (mean and
    population std of the last n valid closes), computed once on the packed valid closes.
    """
    n, k = int(params[0]), params[1]
    size = close.shape[0]
    where = np.empty(size, np.int64)
    packed = np.empty(size)
    m = 0
    for t in range(size):
        target[t] = np.nan
        c = np.float64(close[t])
        if np.isfinite(c):
            where[m] = t
            packed[m] = c
            m += 1
    mid = sma_nb(packed[:m], n)
    std = _rolling_std_dense(packed[:m], n, 0)
    state = 0.0
    for j in range(n - 1, m):
        c = close[where[j]]
        if c < mid[j] - k * std[j]:
            state = 1.0
        elif c > mid[j] + k * std[j]:
            state = -1.0
        elif (state > 0 and c >= mid[j]) or (state < 0 and c <= mid[j]):
            state = 0.0
        target[where[j]] = state
    return False


@_jit
def donchian_breakout_nb(open_, high, low, close, params, target, trail):
    """Turtle-style: long on a close above the prior `entry`-bar high, out below the prior
    `exit`-bar low (mirror for shorts). params: entry, exit.

    "Prior" is the `entry` (or `exit`) valid bars before this one, a valid bar being one
    with finite high, low and close. The valid bars are packed once and the four channel
    edges computed on them with the branch-free rolling max.
    """
    entry, ex = int(params[0]), int(params[1])
    n = close.shape[0]
    where = np.empty(n, np.int64)
    highs = np.empty(n)
    neg_lows = np.empty(n)  # min(low) == -max(-low) exactly
    m = 0
    for t in range(n):
        target[t] = np.nan
        h, lo, c = high[t], low[t], close[t]
        if np.isfinite(h) and np.isfinite(lo) and np.isfinite(c):
            where[m] = t
            highs[m] = h
            neg_lows[m] = -np.float64(lo)
            m += 1
    if m <= entry:
        return False
    entry_high = _rolling_max_dense(highs[:m], entry)
    entry_low = _rolling_max_dense(neg_lows[:m], entry)
    exit_high = _rolling_max_dense(highs[:m], ex)
    exit_low = _rolling_max_dense(neg_lows[:m], ex)
    state = 0.0
    for j in range(entry, m):  # the window ending at the previous valid bar, j - 1
        c = close[where[j]]
        if c > entry_high[j - 1]:
            state = 1.0
        elif c < -entry_low[j - 1]:
            state = -1.0
        elif (state > 0 and c < -exit_low[j - 1]) or (state < 0 and c > exit_high[j - 1]):
            state = 0.0
        target[where[j]] = state
    return False


@_jit
def atr_breakout_nb(open_, high, low, close, params, target, trail):
    """Keltner channel breakout with an ATR trailing stop. params: n, k, trail_mult.

    Long on a close above EMA(n) + k·ATR(n), short below EMA(n) − k·ATR(n); the position is
    protected by a stop trailing trail_mult·ATR behind the best price since entry.
    """
    n = int(params[0])
    mid = ema_nb(close, n)
    a = atr_nb(high, low, close, n)
    for t in range(close.shape[0]):
        target[t] = np.nan
        trail[t] = a[t] * params[2]
        if np.isfinite(mid[t]) and np.isfinite(a[t]) and np.isfinite(close[t]):
            if close[t] > mid[t] + params[1] * a[t]:
                target[t] = 1.0
            elif close[t] < mid[t] - params[1] * a[t]:
                target[t] = -1.0
    return True


@_jit
def ts_momentum_nb(open_, high, low, close, params, target, trail):
    """Time-series momentum: long after a positive `lookback`-bar return, short after a negative one."""
    _sign_into(roc_nb(close, int(params[0])), target)
    return False


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

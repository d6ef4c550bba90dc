"""Indicator kernels: one symbol's bars in (1-D float32/float64), float64 out.

Conventions shared by every kernel:

* A bar is valid when its inputs are finite. Invalid bars are skipped as if the series
  were compressed: the output there is NaN, and the next valid bar sees the last `n`
  *valid* bars. Warm-up is counted in valid bars, so a late-listing symbol warms up on
  its own history and a halt day does not reset anything.
* Accumulation is float64 whatever the input dtype.
* No validation: `n` >= 1 and matching lengths are the wrapper's job
  (:mod:`pitools.engine.indicators`).
* Every value at bar t depends on bars 0..t only (no lookahead).

``error_model="numpy"`` makes a float division by zero give inf/NaN like numpy instead of
raising (and drops the zero checks from the loops).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "sma_nb", "ema_nb", "rsi_nb", "atr_nb", "rolling_std_nb", "bollinger_nb",
    "rolling_max_nb", "rolling_min_nb", "donchian_nb", "roc_nb", "rolling_volatility_nb",
]

_jit = numba.njit(cache=True, error_model="numpy")


# ---------------------------------------------------------------------------- helpers

@_jit
def _valid_positions(x):
    """Positions of the finite values of `x` (int64)."""
    m = 0
    for i in range(x.shape[0]):
        if np.isfinite(x[i]):
            m += 1
    pos = np.empty(m, np.int64)
    m = 0
    for i in range(x.shape[0]):
        if np.isfinite(x[i]):
            pos[m] = i
            m += 1
    return pos


@_jit
def _valid_positions2(a, b):
    """Positions where both `a` and `b` are finite (int64)."""
    m = 0
    for i in range(a.shape[0]):
        if np.isfinite(a[i]) and np.isfinite(b[i]):
            m += 1
    pos = np.empty(m, np.int64)
    m = 0
    for i in range(a.shape[0]):
        if np.isfinite(a[i]) and np.isfinite(b[i]):
            pos[m] = i
            m += 1
    return pos


@_jit
def _gather(x, pos):
    """``x[pos]`` as a dense float64 array."""
    out = np.empty(pos.shape[0], np.float64)
    for j in range(pos.shape[0]):
        out[j] = x[pos[j]]
    return out


@_jit
def _scatter(dense, pos, size):
    """A length-`size` NaN array with ``out[pos] = dense``."""
    out = np.full(size, np.nan)
    for j in range(pos.shape[0]):
        out[pos[j]] = dense[j]
    return out


@_jit
def _rolling_std_dense(v, n, ddof):
    """Rolling std of a dense (NaN-free) float64 array; NaN until `n` values are seen.

    Sliding sums of ``v - K`` with a shift `K` near the window mean, so prices ~1e4 with
    tiny moves do not cancel catastrophically (the naive sum of squares loses ~8 digits
    there, and pandas' own rolling std is off by percents). Every `n` values the window is
    recomputed exactly (two-pass) and `K` reset, which bounds any drift.
    """
    m = v.shape[0]
    out = np.full(m, np.nan)
    denom = n - ddof
    if denom <= 0 or m < n:
        return out
    buf = np.empty(n, np.float64)
    k_shift = v[0]  # the shift and sums are reset exactly at the first full window
    s1 = 0.0
    s2 = 0.0
    same = 0  # length of the current run of identical values
    last = np.nan
    slot = -1
    for j in range(m):
        x = v[j]
        slot += 1
        if slot == n:
            slot = 0
        if j >= n:
            d = buf[slot] - k_shift
            s1 -= d
            s2 -= d * d
        buf[slot] = x
        d = x - k_shift
        s1 += d
        s2 += d * d
        same = same * (x == last) + 1  # branch-free run length of identical values
        last = x
        if j < n - 1:
            continue
        if slot == n - 1:
            # buf holds exactly the window: recompute it exactly and re-centre the shift
            mean = 0.0
            for q in range(n):
                mean += buf[q]
            mean /= n
            k_shift = mean
            s1 = 0.0
            s2 = 0.0
            for q in range(n):
                d = buf[q] - mean
                s1 += d
                s2 += d * d
        if same >= n:
            out[j] = 0.0  # a constant window: exactly 0, not rounding noise
        else:
            ss = s2 - s1 * s1 / n
            out[j] = np.sqrt(ss / denom) if ss > 0.0 else 0.0
    return out


@_jit
def _rolling_max_dense(v, n):
    """Rolling max over the last `n` values of a dense array (van Herk / Gil-Werman).

    Blocks of `n` values get a running max from their start (`ahead`) and from their end
    (`behind`); any window of `n` values spans at most two blocks, so its max is
    ``max(behind[start], ahead[end])``. Three branch-free passes: a monotonic deque does
    less arithmetic but mispredicts a branch on most bars.
    """
    m = v.shape[0]
    out = np.full(m, np.nan)
    if m < n:
        return out
    ahead = np.empty(m)
    behind = np.empty(m)
    for start in range(0, m, n):  # block by block: no modulo per value
        stop = min(start + n, m)
        run = v[start]
        for j in range(start, stop):
            run = max(run, v[j])
            ahead[j] = run
        run = v[stop - 1]
        for j in range(stop - 1, start - 1, -1):
            run = max(run, v[j])
            behind[j] = run
    for j in range(n - 1, m):
        out[j] = max(behind[j - n + 1], ahead[j])
    return out


@_jit
def _wilder_rsi(avg_gain, avg_loss):
    if avg_loss == 0.0:
        return 100.0 if avg_gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


# ---------------------------------------------------------------------------- kernels

@_jit
def sma_nb(x, n):
    """Mean of the last `n` valid values; NaN until `n` valid values are seen."""
    size = x.shape[0]
    out = np.full(size, np.nan)
    buf = np.empty(n, np.float64)
    total = 0.0
    cnt = 0
    slot = -1  # ring position of the newest value (a wrapping counter: no modulo per bar)
    same = 0
    last = np.nan
    for i in range(size):
        v = np.float64(x[i])
        if not np.isfinite(v):
            continue
        slot += 1
        if slot == n:
            slot = 0
        # one add on the loop-carried chain per bar (v - old does not depend on total)
        total += v - buf[slot] if cnt >= n else v
        buf[slot] = v
        cnt += 1
        same = same * (v == last) + 1  # branch-free run length of identical values
        last = v
        if cnt < n:
            continue
        if slot == n - 1:
            # re-sum once per n valid bars: the running sum cannot drift
            total = 0.0
            for q in range(n):
                total += buf[q]
        mean = total / n
        out[i] = v if same >= n else mean  # a constant window gives the constant exactly
    return out


@_jit
def ema_nb(x, n):
    """EMA with alpha = 2/(n+1), seeded with the first valid value (pandas
    ``ewm(span=n, adjust=False, min_periods=n)`` of the valid values)."""
    size = x.shape[0]
    out = np.full(size, np.nan)
    alpha = 2.0 / (n + 1.0)
    beta = 1.0 - alpha
    e = 0.0
    cnt = 0
    for i in range(size):
        v = np.float64(x[i])
        if not np.isfinite(v):
            continue
        e = v if cnt == 0 else beta * e + alpha * v
        cnt += 1
        if cnt >= n:
            out[i] = e
    return out


@_jit
def rsi_nb(x, n):
    """Wilder's RSI over the deltas of consecutive valid values.

    Average gain/loss are ``ewm(alpha=1/n, adjust=False, min_periods=n)`` of the gains and
    losses; the first delta exists at the second valid bar, so the first RSI is at the
    (n+1)-th valid bar. No losses and some gains give 100; no moves at all give 50.
    """
    size = x.shape[0]
    out = np.full(size, np.nan)
    alpha = 1.0 / n
    beta = 1.0 - alpha
    avg_gain = 0.0
    avg_loss = 0.0
    prev = np.nan
    n_deltas = 0
    for i in range(size):
        v = np.float64(x[i])
        if not np.isfinite(v):
            continue
        if prev == prev:  # a previous valid value exists
            d = v - prev
            gain = d if d > 0.0 else 0.0
            loss = -d if d < 0.0 else 0.0
            if n_deltas == 0:
                avg_gain = gain
                avg_loss = loss
            else:
                avg_gain = beta * avg_gain + alpha * gain
                avg_loss = beta * avg_loss + alpha * loss
            n_deltas += 1
            if n_deltas >= n:
                out[i] = _wilder_rsi(avg_gain, avg_loss)
        prev = v
    return out


@_jit
def atr_nb(high, low, close, n):
    """Wilder's ATR: ``ewm(alpha=1/n, adjust=False, min_periods=n)`` of the true range.

    A bar is valid when high, low and close are all finite. The true range uses the
    previous *valid* close; the first valid bar's true range is high - low.
    """
    size = close.shape[0]
    out = np.full(size, np.nan)
    alpha = 1.0 / n
    beta = 1.0 - alpha
    atr = 0.0
    prev_close = 0.0
    cnt = 0
    for i in range(size):
        h = np.float64(high[i])
        lo = np.float64(low[i])
        c = np.float64(close[i])
        if not (np.isfinite(h) and np.isfinite(lo) and np.isfinite(c)):
            continue
        tr = h - lo
        if cnt == 0:
            atr = tr
        else:
            tr = max(tr, abs(h - prev_close), abs(lo - prev_close))
            atr = beta * atr + alpha * tr
        cnt += 1
        prev_close = c
        if cnt >= n:
            out[i] = atr
    return out


@_jit
def rolling_std_nb(x, n):
    """Population std (ddof=0) of the last `n` valid values."""
    pos = _valid_positions(x)
    return _scatter(_rolling_std_dense(_gather(x, pos), n, 0), pos, x.shape[0])


@_jit
def bollinger_nb(x, n, k):
    """Bollinger bands ``(mid, upper, lower)``: mid = sma, bands = mid ± k·std(ddof=0)."""
    mid = sma_nb(x, n)
    std = rolling_std_nb(x, n)
    upper = mid + k * std
    lower = mid - k * std
    return mid, upper, lower


@_jit
def rolling_max_nb(x, n):
    """Max of the last `n` valid values, the current one included."""
    pos = _valid_positions(x)
    return _scatter(_rolling_max_dense(_gather(x, pos), n), pos, x.shape[0])


@_jit
def rolling_min_nb(x, n):
    """Min of the last `n` valid values, the current one included."""
    pos = _valid_positions(x)
    # min(v) == -max(-v) exactly: negation is exact in floating point
    return _scatter(-_rolling_max_dense(-_gather(x, pos), n), pos, x.shape[0])


@_jit
def donchian_nb(high, low, n):
    """Donchian channel ``(upper, lower)``: rolling max of highs and min of lows over the
    last `n` bars where both high and low are finite."""
    pos = _valid_positions2(high, low)
    size = high.shape[0]
    upper = _scatter(_rolling_max_dense(_gather(high, pos), n), pos, size)
    lower = _scatter(-_rolling_max_dense(-_gather(low, pos), n), pos, size)
    return upper, lower


@_jit
def roc_nb(x, n):
    """Rate of change ``x_t / x_(n valid bars earlier) - 1``; needs n+1 valid values."""
    size = x.shape[0]
    out = np.full(size, np.nan)
    buf = np.empty(n, np.float64)  # the last n valid values; the oldest is at `slot`
    cnt = 0
    slot = 0
    for i in range(size):
        v = np.float64(x[i])
        if not np.isfinite(v):
            continue
        if cnt >= n:
            out[i] = v / buf[slot] - 1.0
        buf[slot] = v
        cnt += 1
        slot += 1
        if slot == n:
            slot = 0
    return out


@_jit
def rolling_volatility_nb(x, n):
    """Sample std (ddof=1) of the last `n` log returns between consecutive valid values.

    `n` returns need n+1 valid values; with n == 1 a sample std is undefined (all NaN).
    Prices must be positive (the wrapper checks).
    """
    pos = _valid_positions(x)
    m = pos.shape[0]
    if m < 2:
        return np.full(x.shape[0], np.nan)
    rets = np.empty(m - 1, np.float64)
    for j in range(1, m):
        rets[j - 1] = np.log(np.float64(x[pos[j]]) / np.float64(x[pos[j - 1]]))
    return _scatter(_rolling_std_dense(rets, n, 1), pos[1:], x.shape[0])

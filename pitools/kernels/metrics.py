"""Performance-metric kernels: one pass over an equity curve (one symbol or the portfolio).

Definitions (``e`` is the equity at each bar's close; only its *finite* values count):

* Bars with non-finite equity are bars the series does not have (before a late listing,
  halts): they are skipped as if the series were compressed, so no return appears there.
  ``r_i = e_i / e_(i-1) - 1`` over consecutive finite values; ``N`` = number of returns
  (finite values - 1).
* ``total_return = last / first - 1`` (first and last finite equity).
* ``cagr = (last / first) ** (periods_per_year / N) - 1``; NaN if ``N == 0``; -1 if
  ``last <= 0`` (the account is wiped out).
* ``sharpe = mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` (risk-free rate 0);
  NaN if ``N < 2`` or ``std == 0``.
* ``sortino = mean(r) / downside_dev * sqrt(periods_per_year)`` with
  ``downside_dev = sqrt(sum(min(r, 0) ** 2) / N)`` (target 0, divided by *all* returns);
  NaN if ``N == 0`` or ``downside_dev == 0``.
* ``max_drawdown = max_i (1 - e_i / running_peak_i)``, a positive fraction; 0 if the curve
  never falls below its running peak (including ``N == 0``).
* ``calmar = cagr / max_drawdown``; NaN if ``max_drawdown == 0`` (or ``cagr`` is NaN).
* ``exposure`` = fraction of the bars with finite equity where ``exposure`` is set.
* ``n_periods = N``.
* Every slot (``n_periods`` included) is NaN when there is no finite equity at all.

Equity is expected to be positive. With zero or negative equity the return-based metrics
follow the formulas literally (inf/NaN as numpy gives them) and a drawdown may exceed 1.

Trade metrics over closed trades' pnl (non-finite pnl values are ignored):

* ``n_trades`` = number of (finite) pnl values.
* ``win_rate`` = fraction with ``pnl > 0``; NaN if there are no trades.
* ``profit_factor = gross_profit / gross_loss`` (``gross_loss = -sum(pnl[pnl < 0])``):
  inf if no losses and some profit; NaN if no trades, or if neither profit nor loss
  (every pnl exactly 0).

Accumulation is float64 whatever the input dtype: Welford's update for the mean and
variance of the returns, a plain sum for the downside deviation (positive terms: accurate
to n·eps) and Neumaier-compensated sums for the gross profit/loss. Every metric of ``equity[:t]`` depends on bars ``0..t-1`` only, so a
running value never uses a later bar.

No validation here: matching lengths, dtypes and ``periods_per_year > 0`` are the
wrapper's job. ``error_model="numpy"`` makes a float division by zero give inf/NaN.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "equity_metrics_nb", "trade_metrics_nb", "metrics_to_dict",
    "METRIC_NAMES", "TOTAL_RETURN", "CAGR", "SHARPE", "SORTINO", "MAX_DRAWDOWN", "CALMAR",
    "EXPOSURE", "N_PERIODS", "metrics_start", "metrics_push", "metrics_finish",
    "TRADE_STATE_SIZE", "trade_push", "trade_finish",
    "TRADE_METRIC_NAMES", "N_TRADES", "WIN_RATE", "PROFIT_FACTOR",
]

_jit = numba.njit(cache=True, error_model="numpy")

# Slots of the array returned by equity_metrics_nb.
METRIC_NAMES = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "exposure", "n_periods")
TOTAL_RETURN, CAGR, SHARPE, SORTINO, MAX_DRAWDOWN, CALMAR, EXPOSURE, N_PERIODS = range(8)
_N_METRICS = len(METRIC_NAMES)

# Slots of the array returned by trade_metrics_nb.
TRADE_METRIC_NAMES = ("n_trades", "win_rate", "profit_factor")
N_TRADES, WIN_RATE, PROFIT_FACTOR = range(3)
_N_TRADE_METRICS = len(TRADE_METRIC_NAMES)


@_jit
def _neumaier_add(total, comp, x):
    """One step of a Neumaier-compensated sum: returns the new (total, compensation)."""
    t = total + x
    if abs(total) >= abs(x):
        comp += (total - t) + x
    else:
        comp += (x - t) + total
    return t, comp


# Running state of the equity metrics, a tuple of floats so that a loop calling
# metrics_push keeps it in registers: (n_finite, first, prev, n_exposed, n, mean, m2,
# down, peak, max_dd, dd_limit).
@_jit
def metrics_start():
    """The empty running state of :func:`metrics_push`."""
    return (0.0, np.nan, np.nan, 0.0, 0.0, 0.0, 0.0, 0.0, np.nan, 0.0, np.nan)


@numba.njit(cache=True, error_model="numpy", inline="always")
def metrics_push(acc, e, exposed):
    """Add one finite equity value `e` (float64) with its exposure flag (0/1) to the state.

    Written for speed (it runs once per bar of every backtest): no unpredictable branch,
    one division on no loop-carried chain besides the return itself.
    """
    n_finite, first, prev, n_exposed, n, mean, m2, down, peak, max_dd, dd_limit = acc
    n_exposed += exposed
    if n_finite == 0.0:
        return (1.0, e, e, n_exposed, n, mean, m2, down, e, max_dd, e)
    r = e / prev - 1.0
    n += 1.0
    # Welford; the reciprocal keeps the division off the loop-carried chain of `mean`
    delta = r - mean
    mean += delta * (1.0 / n)
    m2 += delta * (r - mean)
    neg = min(r, 0.0)  # a sum of positive terms: plain summation is accurate to n·eps
    down += neg * neg
    if e > peak:
        peak = e
        dd_limit = peak * (1.0 - max_dd)
    elif e < dd_limit:  # only a deeper drawdown than max_dd pays for a division
        dd = 1.0 - e / peak
        if dd > max_dd:
            max_dd = dd
            dd_limit = peak * (1.0 - max_dd)
    return (n_finite + 1.0, first, e, n_exposed, n, mean, m2, down, peak, max_dd, dd_limit)


@_jit
def metrics_finish(acc, periods_per_year, out):
    """Write the metrics of the state into `out` (``METRIC_NAMES`` order, NaN-filled first)."""
    n_finite, first, last, n_exposed, n, mean, m2, down, peak, max_dd, dd_limit = acc
    out[:_N_METRICS] = np.nan
    if n_finite == 0.0:
        return
    ann = np.sqrt(periods_per_year)
    out[TOTAL_RETURN] = last / first - 1.0
    if n > 0:
        if last <= 0.0:
            out[CAGR] = -1.0
        else:
            out[CAGR] = (last / first) ** (periods_per_year / n) - 1.0
        downside_dev = np.sqrt(down / n)
        if downside_dev > 0.0:
            out[SORTINO] = mean / downside_dev * ann
    if n > 1 and m2 > 0.0:
        out[SHARPE] = mean / np.sqrt(m2 / (n - 1)) * ann
    out[MAX_DRAWDOWN] = max_dd
    if max_dd > 0.0:
        out[CALMAR] = out[CAGR] / max_dd
    out[EXPOSURE] = n_exposed / n_finite
    out[N_PERIODS] = n


@_jit
def equity_metrics_nb(equity, exposure, periods_per_year):
    """Metrics of one equity curve in one pass; a float64 array in ``METRIC_NAMES`` order.

    `equity` is 1-D float (NaN where the series has no bar), `exposure` 1-D bool/uint8 of
    the same length (nonzero where a position was held during the bar), `periods_per_year`
    e.g. 252.0 for daily bars.
    """
    acc = metrics_start()
    for i in range(equity.shape[0]):
        e = np.float64(equity[i])
        if np.isfinite(e):
            acc = metrics_push(acc, e, 1.0 if exposure[i] else 0.0)
    out = np.empty(_N_METRICS)
    metrics_finish(acc, periods_per_year, out)
    return out


# Running state of the trade metrics, kept in 6 slots of a float64 array from `at`:
# count, wins, gross profit and loss with their Neumaier compensations.
TRADE_STATE_SIZE = 6


@_jit
def trade_push(state, at, pnl):
    """Add one closed trade's pnl to the trade-metric state stored in ``state[at:at + 6]``."""
    p = np.float64(pnl)
    if not np.isfinite(p):
        return
    state[at] += 1.0
    if p > 0.0:
        state[at + 1] += 1.0
        state[at + 2], state[at + 3] = _neumaier_add(state[at + 2], state[at + 3], p)
    elif p < 0.0:
        state[at + 4], state[at + 5] = _neumaier_add(state[at + 4], state[at + 5], -p)


@_jit
def trade_finish(state, at, out):
    """``[n_trades, win_rate, profit_factor]`` of the state into `out`."""
    n = state[at]
    out[:_N_TRADE_METRICS] = np.nan
    out[N_TRADES] = n
    if n == 0:
        return
    out[WIN_RATE] = state[at + 1] / n
    gross_profit = state[at + 2] + state[at + 3]
    gross_loss = state[at + 4] + state[at + 5]
    if gross_loss > 0.0:
        out[PROFIT_FACTOR] = gross_profit / gross_loss
    elif gross_profit > 0.0:
        out[PROFIT_FACTOR] = np.inf


@_jit
def trade_metrics_nb(pnl):
    """``[n_trades, win_rate, profit_factor]`` of closed trades' pnl (1-D float)."""
    state = np.zeros(TRADE_STATE_SIZE)
    for i in range(pnl.shape[0]):
        trade_push(state, 0, pnl[i])
    out = np.empty(_N_TRADE_METRICS)
    trade_finish(state, 0, out)
    return out


def metrics_to_dict(values, names=METRIC_NAMES) -> dict[str, float]:
    """``{name: float(value)}`` for a metrics array and its slot names (pure Python).

    >>> metrics_to_dict(np.array([3.0, 0.5, 2.0]), TRADE_METRIC_NAMES)
    {'n_trades': 3.0, 'win_rate': 0.5, 'profit_factor': 2.0}
    """
    if len(values) != len(names):
        raise ValueError(f"`values` has {len(values)} slots but `names` has {len(names)}; "
                         "pass the names tuple that matches the kernel (METRIC_NAMES or TRADE_METRIC_NAMES)")
    return {name: float(v) for name, v in zip(names, values)}

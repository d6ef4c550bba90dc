"""The regime model's inputs: the constants of the model and its file, the input checks, and
the four features (log VIX, trailing return, log realised volatility, drawdown from the high)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pitools.errors import DataError, check_int
from pitools.kernels.layout import SESSIONS_PER_YEAR

__all__ = ["features", "FEATURES", "TABLE_COLUMNS", "BEAR_DRAWDOWN", "MIN_TRANSITION", "UNKNOWN",
           "MIN_TRAIN_SESSIONS", "MAX_REGIMES", "FORMAT", "FORMAT_VERSION"]

FEATURES = ("log_vix", "ret", "log_rvol", "drawdown")
# the features table: share of the training sessions, then mean features in natural units
TABLE_COLUMNS = ("weight", "vix", "ret", "rvol", "drawdown", "median_spell")
BEAR_DRAWDOWN = -0.05  # a "real" drawdown: the mean close at least 5 % below the trailing high
MIN_TRANSITION = 1e-8  # floor of every transition probability: no regime becomes unreachable
UNKNOWN = -1  # code of a date the model cannot label (before the features are defined)
MIN_TRAIN_SESSIONS = 250  # about one year of sessions with defined features
MAX_REGIMES = 12
FORMAT = "pitools.market.regime"
FORMAT_VERSION = 2  # 2: hidden Markov model (1 was a Gaussian mixture with a persistence rule)
_ANNUAL = math.sqrt(SESSIONS_PER_YEAR)


# -- input checks ---------------------------------------------------------------------------

def _series(name: str, s) -> pd.Series:
    """`s` as a float64 Series on a sorted, tz-naive, midnight DatetimeIndex, NaNs dropped."""
    if not isinstance(s, pd.Series):
        hint = ""
        if isinstance(s, pd.DataFrame):
            hint = f" (a DataFrame with columns {list(s.columns)[:6]!r}: pass one column, e.g. `df['close']`)"
        raise DataError(f"`{name}` must be a pandas Series of closes indexed by date, got "
                        f"{type(s).__name__}{hint}")
    if not isinstance(s.index, pd.DatetimeIndex):
        raise DataError(f"`{name}` must be indexed by date (a DatetimeIndex), got a {type(s.index).__name__} "
                        f"starting {list(s.index[:3])!r}; convert it with `s.index = pd.to_datetime(s.index)`")
    try:
        values = pd.to_numeric(s, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"`{name}` must hold numbers (closes), got dtype {s.dtype!s} with values "
                        f"like {list(s.iloc[:3])!r}") from None
    idx = s.index
    if idx.tz is not None:
        idx = idx.tz_localize(None)
    idx = pd.DatetimeIndex(idx.normalize(), name="date").as_unit("ns")
    out = pd.Series(values, index=idx, name=name).sort_index()
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()][0]
        raise DataError(f"`{name}` has the date {str(dup.date())!r} more than once; one close per session "
                        "is allowed (drop duplicates, e.g. `s[~s.index.duplicated(keep='last')]`)")
    out = out.dropna()
    bad = ~(np.isfinite(out.to_numpy()) & (out.to_numpy() > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"`{name}` = {float(out.iloc[i])!r} on {str(out.index[i].date())!r}: closes must be positive "
                        f"finite numbers ({int(bad.sum())} such values); fix or drop them (missing days may be NaN)")
    return out


def _int(name: str, value, low: int, high: int | None = None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    upto = f" to {high}" if high is not None else " or more"
    none = " (or None)" if allow_none else ""
    return check_int(name, value, low, high, allowed=f"an integer from {low}{upto}{none}", error=DataError)


def _names(names, n: int) -> tuple[str, ...]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise DataError(f"`names` = {names!r} must be a list of {n} regime names, calmest first")
    out = tuple(names)
    if len(out) != n or not all(isinstance(x, str) and x for x in out) or len(set(out)) != n:
        raise DataError(f"`names` = {names!r} must be {n} distinct non-empty strings (one per regime, "
                        "calmest first)")
    return out


# -- features -------------------------------------------------------------------------------

def _features(vix: pd.Series, sp500: pd.Series, window: int, high_window: int) -> pd.DataFrame:
    """Features on the common dates of two checked series; NaN rows where not yet defined."""
    common = sp500.index.intersection(vix.index)
    if len(common) == 0:
        raise DataError(f"`vix` ({_span(vix)}) and `sp500` ({_span(sp500)}) have no date in common; "
                        "pass series that overlap")
    p = sp500.to_numpy()
    lp = np.log(p)
    r = pd.Series(np.diff(lp, prepend=np.nan))
    ret = pd.Series(lp).diff(window).to_numpy()
    rvol = r.rolling(window, min_periods=window).std(ddof=1).to_numpy() * _ANNUAL
    with np.errstate(divide="ignore"):
        log_rvol = np.log(rvol)  # a flat stretch (zero volatility) gives -inf: caught below
    high = pd.Series(p).rolling(high_window, min_periods=1).max().to_numpy()
    f = pd.DataFrame({"ret": ret, "log_rvol": log_rvol, "drawdown": p / high - 1.0}, index=sp500.index)
    f = f.loc[common]
    f.insert(0, "log_vix", np.log(vix.loc[common].to_numpy()))
    return f.where(np.isfinite(f.to_numpy()))


def _span(s: pd.Series) -> str:
    if len(s) == 0:
        return "no valid values"
    return f"{s.index[0].date()}..{s.index[-1].date()}, {len(s)} values"


def features(vix, sp500, window: int = 20, high_window: int = 252) -> pd.DataFrame:
    """The model's features (:data:`FEATURES`) per session, from data up to that session.

    Rows are the dates where both series have a value; the trailing S&P 500 features are
    NaN where not yet defined (the first `window` sessions of the S&P 500), and such rows
    are the ones :meth:`RegimeModel.predict` leaves out.

    Example
    -------
    >>> f = pt.regime.features(vix, spx)
    >>> f.iloc[19:22].round(3)  # the 21st S&P 500 close is the first with a 20-session return
                log_vix    ret  log_rvol  drawdown
    date
    2023-12-19    2.730    NaN       NaN    -0.010
    2023-12-20    2.799  0.007    -2.087    -0.003
    2023-12-21    2.705  0.016    -2.129    -0.003
    >>> f.dropna().agg(["mean", "min", "max"]).round(2)  # drawdown ≤ 0: 0 at a new high
          log_vix   ret  log_rvol  drawdown
    mean     3.13  0.03     -1.66     -0.04
    min      2.31 -0.15     -2.72     -0.21
    max      4.45  0.34     -0.32      0.00
    """
    window = _int("window", window, 2, 260)
    high_window = _int("high_window", high_window, window, 2520)
    return _features(_series("vix", vix), _series("sp500", sp500), window, high_window)



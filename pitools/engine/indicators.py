"""Technical indicators: validated public wrappers of :mod:`pitools.kernels.indicators`.

Each function takes a 1-D series of one symbol's bars or a 2-D ``(n_bars, n_symbols)``
panel (applied per column), as a numpy array or a pandas Series/DataFrame, and returns
float64 results of the same shape and type (pandas results keep the index and columns).

NaN marks a bar the symbol does not have (before listing, after delisting, a halt day).
Indicators run over the symbol's own valid bars: a NaN bar gives NaN and is skipped, the
next bar sees the last `n` *valid* bars, and warm-up is counted in valid bars. For
OHLC indicators a bar is valid when all of its inputs are finite.

>>> import numpy as np
>>> from pitools.engine.indicators import sma
>>> sma(np.array([1.0, 2.0, np.nan, 3.0, 4.0]), 2)
array([nan, 1.5, nan, 2.5, 3.5])
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pitools.errors import DataError
from pitools.kernels import indicators as _k

__all__ = ["Bollinger", "Donchian", "sma", "ema", "rsi", "atr", "bollinger", "donchian", "roc",
           "rolling_volatility"]


class Bollinger(NamedTuple):
    """Bollinger bands; unpacks as ``mid, upper, lower = bollinger(x)``."""

    mid: Any
    upper: Any
    lower: Any


class Donchian(NamedTuple):
    """Donchian channel; unpacks as ``upper, lower = donchian(high, low)``."""

    upper: Any
    lower: Any


# ---------------------------------------------------------------------------- validation

def _check_window(n, name: str = "n", minimum: int = 1, why: str = "") -> int:
    # bool is an int subclass, but n=True is always a mistake
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise DataError(f"`{name}` = {n!r} must be an integer >= {minimum} (a window length in valid "
                        f"bars), got {type(n).__name__}; e.g. {name}=20")
    if n < minimum:
        raise DataError(f"`{name}` = {n!r} must be an integer >= {minimum} (a window length in valid "
                        f"bars){why}")
    return int(n)


def _check_k(k, name: str = "k") -> float:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Real):
        raise DataError(f"`{name}` = {k!r} must be a positive number (band width in standard "
                        f"deviations), got {type(k).__name__}; e.g. {name}=2.0")
    if not np.isfinite(k) or k <= 0:
        raise DataError(f"`{name}` = {k!r} must be a positive finite number (band width in "
                        f"standard deviations); e.g. {name}=2.0")
    return float(k)


def _check_positive(a: np.ndarray, name: str, where: str) -> None:
    bad = a <= 0  # NaN compares False: missing bars are fine
    if bad.any():
        bar = int(np.argmax(bad))
        raise DataError(f"`{name}` must hold positive prices for log returns, got {float(a[bar])!r} at "
                        f"bar {bar}{where}; use NaN for a bar the symbol does not have")


def _describe(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _labels(x):
    """What is needed to wrap a result like `x`: None for numpy."""
    if isinstance(x, pd.Series):
        return ("series", x.index, x.name)
    if isinstance(x, pd.DataFrame):
        return ("frame", x.index, x.columns)
    return None


def _numeric_ok(dtype) -> bool:
    # bool is numeric to numpy but never a price
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype) \
        and not pd.api.types.is_complex_dtype(dtype)


def _to_array(x, name: str) -> np.ndarray:
    """`x` as a float32/float64 numpy array of 1 or 2 dimensions (not yet contiguous)."""
    if isinstance(x, pd.DataFrame):
        bad = [(c, d) for c, d in x.dtypes.items() if not _numeric_ok(d)]
        if bad:
            col, dt = bad[0]
            raise DataError(f"`{name}` column {col!r} has dtype {str(dt)!r}; only numeric columns "
                            "(float or integer) are allowed. Convert it, e.g. `df.astype(float)`.")
        f32 = len(x.columns) > 0 and all(d == np.float32 for d in x.dtypes)
        return x.to_numpy(dtype=np.float32 if f32 else np.float64, na_value=np.nan)
    if isinstance(x, pd.Series):
        if not _numeric_ok(x.dtype):
            raise DataError(f"`{name}` has dtype {str(x.dtype)!r}; only numeric values (float or "
                            "integer) are allowed. Convert it, e.g. `s.astype(float)`.")
        return x.to_numpy(dtype=np.float32 if x.dtype == np.float32 else np.float64, na_value=np.nan)
    if isinstance(x, (list, tuple)):
        try:
            x = np.asarray(x)
        except ValueError:
            raise DataError(f"`{name}` = {_describe(x)} is a ragged sequence; pass a 1-D or 2-D "
                            "array") from None
    if not isinstance(x, np.ndarray):
        raise DataError(f"`{name}` = {_describe(x)} must be a numpy array, pandas Series or "
                        f"DataFrame, got {type(x).__name__}")
    if x.ndim not in (1, 2):
        raise DataError(f"`{name}` has shape {x.shape!r}; a 1-D series (bars) or a 2-D panel "
                        "(bars × symbols) is allowed")
    if not _numeric_ok(x.dtype):
        raise DataError(f"`{name}` has dtype {str(x.dtype)!r}; only numeric values (float or "
                        "integer) are allowed. Convert it, e.g. `x.astype(float)`.")
    if x.dtype in (np.float32, np.float64):
        return x
    return x.astype(np.float64)


def _prepare(inputs: dict[str, Any]) -> tuple[list[np.ndarray], Any]:
    """Validate and convert the array inputs; returns the arrays and the labels to wrap with."""
    names = list(inputs)
    arrays = [_to_array(v, k) for k, v in inputs.items()]
    first = names[0]
    for name, arr in zip(names[1:], arrays[1:]):
        if arr.shape != arrays[0].shape:
            raise DataError(f"`{name}` has shape {arr.shape!r} but `{first}` has shape "
                            f"{arrays[0].shape!r}; {', '.join(names)} must have the same shape")
    labelled = [(k, _labels(v)) for k, v in inputs.items() if _labels(v) is not None]
    for name, lab in labelled[1:]:
        ref_name, ref = labelled[0]
        if lab[0] != ref[0] or not lab[1].equals(ref[1]) or (lab[0] == "frame" and not lab[2].equals(ref[2])):
            raise DataError(f"`{name}` is not aligned with `{ref_name}` (different index or columns); "
                            f"align them first, e.g. `{name}.reindex_like({ref_name})`")
    return arrays, labelled[0][1] if labelled else None


def _column(a: np.ndarray, dtype, name: str, j: int | None, check) -> np.ndarray:
    """One column, ready for a kernel, after the per-column checks.

    Checks and conversions run per column so a big panel never needs a second full-size
    temporary. The column is made contiguous and writeable: a read-only array (pandas
    copy-on-write) would compile a second signature of every kernel.
    """
    if a.dtype != dtype or not a.flags.c_contiguous or not a.flags.writeable:
        a = np.array(a, dtype=dtype, order="C")
    where = "" if j is None else f", column {j}"
    inf = np.isinf(a)
    if inf.any():
        raise DataError(f"`{name}` contains ±inf (first at bar {int(np.argmax(inf))}{where}); use NaN "
                        "for a bar the symbol does not have")
    if check is not None:
        check(a, name, where)
    return a


def _apply(kernel, names: list[str], arrays: list[np.ndarray], params: tuple, n_out: int, check):
    """Run a 1-D kernel on 1-D arrays, or per column on 2-D arrays."""
    # one dtype for all inputs: a float32/float64 mix would compile another kernel signature
    dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
    if arrays[0].ndim == 1:
        res = kernel(*[_column(a, dtype, k, None, check) for k, a in zip(names, arrays)], *params)
        return [res] if n_out == 1 else list(res)
    n_bars, n_cols = arrays[0].shape
    outs = [np.empty((n_bars, n_cols), np.float64, order="F") for _ in range(n_out)]
    for j in range(n_cols):
        res = kernel(*[_column(a[:, j], dtype, k, j, check) for k, a in zip(names, arrays)], *params)
        for out, r in zip(outs, [res] if n_out == 1 else res):
            out[:, j] = r
    return outs


def _wrap(out: np.ndarray, labels):
    if labels is None:
        return out
    if labels[0] == "series":
        return pd.Series(out, index=labels[1], name=labels[2])
    return pd.DataFrame(out, index=labels[1], columns=labels[2])


def _run(kernel, inputs: dict[str, Any], params: tuple = (), n_out: int = 1, check=None):
    arrays, labels = _prepare(inputs)
    outs = [_wrap(o, labels) for o in _apply(kernel, list(inputs), arrays, params, n_out, check)]
    return outs[0] if n_out == 1 else outs


# ---------------------------------------------------------------------------- indicators

def sma(x, n):
    """Simple moving average: the mean of the last `n` valid values.

    Parameters
    ----------
    x : ndarray, Series or DataFrame
        Prices, 1-D (bars) or 2-D (bars × symbols); NaN where a symbol has no bar.
    n : int
        Window length in valid bars, >= 1.

    Returns
    -------
    Same type and shape as `x`, float64; NaN at NaN bars and for the first ``n - 1``
    valid bars.

    Examples
    --------
    >>> import pandas as pd
    >>> sma(pd.Series([1.0, 2.0, 3.0, 4.0]), 3).tolist()
    [nan, nan, 2.0, 3.0]
    """
    return _run(_k.sma_nb, {"x": x}, (_check_window(n),))


def ema(x, n):
    """Exponential moving average, alpha = 2/(n+1), seeded with the first valid value.

    Matches pandas ``ewm(span=n, adjust=False, min_periods=n)`` over the valid values.

    Parameters
    ----------
    x : ndarray, Series or DataFrame
        Prices, 1-D or 2-D (bars × symbols); NaN where a symbol has no bar.
    n : int
        Span in valid bars, >= 1; the first ``n - 1`` valid bars are NaN.

    Returns
    -------
    Same type and shape as `x`, float64.

    Examples
    --------
    >>> import numpy as np
    >>> ema(np.array([1.0, 2.0, 3.0]), 1)
    array([1., 2., 3.])
    """
    return _run(_k.ema_nb, {"x": x}, (_check_window(n),))


def rsi(x, n=14):
    """Wilder's relative strength index, 0..100.

    Average gain and loss are Wilder-smoothed (``ewm(alpha=1/n, adjust=False)``) deltas
    between consecutive valid closes; the first value is at the (n+1)-th valid bar. No
    losses in the averages gives 100; no moves at all gives 50.

    Parameters
    ----------
    x : ndarray, Series or DataFrame
        Closes, 1-D or 2-D (bars × symbols); NaN where a symbol has no bar.
    n : int, default 14
        Smoothing length in valid bars, >= 1.

    Returns
    -------
    Same type and shape as `x`, float64.

    Examples
    --------
    >>> import numpy as np
    >>> rsi(np.array([1.0, 2.0, 3.0, 2.0]), 2)
    array([ nan,  nan, 100.,  50.])
    """
    return _run(_k.rsi_nb, {"x": x}, (_check_window(n),))


def atr(high, low, close, n=14):
    """Wilder's average true range.

    True range = max(high - low, |high - prev close|, |low - prev close|) with the
    previous *valid* close (high - low on the first valid bar), smoothed with
    ``ewm(alpha=1/n, adjust=False)``; the first value is at the n-th valid bar. A bar is
    valid when high, low and close are all finite.

    Parameters
    ----------
    high, low, close : ndarray, Series or DataFrame
        Same shape, 1-D or 2-D (bars × symbols). Pandas inputs must share index/columns.
    n : int, default 14
        Smoothing length in valid bars, >= 1.

    Returns
    -------
    Same type and shape as the inputs, float64 (labels of the first pandas input).

    Examples
    --------
    >>> import numpy as np
    >>> atr(np.array([11.0, 12.0]), np.array([9.0, 11.0]), np.array([10.0, 11.5]), 1)
    array([2., 2.])
    """
    return _run(_k.atr_nb, {"high": high, "low": low, "close": close}, (_check_window(n),))


def bollinger(x, n=20, k=2.0):
    """Bollinger bands: mid = SMA(n), bands = mid ± k · population std (ddof=0).

    Parameters
    ----------
    x : ndarray, Series or DataFrame
        Prices, 1-D or 2-D (bars × symbols); NaN where a symbol has no bar.
    n : int, default 20
        Window length in valid bars, >= 1.
    k : float, default 2.0
        Band width in standard deviations, > 0.

    Returns
    -------
    Bollinger
        Named tuple ``(mid, upper, lower)``, each the same type and shape as `x`.

    Examples
    --------
    >>> import numpy as np
    >>> mid, upper, lower = bollinger(np.array([1.0, 3.0]), 2, k=1.0)
    >>> mid, upper, lower
    (array([nan,  2.]), array([nan,  3.]), array([nan,  1.]))
    """
    n, k = _check_window(n), _check_k(k)
    return Bollinger(*_run(_k.bollinger_nb, {"x": x}, (n, k), n_out=3))


def donchian(high, low, n=20):
    """Donchian channel: highest high and lowest low of the last `n` valid bars.

    The current bar is included. A bar is valid when both high and low are finite.

    Parameters
    ----------
    high, low : ndarray, Series or DataFrame
        Same shape, 1-D or 2-D (bars × symbols). Pandas inputs must share index/columns.
    n : int, default 20
        Window length in valid bars, >= 1.

    Returns
    -------
    Donchian
        Named tuple ``(upper, lower)``, each the same type and shape as the inputs.

    Examples
    --------
    >>> import numpy as np
    >>> upper, lower = donchian(np.array([2.0, 4.0, 3.0]), np.array([1.0, 2.0, 0.5]), 2)
    >>> upper, lower
    (array([nan,  4.,  4.]), array([nan, 1. , 0.5]))
    """
    return Donchian(*_run(_k.donchian_nb, {"high": high, "low": low}, (_check_window(n),), n_out=2))


def roc(x, n):
    """Rate of change: ``x_t / x_(n valid bars earlier) - 1``.

    Parameters
    ----------
    x : ndarray, Series or DataFrame
        Prices, 1-D or 2-D (bars × symbols); NaN where a symbol has no bar.
    n : int
        Lookback in valid bars, >= 1; the first `n` valid bars are NaN.

    Returns
    -------
    Same type and shape as `x`, float64.

    Examples
    --------
    >>> import numpy as np
    >>> roc(np.array([100.0, np.nan, 110.0, 121.0]), 1).round(6)
    array([nan, nan, 0.1, 0.1])
    """
    return _run(_k.roc_nb, {"x": x}, (_check_window(n),))


def rolling_volatility(x, n):
    """Sample standard deviation (ddof=1) of the last `n` log returns.

    Returns are ``log(x_t / x_prev)`` between consecutive valid bars, so `n` returns need
    ``n + 1`` valid prices. Not annualised: multiply by ``sqrt(252)`` for daily bars.

    Parameters
    ----------
    x : ndarray, Series or DataFrame
        Positive prices, 1-D or 2-D (bars × symbols); NaN where a symbol has no bar.
    n : int
        Number of returns, >= 2 (a sample std of one return is undefined).

    Returns
    -------
    Same type and shape as `x`, float64.

    Examples
    --------
    >>> import numpy as np
    >>> rolling_volatility(np.array([1.0, 2.0, 4.0, 8.0]), 2)
    array([nan, nan,  0.,  0.])
    """
    n = _check_window(n, minimum=2, why="; a sample std of a single return is undefined")
    return _run(_k.rolling_volatility_nb, {"x": x}, (n,), check=_check_positive)


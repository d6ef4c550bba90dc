"""Indicator kernels against slow, obviously-correct references, plus the public wrappers.

The reference for a series is "drop the NaN bars, compute with pandas (or plain Python),
put the result back on the original bars": indicators run over a symbol's own valid bars.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pitools.engine import indicators as ind
from pitools.errors import DataError
from pitools.kernels import indicators as K

N_BARS = 300
NS = [1, 2, 5, 14, 50, 260, 400]  # 260: more than the valid bars of some gap patterns; 400: of all
DTYPES = [np.float64, np.float32]


# ---------------------------------------------------------------------------- data

def _walk(seed: int, start: float, sigma: float) -> dict[str, np.ndarray]:
    """A seeded geometric random walk with consistent high/low around the close."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(rng.normal(0.0, sigma, N_BARS)))
    prev = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(prev, close) * (1 + np.abs(rng.normal(0.0, sigma / 2, N_BARS)))
    low = np.minimum(prev, close) * (1 - np.abs(rng.normal(0.0, sigma / 2, N_BARS)))
    return {"high": high, "low": low, "close": close}


PRICES = {
    "walk100": _walk(1, 100.0, 0.02),
    "walk5000_tiny": _walk(2, 5000.0, 1e-5),  # tiny moves on a big level: numerical stability
}

_INTERIOR = [17, *range(60, 65), 101, *range(150, 162), 200]  # isolated and multi-bar gaps
GAPS = {
    "none": [],
    "leading": list(range(40)),              # late listing
    "trailing": list(range(N_BARS - 25, N_BARS)),  # delisting
    "interior": _INTERIOR,
    "all": list(range(40)) + _INTERIOR + list(range(N_BARS - 25, N_BARS)),
}
# bars where only one OHLC field is missing (the bar is then invalid for indicators using it)
_PARTIAL = {"close": [80, 81], "high": [120], "low": [240]}


def _data(prices: str, gaps: str, dtype) -> dict[str, np.ndarray]:
    out = {}
    for field, values in PRICES[prices].items():
        a = values.copy()
        a[GAPS[gaps]] = np.nan
        if gaps != "none":
            a[_PARTIAL[field]] = np.nan
        out[field] = a.astype(dtype)
    return out


# ---------------------------------------------------------------------------- references

def _on_valid(x: np.ndarray, f) -> np.ndarray:
    s = pd.Series(np.asarray(x, dtype=np.float64))
    return f(s.dropna()).reindex(s.index).to_numpy()


def _exact_std(x: np.ndarray, n: int, ddof: int) -> np.ndarray:
    """Two-pass std of every window with math.fsum: slow and exact."""
    def f(c: pd.Series) -> pd.Series:
        v = c.to_list()
        out = [math.nan] * len(v)
        for j in range(n - 1, len(v)):
            w = v[j - n + 1:j + 1]
            mean = math.fsum(w) / n
            out[j] = math.sqrt(math.fsum((a - mean) ** 2 for a in w) / (n - ddof)) if n > ddof else math.nan
        return pd.Series(out, index=c.index)
    return _on_valid(x, f)


def ref_sma(x, n):
    return _on_valid(x, lambda c: c.rolling(n).mean())


def ref_ema(x, n):
    return _on_valid(x, lambda c: c.ewm(span=n, adjust=False, min_periods=n).mean())


def ref_rsi(x, n):
    def f(c):
        d = c.diff()
        gain = d.clip(lower=0)
        loss = (-d).clip(lower=0)
        ag = gain.ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
        al = loss.ewm(alpha=1 / n, adjust=False, min_periods=n).mean()
        rsi = 100 - 100 / (1 + ag / al)
        rsi[(al == 0) & (ag > 0)] = 100.0
        rsi[(al == 0) & (ag == 0)] = 50.0
        return rsi
    return _on_valid(x, f)


def ref_atr(high, low, close, n):
    df = pd.DataFrame({"h": high, "l": low, "c": close}).astype(np.float64)
    ok = df.notna().all(axis=1)
    v = df[ok]
    pc = v["c"].shift(1)
    tr = pd.concat([v["h"] - v["l"], (v["h"] - pc).abs(), (v["l"] - pc).abs()], axis=1).max(axis=1)
    if len(tr):
        tr.iloc[0] = v["h"].iloc[0] - v["l"].iloc[0]
    return tr.ewm(alpha=1 / n, adjust=False, min_periods=n).mean().reindex(df.index).to_numpy()


def ref_rolling_std(x, n):
    return _exact_std(x, n, 0)


def ref_bollinger(x, n, k):
    mid, std = ref_sma(x, n), ref_rolling_std(x, n)
    return mid, mid + k * std, mid - k * std


def ref_rolling_max(x, n):
    return _on_valid(x, lambda c: c.rolling(n).max())


def ref_rolling_min(x, n):
    return _on_valid(x, lambda c: c.rolling(n).min())


def ref_donchian(high, low, n):
    df = pd.DataFrame({"h": high, "l": low}).astype(np.float64)
    v = df[df.notna().all(axis=1)]
    return (v["h"].rolling(n).max().reindex(df.index).to_numpy(),
            v["l"].rolling(n).min().reindex(df.index).to_numpy())


def ref_roc(x, n):
    return _on_valid(x, lambda c: c / c.shift(n) - 1)


def ref_rolling_volatility(x, n):
    return _on_valid(x, lambda c: np.log(c / c.shift(1)).rolling(n).std(ddof=1))


# name -> (kernel call, reference call); both take the dict of OHLC arrays and n
CASES = {
    "sma": (lambda d, n: K.sma_nb(d["close"], n), lambda d, n: ref_sma(d["close"], n)),
    "ema": (lambda d, n: K.ema_nb(d["close"], n), lambda d, n: ref_ema(d["close"], n)),
    "rsi": (lambda d, n: K.rsi_nb(d["close"], n), lambda d, n: ref_rsi(d["close"], n)),
    "atr": (lambda d, n: K.atr_nb(d["high"], d["low"], d["close"], n),
            lambda d, n: ref_atr(d["high"], d["low"], d["close"], n)),
    "rolling_std": (lambda d, n: K.rolling_std_nb(d["close"], n), lambda d, n: ref_rolling_std(d["close"], n)),
    "bollinger": (lambda d, n: K.bollinger_nb(d["close"], n, 1.5), lambda d, n: ref_bollinger(d["close"], n, 1.5)),
    "rolling_max": (lambda d, n: K.rolling_max_nb(d["close"], n), lambda d, n: ref_rolling_max(d["close"], n)),
    "rolling_min": (lambda d, n: K.rolling_min_nb(d["close"], n), lambda d, n: ref_rolling_min(d["close"], n)),
    "donchian": (lambda d, n: K.donchian_nb(d["high"], d["low"], n),
                 lambda d, n: ref_donchian(d["high"], d["low"], n)),
    "roc": (lambda d, n: K.roc_nb(d["close"], n), lambda d, n: ref_roc(d["close"], n)),
    "rolling_volatility": (lambda d, n: K.rolling_volatility_nb(d["close"], n),
                           lambda d, n: ref_rolling_volatility(d["close"], n)),
}


def assert_matches(got, want, rtol=1e-9):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == np.float64
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN positions differ")
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=rtol, atol=0)


def _as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


# ---------------------------------------------------------------------------- against references

@pytest.mark.parametrize("gaps", list(GAPS))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("n", NS)
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_reference(name, n, dtype, gaps):
    kernel, reference = CASES[name]
    for prices in PRICES:
        data = _data(prices, gaps, dtype)
        # the reference sees the very same values, upcast: kernels accumulate in float64
        want = _as_tuple(reference({k: v.astype(np.float64) for k, v in data.items()}, n))
        got = _as_tuple(kernel(data, n))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_matches(g, w)


@pytest.mark.parametrize("n", [2, 5, 20, 100])
def test_rolling_std_matches_pandas_on_ordinary_prices(n):
    x = _data("walk100", "all", np.float64)["close"]
    assert_matches(K.rolling_std_nb(x, n), _on_valid(x, lambda c: c.rolling(n).std(ddof=0)))


def test_rolling_std_stays_exact_where_pandas_does_not():
    # level 1e4, relative moves 1e-6: the naive sum of squares loses about 8 digits here
    rng = np.random.default_rng(5)
    x = 1e4 * np.exp(np.cumsum(rng.normal(0.0, 1e-6, 5000)))
    for n in (2, 3, 20, 200):
        assert_matches(K.rolling_std_nb(x, n), _exact_std(x, n, 0), rtol=1e-9)


def test_sma_does_not_drift_after_a_level_change():
    # a running sum keeps the rounding error of 1e9-sized values after the level drops to ~1
    rng = np.random.default_rng(9)
    x = np.concatenate([1e9 + rng.normal(0, 1e3, 2000), 1.0 + rng.normal(0, 1e-3, 2000)])
    v, n = x.tolist(), 10
    want = [math.nan] * (n - 1) + [math.fsum(v[j - n + 1:j + 1]) / n for j in range(n - 1, len(v))]
    assert_matches(K.sma_nb(x, n), np.array(want), rtol=1e-12)


def test_kernels_accept_all_nan_and_empty_input():
    for x in (np.full(7, np.nan), np.empty(0)):
        d = {"high": x, "low": x, "close": x}
        for name, (kernel, _) in CASES.items():
            for r in _as_tuple(kernel(d, 3)):
                assert r.shape == x.shape and np.isnan(r).all(), name


def test_rsi_edge_values():
    assert K.rsi_nb(np.array([5.0, 5.0, 5.0, 5.0]), 2)[-1] == 50.0   # no moves at all
    assert K.rsi_nb(np.array([1.0, 2.0, 3.0, 4.0]), 2)[-1] == 100.0  # no losses
    assert K.rsi_nb(np.array([4.0, 3.0, 2.0, 1.0]), 2)[-1] == 0.0    # no gains


def test_rolling_volatility_needs_two_returns():
    x = PRICES["walk100"]["close"]
    assert np.isnan(K.rolling_volatility_nb(x, 1)).all()  # like pandas: a sample std of one value


# ---------------------------------------------------------------------------- properties

_price = st.floats(0.5, 5000.0, allow_nan=False, allow_infinity=False)
_cell = st.one_of(_price, _price, _price, st.just(math.nan))  # about one bar in four missing


@st.composite
def _series(draw, max_size=60):
    values = draw(st.lists(_cell, max_size=max_size))
    dtype = draw(st.sampled_from(DTYPES))
    return np.array(values, dtype=np.float64).astype(dtype)


@st.composite
def _ohlc(draw, max_size=60):
    close = draw(_series(max_size=max_size))
    m = len(close)
    up = np.array(draw(st.lists(st.floats(0.0, 0.2), min_size=m, max_size=m)))
    down = np.array(draw(st.lists(st.floats(0.0, 0.2), min_size=m, max_size=m)))
    high = (close * (1 + up)).astype(close.dtype)
    low = (close * (1 - down)).astype(close.dtype)
    holes = draw(st.lists(st.integers(0, max(m - 1, 0)), max_size=3)) if m else []
    high[holes] = np.nan  # a bar with a close but no high
    return {"high": high, "low": low, "close": close}


_n = st.integers(1, 20)
_SETTINGS = settings(max_examples=60, deadline=None)


@_SETTINGS
@given(_series(), _n)
def test_rolling_min_and_max_bracket_the_value(x, n):
    lo, hi = K.rolling_min_nb(x, n), K.rolling_max_nb(x, n)
    ok = ~np.isnan(hi)
    assert np.array_equal(ok, ~np.isnan(lo))
    v = x.astype(np.float64)
    assert (lo[ok] <= v[ok]).all() and (v[ok] <= hi[ok]).all()


@_SETTINGS
@given(st.lists(st.booleans(), max_size=60), _price, _n, st.sampled_from(DTYPES))
@example([False] * 8, 0.7, 3, np.float64)  # 0.7 + 0.7 + 0.7 == 2.0999999999999996: a plain mean is off
def test_sma_of_a_constant_is_the_constant(missing, value, n, dtype):
    x = np.where(missing, np.nan, value).astype(dtype)
    c = np.float64(dtype(value))
    out, std = K.sma_nb(x, n), K.rolling_std_nb(x, n)
    done = ~np.isnan(out)
    assert done.sum() == max(0, (~np.array(missing, dtype=bool)).sum() - (n - 1))
    assert (out[done] == c).all()
    assert (std[done] == 0.0).all()


@_SETTINGS
@given(_series(), _n)
def test_rsi_is_between_0_and_100(x, n):
    r = K.rsi_nb(x, n)
    r = r[~np.isnan(r)]
    assert ((r >= 0) & (r <= 100)).all()


@_SETTINGS
@given(_ohlc(), _n)
def test_atr_is_not_negative(d, n):
    a = K.atr_nb(d["high"], d["low"], d["close"], n)
    assert (a[~np.isnan(a)] >= 0).all()


@_SETTINGS
@given(_series(), _n, st.floats(0.1, 4.0))
def test_bollinger_bands_are_ordered(x, n, k):
    mid, upper, lower = K.bollinger_nb(x, n, k)
    ok = ~np.isnan(mid)
    assert np.array_equal(ok, ~np.isnan(upper)) and np.array_equal(ok, ~np.isnan(lower))
    assert (lower[ok] <= mid[ok]).all() and (mid[ok] <= upper[ok]).all()


# warm-up in valid bars: how many valid bars give no value yet
_WARMUP = {"sma": lambda n: n - 1, "ema": lambda n: n - 1, "rsi": lambda n: n, "rolling_std": lambda n: n - 1,
           "bollinger": lambda n: n - 1, "rolling_max": lambda n: n - 1, "rolling_min": lambda n: n - 1,
           "roc": lambda n: n, "rolling_volatility": lambda n: n}


@_SETTINGS
@given(_series(), st.integers(2, 20))
def test_warm_up_is_counted_in_valid_bars(x, n):
    valid = np.isfinite(x)
    for name, warm in _WARMUP.items():
        for r in _as_tuple(CASES[name][0]({"close": x}, n)):
            assert np.isnan(r[~valid]).all(), name
            assert (~np.isnan(r)).sum() == max(0, valid.sum() - warm(n)), name


@_SETTINGS
@given(_ohlc(), _n, st.data())
def test_no_lookahead(d, n, data):
    m = len(d["close"])
    if m == 0:
        return
    t = data.draw(st.integers(0, m - 1))
    cut = {k: v[:t + 1] for k, v in d.items()}
    for name, (kernel, _) in CASES.items():
        for full, part in zip(_as_tuple(kernel(d, n)), _as_tuple(kernel(cut, n))):
            np.testing.assert_array_equal(full[:t + 1], part, err_msg=name)


# ---------------------------------------------------------------------------- wrappers

WRAPPERS = {
    "sma": lambda h, l, c: ind.sma(c, 5),
    "ema": lambda h, l, c: ind.ema(c, 5),
    "rsi": lambda h, l, c: ind.rsi(c, 5),
    "atr": lambda h, l, c: ind.atr(h, l, c, 5),
    "bollinger": lambda h, l, c: ind.bollinger(c, 5, 2.0),
    "donchian": lambda h, l, c: ind.donchian(h, l, 5),
    "roc": lambda h, l, c: ind.roc(c, 5),
    "rolling_volatility": lambda h, l, c: ind.rolling_volatility(c, 5),
}
KERNELS = {
    "sma": lambda h, l, c: K.sma_nb(c, 5),
    "ema": lambda h, l, c: K.ema_nb(c, 5),
    "rsi": lambda h, l, c: K.rsi_nb(c, 5),
    "atr": lambda h, l, c: K.atr_nb(h, l, c, 5),
    "bollinger": lambda h, l, c: K.bollinger_nb(c, 5, 2.0),
    "donchian": lambda h, l, c: K.donchian_nb(h, l, 5),
    "roc": lambda h, l, c: K.roc_nb(c, 5),
    "rolling_volatility": lambda h, l, c: K.rolling_volatility_nb(c, 5),
}


def _panel(dtype=np.float64, order="C"):
    """40 bars × 3 symbols with ragged histories."""
    cols = [_data(p, g, dtype) for p, g in (("walk100", "none"), ("walk100", "all"), ("walk5000_tiny", "interior"))]
    return tuple(np.array(np.stack([c[f][:40] for c in cols], axis=1), order=order)
                 for f in ("high", "low", "close"))


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("name", list(WRAPPERS))
def test_wrapper_2d_is_per_column(name, order):
    h, l, c = _panel(order=order)
    got = _as_tuple(WRAPPERS[name](h, l, c))
    for j in range(c.shape[1]):
        want = _as_tuple(KERNELS[name](*(np.ascontiguousarray(a[:, j]) for a in (h, l, c))))
        for g, w in zip(got, want):
            assert g.shape == c.shape and g.dtype == np.float64
            np.testing.assert_array_equal(g[:, j], w)


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_wrapper_1d_numpy(name):
    h, l, c = (a[:, 1] for a in _panel(np.float32))
    for g, w in zip(_as_tuple(WRAPPERS[name](h, l, c)), _as_tuple(KERNELS[name](h, l, c))):
        assert isinstance(g, np.ndarray) and g.dtype == np.float64
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", list(WRAPPERS))
def test_wrapper_keeps_pandas_labels(name):
    h, l, c = _panel()
    idx = pd.bdate_range("2024-01-02", periods=len(c), name="date")
    cols = pd.Index(["AAA", "BBB", "CCC"], name="symbol")
    frames = [pd.DataFrame(a, index=idx, columns=cols) for a in (h, l, c)]
    for g, w in zip(_as_tuple(WRAPPERS[name](*frames)), _as_tuple(WRAPPERS[name](h, l, c))):
        assert isinstance(g, pd.DataFrame)
        assert g.index.equals(idx) and g.columns.equals(cols) and g.index.name == "date"
        np.testing.assert_array_equal(g.to_numpy(), w)
    series = [f["BBB"] for f in frames]
    for g, w in zip(_as_tuple(WRAPPERS[name](*series)), _as_tuple(WRAPPERS[name](h[:, 1], l[:, 1], c[:, 1]))):
        assert isinstance(g, pd.Series) and g.index.equals(idx) and g.name == "BBB"
        np.testing.assert_array_equal(g.to_numpy(), w)


def test_wrapper_results_are_named_tuples():
    c = _panel()[2][:, 0]
    bands = ind.bollinger(c, 5, k=2.0)
    assert isinstance(bands, ind.Bollinger) and bands.mid is bands[0]
    upper, lower = ind.donchian(c, c, 5)
    assert np.array_equal(upper, ind.donchian(c, c, 5).upper, equal_nan=True)


def test_wrapper_converts_integers_nullable_and_lists():
    np.testing.assert_array_equal(ind.sma(np.arange(1, 6), 2), [np.nan, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_array_equal(ind.sma([1, 2, 3], 2), [np.nan, 1.5, 2.5])
    s = pd.Series([1.0, None, 3.0, 5.0], dtype="Float64")
    assert ind.sma(s, 2).tolist()[1:] == [pytest.approx(math.nan, nan_ok=True), 2.0, 4.0]
    df = pd.DataFrame({"a": pd.Series([1, 2, 3], dtype="Int64"), "b": np.array([1.0, 2.0, 4.0], np.float32)})
    assert ind.sma(df, 2)["b"].tolist()[1:] == [1.5, 3.0]


_x = np.linspace(100.0, 110.0, 30)
_x2 = np.ones((30, 2))
_df = pd.DataFrame(_x2, columns=["a", "b"])

BAD = [
    ("n", lambda: ind.sma(_x, 0)),
    ("n", lambda: ind.sma(_x, -3)),
    ("n", lambda: ind.ema(_x, 2.5)),
    ("n", lambda: ind.rsi(_x, True)),
    ("n", lambda: ind.roc(_x, "5")),
    ("n", lambda: ind.atr(_x, _x, _x, None)),
    ("n", lambda: ind.donchian(_x, _x, 0)),
    ("n", lambda: ind.rolling_volatility(_x, 1)),
    ("k", lambda: ind.bollinger(_x, 5, 0)),
    ("k", lambda: ind.bollinger(_x, 5, -1.0)),
    ("k", lambda: ind.bollinger(_x, 5, math.nan)),
    ("k", lambda: ind.bollinger(_x, 5, math.inf)),
    ("k", lambda: ind.bollinger(_x, 5, True)),
    ("k", lambda: ind.bollinger(_x, 5, "2")),
    ("low", lambda: ind.atr(_x, _x[:-1], _x, 5)),
    ("close", lambda: ind.atr(_x, _x, _x2, 5)),
    ("low", lambda: ind.donchian(_x2, _x, 5)),
    ("low", lambda: ind.donchian(_df, _df.set_axis(["a", "c"], axis=1), 5)),
    ("low", lambda: ind.donchian(_df["a"], _df["a"].set_axis(range(1, 31)), 5)),
    ("x", lambda: ind.sma(np.ones((3, 3, 3)), 2)),
    ("x", lambda: ind.sma(np.float64(3.0), 2)),
    ("x", lambda: ind.sma("prices", 2)),
    ("x", lambda: ind.sma({"a": 1}, 2)),
    ("x", lambda: ind.sma(np.array([True, False]), 1)),
    ("x", lambda: ind.sma(np.array(["1", "2"]), 1)),
    ("x", lambda: ind.sma(np.array([1 + 2j]), 1)),
    ("x", lambda: ind.sma(pd.Series(["a", "b"]), 1)),
    ("x", lambda: ind.sma(pd.DataFrame({"a": [1.0], "b": ["x"]}), 1)),
    ("x", lambda: ind.sma(np.array([1.0, np.inf, 2.0]), 1)),
    ("high", lambda: ind.atr(np.array([1.0, -np.inf]), np.ones(2), np.ones(2), 1)),
    ("x", lambda: ind.rolling_volatility(np.array([1.0, 0.0, 2.0]), 2)),
    ("x", lambda: ind.rolling_volatility(np.array([1.0, 2.0, -2.0]), 2)),
]


@pytest.mark.parametrize("arg,call", BAD, ids=[f"{i}-{a}" for i, (a, _) in enumerate(BAD)])
def test_bad_input_raises_data_error_naming_the_argument(arg, call):
    with pytest.raises(DataError, match=f"`{arg}`") as err:
        call()
    assert isinstance(err.value, ValueError)  # DataError is also a ValueError


def test_bad_scalar_is_shown_with_repr():
    with pytest.raises(DataError, match=r"`n` = 2\.5 must be an integer >= 1"):
        ind.sma(_x, 2.5)
    with pytest.raises(DataError, match=r"`k` = '2'"):
        ind.bollinger(_x, 5, "2")


def test_bad_cell_of_a_panel_is_located():
    x = np.ones((10, 3))
    x[4, 2] = -np.inf
    with pytest.raises(DataError, match=r"`x` contains ±inf \(first at bar 4, column 2\)"):
        ind.sma(x, 2)
    x[4, 2] = 0.0
    with pytest.raises(DataError, match=r"`x` must hold positive prices.*bar 4, column 2"):
        ind.rolling_volatility(x, 2)


def test_mixed_float_dtypes_are_computed_in_float64():
    h, l, c = _panel()
    got = ind.atr(h.astype(np.float32), l, c, 5)
    np.testing.assert_array_equal(got, ind.atr(h.astype(np.float32).astype(np.float64), l, c, 5))


def test_numpy_integer_window_is_accepted():
    np.testing.assert_array_equal(ind.sma(_x, np.int64(3)), ind.sma(_x, 3))


def test_kernels_package_does_not_import_numba():
    code = "import sys, pitools.kernels; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

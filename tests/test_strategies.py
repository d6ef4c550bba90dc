"""The eight strategies: registry, parameter checks, signal kernels against references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pitools as pt
from conftest import random_ohlc
from pitools.errors import DataError
from pitools.kernels import signals

EIGHT = ["sma_cross", "macd", "rsi_reversion", "bollinger_reversion", "donchian_breakout", "atr_breakout",
         "ts_momentum", "xs_momentum"]


def ohlc(n=400, seed=3, gaps=True):
    return random_ohlc(n, seed, 80.0, 0.003, (slice(None, 15), slice(100, 104), 250) if gaps else ())


def test_registry_has_the_eight_with_spaces_and_defaults_that_validate():
    assert pt.strategies.names() == EIGHT
    for name in EIGHT:
        s = pt.strategies.get(name)
        assert s.space and s.validate(None) == s.defaults
        for p in s.space.values():
            assert p.low <= p.default <= p.high and p.kind in ("int", "float")
    assert pt.strategies.get("xs_momentum").portfolio_level


@pytest.mark.parametrize("name,params,fragment", [
    ("sma_cross", {"fast": 30, "slow": 10}, "`fast` must be < `slow`"),
    ("sma_cross", {"fast": 1}, "`fast` = 1 is out of range"),
    ("sma_cross", {"fast": 10.5}, "integer"),
    ("sma_cross", {"fsat": 10}, "Did you mean 'fast'"),
    ("rsi_reversion", {"lower": 60}, "`lower` = 60 is out of range: allowed 5 to 50"),
    ("bollinger_reversion", {"k": "2"}, "`k` = '2'"),
    ("donchian_breakout", {"entry": 10, "exit": 20}, "`exit` must be <= `entry`"),
])
def test_bad_parameters_are_named(name, params, fragment):
    with pytest.raises(DataError, match=fragment.replace("(", r"\(")):
        pt.strategies.get(name).validate(params)


def test_unknown_strategy_suggests_close_names():
    with pytest.raises(DataError, match="unknown strategy 'sma_cros'.*'sma_cross'"):
        pt.strategies.get("sma_cros")


def run(name, o, h, lo, c, params=None):
    s = pt.strategies.get(name)
    p = np.array(list(s.validate(params).values()))
    return s.signal_kernel()(o, h, lo, c, p)


@pytest.mark.parametrize("name", EIGHT[:-1])
def test_no_lookahead_and_no_signal_on_missing_bars(name):
    o, h, lo, c = ohlc()
    full, trail = run(name, o, h, lo, c)
    for cut in (40, 101, 251, 399):
        part, _ = run(name, o[:cut], h[:cut], lo[:cut], c[:cut])
        np.testing.assert_array_equal(full[:cut], part)
    assert np.isnan(full[np.isnan(c)]).all()
    assert np.isfinite(full).sum() > 10
    assert trail.shape[0] in (0, len(c))


def test_sma_cross_against_pandas():
    o, h, lo, c = ohlc()
    s = pd.Series(c).dropna()
    ref = np.sign(s.rolling(7).mean() - s.rolling(25).mean()).reindex(range(len(c))).to_numpy()
    got, _ = run("sma_cross", o, h, lo, c, {"fast": 7, "slow": 25})
    np.testing.assert_array_equal(got, ref)


def test_ts_momentum_against_pandas():
    o, h, lo, c = ohlc()
    s = pd.Series(c).dropna()
    ref = np.sign(s / s.shift(60) - 1).reindex(range(len(c))).to_numpy()
    got, _ = run("ts_momentum", o, h, lo, c, {"lookback": 60})
    np.testing.assert_array_equal(got, ref)


def test_xs_momentum_against_a_plain_ranking():
    rng = np.random.default_rng(5)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (300, 12)), axis=0))
    close[:80, 3] = np.nan  # a late listing
    got = signals.xs_momentum_nb(np.asfortranarray(close), np.array([40.0, 3.0, 20.0]))
    ret = pd.DataFrame(close).apply(lambda s: s.dropna() / s.dropna().shift(40) - 1)
    start = int(np.flatnonzero(ret.notna().sum(axis=1).to_numpy() >= 3)[0])
    for t in range(len(close)):
        if t < start or (t - start) % 20:
            assert np.isnan(got[t]).all()
            continue
        r = ret.iloc[t].dropna().sort_values(kind="mergesort")
        top, bottom = set(r.index[-3:]), set(r.index[:3])
        for j in range(12):
            assert got[t, j] == (1.0 if j in top else -1.0 if j in bottom else 0.0), (t, j)


@settings(max_examples=25, deadline=None)
@given(fast=st.integers(2, 30), gap=st.integers(20, 380))
def test_a_gap_does_not_change_what_the_symbol_sees(fast, gap):
    """Signals over a series with a missing bar equal those over the series without that bar."""
    o, h, lo, c = ohlc(gaps=False)
    holed = [a.copy() for a in (o, h, lo, c)]
    for a in holed:
        a[gap] = np.nan
    full, _ = run("sma_cross", *holed, {"fast": fast, "slow": fast + 10})
    keep = np.arange(len(c)) != gap
    compressed, _ = run("sma_cross", o[keep], h[keep], lo[keep], c[keep], {"fast": fast, "slow": fast + 10})
    np.testing.assert_array_equal(full[keep], compressed)


# ---------------------------------------------------------------- parameters as people write them

def test_typed_params_make_integers_integers_and_keep_reals_exact():
    rsi = pt.strategies.get("rsi_reversion")
    checked = rsi.validate({"n": 14, "lower": 19.453824394278428, "upper": 70})  # what the backtest gets
    assert checked == {"n": 14.0, "lower": 19.453824394278428, "upper": 70.0}
    typed = pt.strategies.typed_params("rsi_reversion", checked)
    assert typed == checked and list(typed) == ["n", "lower", "upper"]  # the same values, in the space's order
    assert type(typed["n"]) is int and type(typed["lower"]) is float and type(typed["upper"]) is float
    assert typed["lower"] == 19.453824394278428  # never rounded: what was run
    assert rsi.typed({"upper": np.float64(70.0), "n": np.int64(14)}) == {"n": 14, "upper": 70.0}
    assert type(rsi.typed({"n": np.int64(14)})["n"]) is int
    assert rsi.typed({"n": 14.5}) == {"n": 14.5}  # a fraction in an integer parameter is not changed
    assert pt.strategies.typed_params("not_registered", {"a": np.float64(2.5)}) == {"a": 2.5}
    assert pt.strategies.typed_params("sma_cross", None) == {}
    for name in EIGHT:  # every default, typed, validates back to itself
        s = pt.strategies.get(name)
        typed = s.typed(s.validate(None))
        assert s.validate(typed) == s.defaults
        assert all(isinstance(typed[k], int) == (p.kind == "int") for k, p in s.space.items())


@pytest.mark.parametrize("value,shown", [
    (25.0, "25"), (25, "25"), (19.453824394278428, "19.45"), (2.0361, "2.036"), (0.5, "0.5"), (2.0, "2"),
    (0.30000000000000004, "0.3"), (0.000123456, "0.0001235"), (12345.6, "12350"), (9.99996, "10"),
    (-3.14159, "-3.142"), (0.0, "0"), (np.float64(1.5), "1.5"), (np.int64(7), "7"), (None, "—"),
    (float("nan"), "nan"), ("abc", "abc"),
])
def test_format_value_gives_four_significant_digits_and_no_trailing_zeros(value, shown):
    assert pt.strategies.format_value(value) == shown


def test_format_value_agrees_with_a_reference_rounding():
    rng = np.random.default_rng(4)
    for v in np.r_[rng.uniform(0.5, 95, 200), rng.lognormal(0, 4, 200)]:
        shown = pt.strategies.format_value(float(v))
        assert "e" not in shown
        assert float(shown) == pytest.approx(float(f"{v:.4g}"), rel=1e-12)  # Python's own 4 significant digits
        digits = shown.replace("-", "").replace(".", "").lstrip("0")
        assert len(digits.rstrip("0")) <= 4


def test_format_params_orders_by_the_space_and_writes_integers_plainly():
    assert pt.strategies.format_params({"slow": 30.0, "fast": 10.0}, "sma_cross") == "fast=10, slow=30"
    assert pt.strategies.format_params({"upper": 70.0, "n": 14.0, "lower": 19.453824394278428},
                                       "rsi_reversion") == "n=14, lower=19.45, upper=70"
    assert pt.strategies.format_params({"n": 14, "k": 2.0361}) == "n=14, k=2.036"  # no strategy: as given
    assert pt.strategies.format_params({}, "sma_cross") == "" == pt.strategies.format_params(None)
    from pitools.notebook import charts

    assert charts.format_params({"slow": 30.0, "fast": 10.0}, "sma_cross") == "fast=10, slow=30"

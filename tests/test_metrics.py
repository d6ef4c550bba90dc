"""Metric kernels against slow, obviously-correct pandas / plain-Python references.

The reference for an equity curve is "drop the NaN bars, then compute with pandas":
metrics run over the series' own finite bars, so gaps add no return.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitools.kernels import metrics as M

PPY = 252.0
_SETTINGS = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------------------- references

def _ref_equity_metrics(equity, exposure, ppy: float) -> dict[str, float]:
    """Straight from the definitions with pandas."""
    nan = float("nan")
    eq = pd.Series(np.asarray(equity, dtype=np.float64))
    ex = pd.Series(np.asarray(exposure).astype(bool))
    finite = np.isfinite(eq)
    s = eq[finite]
    if len(s) == 0:
        return dict.fromkeys(M.METRIC_NAMES, nan)
    r = s.pct_change().iloc[1:]
    n = len(r)
    first, last = s.iloc[0], s.iloc[-1]
    total = last / first - 1
    if n == 0:
        cagr = nan
    elif last <= 0:
        cagr = -1.0
    else:
        cagr = (last / first) ** (ppy / n) - 1
    std = r.std(ddof=1) if n >= 2 else nan
    sharpe = r.mean() / std * math.sqrt(ppy) if n >= 2 and std > 0 else nan
    if n > 0:
        ddev = math.sqrt((r.clip(upper=0.0) ** 2).sum() / n)
        sortino = r.mean() / ddev * math.sqrt(ppy) if ddev > 0 else nan
    else:
        sortino = nan
    mdd = float((1 - s / s.cummax()).max())
    calmar = cagr / mdd if mdd > 0 else nan
    return {
        "total_return": total, "cagr": cagr, "sharpe": sharpe, "sortino": sortino,
        "max_drawdown": mdd, "calmar": calmar, "exposure": float(ex[finite].mean()), "n_periods": float(n),
    }


def _ref_trade_metrics(pnl) -> dict[str, float]:
    """A plain Python loop."""
    n = wins = 0
    profit = loss = 0.0
    for p in pnl:
        p = float(p)
        if not math.isfinite(p):
            continue
        n += 1
        if p > 0:
            wins += 1
            profit += p
        elif p < 0:
            loss -= p
    if n == 0:
        return {"n_trades": 0.0, "win_rate": float("nan"), "profit_factor": float("nan")}
    if loss > 0:
        pf = profit / loss
    elif profit > 0:
        pf = float("inf")
    else:
        pf = float("nan")
    return {"n_trades": float(n), "win_rate": wins / n, "profit_factor": pf}


def _kernel(equity, exposure, ppy: float = PPY) -> dict[str, float]:
    return M.metrics_to_dict(M.equity_metrics_nb(equity, exposure, ppy), M.METRIC_NAMES)


def _sharpe_is_noise(equity) -> bool:
    """True when all returns are equal up to rounding: std(r) is then rounding noise
    (~1e-17) and sharpe an arbitrary huge number in the kernel and in pandas alike."""
    e = np.asarray(equity, dtype=np.float64)
    e = e[np.isfinite(e)]
    r = e[1:] / e[:-1] - 1
    return r.size >= 2 and np.ptp(np.round(r, 6)) == 0 and np.ptp(r) > 0


def _drop_sharpe(*dicts: dict) -> None:
    for d in dicts:
        d.pop("sharpe")


def _assert_close(got: dict, want: dict, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    assert list(got) == list(want)
    for k in want:
        g, w = got[k], want[k]
        if math.isnan(w) or math.isinf(w):
            assert (math.isnan(g) and math.isnan(w)) or g == w, (k, g, w)
        else:
            assert math.isclose(g, w, rel_tol=rtol, abs_tol=atol), (k, g, w)


# ---------------------------------------------------------------------------- data

N_BARS = 400
_INTERIOR_GAPS = [17, *range(60, 66), 101, *range(150, 170), 301]


def _walk(seed: int, sigma: float = 0.01, drift: float = 0.0003, start: float = 10_000.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.cumprod(1 + rng.normal(drift, sigma, N_BARS))


def _with_nan(a: np.ndarray, idx) -> np.ndarray:
    a = a.astype(np.float64).copy()
    a[list(idx)] = np.nan
    return a


def _curves() -> dict[str, np.ndarray]:
    up_rng = np.random.default_rng(5)
    up = 1_000.0 * np.cumprod(1 + up_rng.uniform(0.0001, 0.01, N_BARS))
    flat = np.full(N_BARS, 10_000.0)
    return {
        "walk": _walk(1),
        "walk_volatile": _walk(2, sigma=0.05, drift=-0.001),
        "walk_big_level_tiny_moves": _walk(3, sigma=1e-6, drift=1e-7, start=1e7),
        "late_start": _with_nan(_walk(4), range(120)),
        "interior_gaps": _with_nan(_walk(6), _INTERIOR_GAPS),
        "late_start_gaps_trailing": _with_nan(_walk(7), [*range(50), *_INTERIOR_GAPS, *range(380, 400)]),
        "flat": flat,
        "flat_with_gaps": _with_nan(flat, _INTERIOR_GAPS),
        "only_up": up,
        "only_up_gaps": _with_nan(up, [0, 1, *_INTERIOR_GAPS]),
        "wiped_out": np.concatenate([_walk(8)[:200], np.linspace(5_000.0, 0.0, 200)]),
        "single_finite": _with_nan(np.full(N_BARS, 7.0), [i for i in range(N_BARS) if i != 211]),
        "two_finite": _with_nan(_walk(9), [i for i in range(N_BARS) if i not in (10, 390)]),
        "all_nan": np.full(N_BARS, np.nan),
        "empty": np.empty(0),
    }


CURVES = _curves()


def _exposure(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < 0.6


# ---------------------------------------------------------------------------- equity metrics

@pytest.mark.parametrize("dtype", [np.bool_, np.uint8])
@pytest.mark.parametrize("name", list(CURVES))
def test_equity_metrics_match_pandas(name, dtype):
    eq = CURVES[name]
    ex = _exposure(eq.shape[0], seed=len(name)).astype(dtype)
    _assert_close(_kernel(eq, ex), _ref_equity_metrics(eq, ex, PPY))


@pytest.mark.parametrize("ppy", [1.0, 12.0, 52.0, 252.0, 252.0 * 390])
def test_periods_per_year(ppy):
    eq = CURVES["interior_gaps"]
    ex = _exposure(eq.shape[0])
    _assert_close(_kernel(eq, ex, ppy), _ref_equity_metrics(eq, ex, ppy))


def test_edge_cases_spelled_out():
    ex = np.ones(N_BARS, bool)
    flat = _kernel(CURVES["flat_with_gaps"], ex)
    assert flat["total_return"] == 0.0 and flat["cagr"] == 0.0 and flat["max_drawdown"] == 0.0
    assert math.isnan(flat["sharpe"]) and math.isnan(flat["sortino"]) and math.isnan(flat["calmar"])
    assert flat["n_periods"] == N_BARS - len(_INTERIOR_GAPS) - 1

    up = _kernel(CURVES["only_up"], ex)
    assert up["max_drawdown"] == 0.0 and math.isnan(up["calmar"]) and math.isnan(up["sortino"])
    assert up["sharpe"] > 0 and up["cagr"] > 0

    one = _kernel(CURVES["single_finite"], ex)
    assert one["total_return"] == 0.0 and one["n_periods"] == 0.0 and one["max_drawdown"] == 0.0
    assert one["exposure"] == 1.0
    assert all(math.isnan(one[k]) for k in ("cagr", "sharpe", "sortino", "calmar"))

    for name in ("all_nan", "empty"):
        got = M.equity_metrics_nb(CURVES[name], np.ones(CURVES[name].shape[0], bool), PPY)
        assert got.shape == (len(M.METRIC_NAMES),) and np.isnan(got).all()

    wiped = _kernel(CURVES["wiped_out"], ex)
    assert wiped["cagr"] == -1.0 and wiped["total_return"] == -1.0 and wiped["max_drawdown"] == 1.0


def test_gaps_add_no_return():
    """Removing the NaN bars (the compressed series) gives the same return metrics."""
    eq = CURVES["late_start_gaps_trailing"]
    ex = _exposure(eq.shape[0])
    keep = np.isfinite(eq)
    a = M.equity_metrics_nb(eq, ex, PPY)
    b = M.equity_metrics_nb(eq[keep], ex[keep], PPY)
    np.testing.assert_array_equal(a, b)


def test_exposure_counts_only_finite_bars():
    eq = _with_nan(np.full(10, 100.0), [0, 1, 5])  # 7 finite bars
    ex = np.array([1, 1, 1, 0, 1, 1, 0, 0, 1, 0], np.uint8)  # set at finite bars 2, 4, 8
    assert _kernel(eq, ex)["exposure"] == pytest.approx(3 / 7)


def test_constants_and_names():
    assert M.METRIC_NAMES == ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar",
                              "exposure", "n_periods")
    for i, name in enumerate(M.METRIC_NAMES):
        assert getattr(M, name.upper()) == i
    assert M.TRADE_METRIC_NAMES == ("n_trades", "win_rate", "profit_factor")
    for i, name in enumerate(M.TRADE_METRIC_NAMES):
        assert getattr(M, name.upper()) == i
    with pytest.raises(ValueError, match="`values`"):
        M.metrics_to_dict(np.zeros(3), M.METRIC_NAMES)


# ---------------------------------------------------------------------------- properties

_ret_grid = st.one_of(st.just(0.0), st.integers(-300, 300).map(lambda k: k / 1000.0))


@st.composite
def _equity_case(draw, min_size=0, max_size=80):
    """A positive equity curve from returns on a 0.001 grid, with NaN bars, and an exposure."""
    rets = draw(st.lists(_ret_grid, min_size=min_size, max_size=max_size))
    start = draw(st.floats(1.0, 1e6))
    eq = start * np.cumprod(1.0 + np.asarray(rets, dtype=np.float64))
    nan_mask = draw(st.lists(st.booleans(), min_size=len(rets), max_size=len(rets)))
    eq[np.asarray(nan_mask, dtype=bool)] = np.nan
    ex = np.asarray(draw(st.lists(st.booleans(), min_size=len(rets), max_size=len(rets))), dtype=bool)
    return eq, ex


@_SETTINGS
@given(_equity_case())
def test_property_matches_reference(case):
    eq, ex = case
    got, want = _kernel(eq, ex), _ref_equity_metrics(eq, ex, PPY)
    if _sharpe_is_noise(eq):
        _drop_sharpe(got, want)
    _assert_close(got, want, rtol=1e-7, atol=1e-10)


@_SETTINGS
@given(_equity_case())
def test_property_max_drawdown_in_unit_interval(case):
    eq, ex = case
    got = _kernel(eq, ex)
    if np.isfinite(eq).any():
        assert 0.0 <= got["max_drawdown"] <= 1.0
        assert 0.0 <= got["exposure"] <= 1.0
    else:
        assert math.isnan(got["max_drawdown"])


@_SETTINGS
@given(_equity_case(), st.integers(-20, 20))
def test_property_power_of_two_scaling_is_exact(case, k):
    eq, ex = case
    a = M.equity_metrics_nb(eq, ex, PPY)
    b = M.equity_metrics_nb(eq * 2.0**k, ex, PPY)
    np.testing.assert_array_equal(a, b)


@_SETTINGS
@given(_equity_case(min_size=3), st.floats(1e-3, 1e3))
def test_property_scaling_changes_nothing(case, c):
    eq, ex = case
    a, b = _kernel(eq, ex), _kernel(eq * c, ex)
    if _sharpe_is_noise(eq) or _sharpe_is_noise(eq * c):
        _drop_sharpe(a, b)
    _assert_close(b, a, rtol=1e-7, atol=1e-10)


@_SETTINGS
@given(_equity_case(max_size=60), st.integers(0, 60))
def test_property_no_lookahead(case, t):
    """The metrics of the first t bars equal the reference on those bars and ignore the rest."""
    eq, ex = case
    t = min(t, eq.shape[0])
    prefix = M.equity_metrics_nb(eq[:t], ex[:t], PPY)
    got, want = M.metrics_to_dict(prefix), _ref_equity_metrics(eq[:t], ex[:t], PPY)
    if _sharpe_is_noise(eq[:t]):
        _drop_sharpe(got, want)
    _assert_close(got, want, rtol=1e-7, atol=1e-10)
    changed = eq.copy()
    changed[t:] = changed[t:] * 3.0 - 1.0
    np.testing.assert_array_equal(prefix, M.equity_metrics_nb(changed[:t], ex[:t], PPY))


# ---------------------------------------------------------------------------- trade metrics

TRADES = {
    "mixed": np.random.default_rng(1).normal(5.0, 100.0, 57),
    "with_zeros_and_nan": np.array([10.0, 0.0, -4.0, np.nan, 0.0, 3.5, -1.5]),
    "only_wins": np.array([1.0, 2.0, 0.5]),
    "only_losses": np.array([-1.0, -2.0]),
    "only_zeros": np.zeros(4),
    "one_win": np.array([42.0]),
    "none": np.empty(0),
    "all_nan": np.full(3, np.nan),
}


@pytest.mark.parametrize("name", list(TRADES))
def test_trade_metrics_match_loop(name):
    pnl = TRADES[name]
    got = M.metrics_to_dict(M.trade_metrics_nb(pnl), M.TRADE_METRIC_NAMES)
    _assert_close(got, _ref_trade_metrics(pnl))


def test_trade_metrics_edge_cases():
    assert M.trade_metrics_nb(TRADES["only_wins"])[M.PROFIT_FACTOR] == np.inf
    assert M.trade_metrics_nb(TRADES["only_losses"])[M.PROFIT_FACTOR] == 0.0
    none = M.trade_metrics_nb(TRADES["none"])
    assert none[M.N_TRADES] == 0.0 and np.isnan(none[M.WIN_RATE]) and np.isnan(none[M.PROFIT_FACTOR])


@_SETTINGS
@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(0.0), st.just(float("nan"))), max_size=50))
def test_property_trade_metrics(pnl):
    got = M.metrics_to_dict(M.trade_metrics_nb(np.asarray(pnl, dtype=np.float64)), M.TRADE_METRIC_NAMES)
    _assert_close(got, _ref_trade_metrics(pnl), rtol=1e-9, atol=1e-12)

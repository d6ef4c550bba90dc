"""The simulation kernel against a plain-Python reference, hand-worked cases and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_ohlc
from pitools.kernels.simulation import T_EXIT_PRICE, T_OPEN_AT_END, T_PNL, simulate_nb

NO_TRAIL = np.empty(0)


def bars(n: int, seed: int, gaps: bool):
    # listed late, a halt, delisted
    missing = (slice(None, 7), slice(40, 43), slice(-5, None)) if gaps else ()
    return random_ohlc(n, seed, 50.0, 0.004, missing)


def reference(o, h, lo, c, target, fill_close, long_only, fees, slip, cash, integer):
    """Straightforward event loop: equity per bar, list of (pnl, open_at_end) per trade."""
    balance, pos, shares, entry_cost = cash, 0, 0.0, 0.0
    pending = None
    equity = [math.nan] * len(c)
    trades = []

    def trade_to(new, price):
        nonlocal balance, pos, shares, entry_cost
        if new == pos:
            return
        if pos == 1:
            px = price * (1 - slip)
            proceeds = shares * px * (1 - fees)
            balance += proceeds
            trades.append((proceeds - entry_cost, 0))
        elif pos == -1:
            px = price * (1 + slip)
            cost = shares * px * (1 + fees)
            balance -= cost
            trades.append((entry_cost - cost, 0))
        pos, shares = 0, 0.0
        if new != 0:
            px = price * (1 + slip) if new == 1 else price * (1 - slip)
            n_sh = balance / (px * (1 + fees))
            if integer:
                n_sh = math.floor(n_sh)
            if n_sh > 0:
                if new == 1:
                    entry_cost = n_sh * px * (1 + fees)
                    balance -= entry_cost
                else:
                    entry_cost = n_sh * px * (1 - fees)  # what the short sale brought in
                    balance += entry_cost
                pos, shares = new, n_sh

    last = None
    for t in range(len(c)):
        if any(math.isnan(x) for x in (o[t], h[t], lo[t], c[t])):
            if last is not None:
                equity[t] = equity[last]
            continue
        last = t
        if pending is not None:
            trade_to(pending, o[t])
            pending = None
        want = target[t]
        if not math.isnan(want):
            want = int(np.sign(want))
            if long_only:
                want = max(want, 0)
            if want != pos:
                if fill_close:
                    trade_to(want, c[t])
                else:
                    pending = want
        equity[t] = balance + pos * shares * c[t]
    if pos != 0:
        value = shares * c[last]
        trades.append(((value - entry_cost) if pos == 1 else (entry_cost - value), 1))
    return np.array(equity), trades


@pytest.mark.parametrize("fill_close", [False, True])
@pytest.mark.parametrize("long_only", [True, False])
@pytest.mark.parametrize("fees,slip,integer", [(0.0, 0.0, False), (0.001, 0.0005, False), (0.002, 0.0, True)])
@pytest.mark.parametrize("gaps", [False, True])
def test_matches_the_reference(fill_close, long_only, fees, slip, integer, gaps):
    o, h, lo, c = bars(300, 5, gaps)
    rng = np.random.default_rng(9)
    target = rng.choice([-1.0, 0.0, 1.0, np.nan], size=300, p=[0.1, 0.1, 0.1, 0.7])
    target[:20] = np.nan
    eq, exp, trades = simulate_nb(o, h, lo, c, target, fill_close, long_only, fees, slip, 10_000.0, integer,
                                  np.nan, np.nan, NO_TRAIL)
    ref_eq, ref_trades = reference(o, h, lo, c, target, fill_close, long_only, fees, slip, 10_000.0, integer)
    np.testing.assert_array_equal(np.isnan(eq), np.isnan(ref_eq))
    np.testing.assert_allclose(eq, ref_eq, rtol=1e-10, equal_nan=True)
    assert len(trades) == len(ref_trades) > 5
    np.testing.assert_allclose(trades[:, T_PNL], [p for p, _ in ref_trades], rtol=1e-9, atol=1e-9)
    assert list(trades[:, T_OPEN_AT_END]) == [float(e) for _, e in ref_trades]
    if long_only:
        assert (trades[:, 2] > 0).all()


def flat_bars(prices_o, prices_h, prices_l, prices_c):
    return tuple(np.array(x, dtype=float) for x in (prices_o, prices_h, prices_l, prices_c))


def test_hand_worked_long_trade_with_fees_next_open():
    o, h, lo, c = flat_bars([10, 10, 11, 12, 12], [10, 10, 11, 12, 12], [10, 10, 11, 12, 12], [10, 10, 11, 12, 12])
    target = np.array([1, np.nan, np.nan, 0, np.nan], dtype=float)
    eq, _, tr = simulate_nb(o, h, lo, c, target, False, True, 0.01, 0.0, 1010.0, True, np.nan, np.nan, NO_TRAIL)
    # buy at bar 1 open 10: 1010 / (10 * 1.01) = 100 shares, fee 10; sell at bar 4 open 12: fee 12
    assert tr.shape[0] == 1 and tr[0, 3] == 100
    assert tr[0, T_PNL] == pytest.approx(100 * 2 - 10 - 12)
    assert eq[-1] == pytest.approx(1010 + 178)


def test_stop_loss_gap_fills_at_the_open_and_blocks_reentry():
    o = [100, 100, 99, 90, 95, 96, 97]
    h = [100, 100, 100, 91, 96, 97, 98]
    lo = [100, 100, 98, 89, 94, 95, 96]
    c = [100, 100, 99, 90, 95, 96, 97]
    o, h, lo, c = flat_bars(o, h, lo, c)
    target = np.array([1, 1, 1, 1, 1, 1, 1], dtype=float)
    _, _, tr = simulate_nb(o, h, lo, c, target, False, True, 0.0, 0.0, 1000.0, False, 0.05, np.nan, NO_TRAIL)
    # entry at 100 (bar 1), stop at 95: bar 3 opens at 90, below the stop → filled at 90
    assert tr.shape[0] == 1 and tr[0, T_EXIT_PRICE] == 90 and tr[0, 1] == 3
    # the long signal never changed: no re-entry afterwards
    target2 = target.copy()
    target2[4] = 0.0
    _, _, tr2 = simulate_nb(o, h, lo, c, target2, False, True, 0.0, 0.0, 1000.0, False, 0.05, np.nan, NO_TRAIL)
    assert tr2.shape[0] == 2 and tr2[1, 0] == 6  # 0 at bar 4, 1 again at bar 5 → entry at bar 6 open


def test_take_profit_and_trailing_stop_inside_the_bar():
    o = [100, 100, 103, 108, 107, 104]
    h = [100, 101, 106, 111, 108, 105]
    lo = [100, 99, 102, 107, 103, 100]
    c = [100, 100, 105, 110, 104, 101]
    o, h, lo, c = flat_bars(o, h, lo, c)
    target = np.ones(6)
    _, _, tr = simulate_nb(o, h, lo, c, target, False, True, 0.0, 0.0, 1000.0, False, np.nan, 0.05, NO_TRAIL)
    assert tr[0, T_EXIT_PRICE] == pytest.approx(105.0) and tr[0, 1] == 2  # 100 * 1.05 touched on bar 2
    trail = np.full(6, 4.0)
    _, _, tr = simulate_nb(o, h, lo, c, target, False, True, 0.0, 0.0, 1000.0, False, np.nan, np.nan, trail)
    # best high 111 on bar 3 → stop 107 for bar 4, whose low 103 crosses it; opened at 107 → filled at 107
    assert tr[0, T_EXIT_PRICE] == pytest.approx(107.0) and tr[0, 1] == 4


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(30, 199), fill_close=st.booleans())
def test_no_lookahead_and_flat_target_is_cash(seed, cut, fill_close):
    o, h, lo, c = bars(200, seed, gaps=True)
    rng = np.random.default_rng(seed)
    target = rng.choice([-1.0, 0.0, 1.0, np.nan], size=200)
    args = (fill_close, False, 0.001, 0.0005, 5000.0, False, 0.1, 0.2, NO_TRAIL)
    full, _, _ = simulate_nb(o, h, lo, c, target, *args)
    part, _, _ = simulate_nb(o[:cut], h[:cut], lo[:cut], c[:cut], target[:cut], *args)
    np.testing.assert_array_equal(full[:cut], part)
    flat, _, tr = simulate_nb(o, h, lo, c, np.zeros(200), *args)
    assert len(tr) == 0 and np.nanmax(np.abs(flat - 5000.0)) == 0.0
    started = np.flatnonzero(np.isfinite(full))
    assert started.size and np.isfinite(full[started[0]:]).all(), "equity never NaN once started"


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), fee=st.floats(0.0, 0.004))
def test_fees_never_help(seed, fee):
    o, h, lo, c = bars(150, seed, gaps=False)
    target = np.where(np.sin(np.arange(150) / 7.0 + seed) > 0, 1.0, -1.0)
    base, _, _ = simulate_nb(o, h, lo, c, target, False, False, fee, 0.0, 1000.0, False, np.nan, np.nan, NO_TRAIL)
    more, _, _ = simulate_nb(o, h, lo, c, target, False, False, fee + 0.001, 0.0, 1000.0, False, np.nan, np.nan,
                             NO_TRAIL)
    assert more[-1] <= base[-1] + 1e-9
    assert np.isfinite(base).all()

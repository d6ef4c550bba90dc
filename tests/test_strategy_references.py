"""Strategy signals and per-symbol trade lists against slow references written here.

The signal references are pandas / plain Python written from the kernel docstrings: the
bars a strategy does not have are dropped, the indicators are computed on the compressed
series and the result is put back on the full index (NaN at the gaps). The trade-list
reference is a plain event loop written from the simulation's module docstring.

sma_cross, ts_momentum and xs_momentum already have signal references in
test_strategies.py; here they (with the five others) only feed the trade-list checks.

Floating point: the references do not round exactly like the kernels (pandas' ``ewm``
divides by its weights, numpy sums pairwise), so a decision that sits within rounding
of a threshold could legitimately go either way. Every reference therefore checks that
none of its decisions is within ``TIE`` (relative) of its threshold — on this seeded data
that holds by a wide margin — and the targets are then compared exactly. A reference that
trips that check means the data need a new seed, not that a kernel is wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from conftest import random_ohlc
from pitools.data.panel import Panel

TIE = 1e-9
N = 600

# ---------------------------------------------------------------------------- data

GAPS = (slice(None, 25), 140, 260, 333, slice(410, 420))  # late listing, three one-bar halts, a 10-bar halt


def make_data(variant: str):
    """One symbol's (open, high, low, close) for a data variant of the signal tests."""
    gaps = variant != "clean"
    o, h, lo, c = random_ohlc(N, 1, 80.0, 0.003, GAPS if gaps else ())
    if variant == "partial":
        # bars where only some fields are missing: the close-only indicators still see
        # the close; high/low/close indicators (ATR, Donchian) skip the bar
        h[200] = np.nan
        lo[380] = np.nan
        c[500] = np.nan
        o[520] = np.nan  # no signal kernel reads the open
    elif variant == "flat":
        # a flat run right at the listing, then a strictly rising run (RSI of gains only:
        # 100), and a flat run mid-series (constant Bollinger windows: std exactly 0)
        for a in (o, h, lo, c):
            a[25:60] = 80.0
        px = 80.0
        for t in range(60, 76):
            o[t], lo[t] = px, px
            px *= 1.002
            c[t], h[t] = px, px
        for a in (o, h, lo, c):
            a[470:496] = c[469]
    if variant == "gaps32":
        return tuple(a.astype(np.float32) for a in (o, h, lo, c))
    if variant == "high32":
        # an increasing affine map keeps every decision (all five are invariant under it)
        # but puts the prices near 2e4 with 0.06% moves, in float32 (resolution 0.002):
        # the regime where running sums of squares lose their digits
        return tuple((20_000.0 + 10.0 * (a - 80.0)).astype(np.float32) for a in (o, h, lo, c))
    return o, h, lo, c


VARIANTS = ["clean", "gaps", "gaps32", "partial", "high32"]


def run(name, o, h, lo, c, params):
    s = pt.strategies.get(name)
    p = np.array(list(s.validate(params).values()))
    return s.signal_kernel()(o, h, lo, c, p)


# ---------------------------------------------------------------------------- reference helpers

def f64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def close_series(c) -> pd.Series:
    """The valid closes, on their positions in the full series."""
    s = pd.Series(np.asarray(c, dtype=np.float64))
    return s[np.isfinite(s)]


def hlc_frame(h, lo, c) -> pd.DataFrame:
    """The bars with finite high, low and close, on their positions in the full series."""
    df = pd.DataFrame({"high": h, "low": lo, "close": c}, dtype=np.float64)
    return df[np.isfinite(df).all(axis=1)]


def full(s: pd.Series, n: int) -> np.ndarray:
    """A compressed series put back on the full index: NaN where the bar was skipped."""
    return s.reindex(range(n)).to_numpy(dtype=np.float64)


def ema(s: pd.Series, n: int) -> pd.Series:
    return s.ewm(span=n, adjust=False, min_periods=n).mean()


def wilder(s: pd.Series, n: int) -> pd.Series:
    return s.ewm(alpha=1.0 / n, adjust=False, min_periods=n).mean()


def assert_clear(diff, scale, what):
    """No decision within TIE (relative to `scale`) of its threshold: see the module docstring."""
    diff, scale = np.broadcast_arrays(np.asarray(diff, float), np.asarray(scale, float))
    ok = np.isfinite(diff)
    if ok.any():
        worst = np.min(np.abs(diff[ok]) / np.maximum(np.abs(scale[ok]), 1.0))
        assert worst > TIE, f"reference ambiguous for {what}: a decision is {worst:.2e} from its threshold"


def sign(x: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(x), np.sign(x), np.nan)


# ---------------------------------------------------------------------------- signal references

def ref_sma_cross(o, h, lo, c, fast, slow):
    s = close_series(c)
    d = (s.rolling(fast).mean() - s.rolling(slow).mean()).to_numpy()
    assert_clear(d, s.to_numpy(), "sma_cross")
    return full(pd.Series(sign(d), index=s.index), len(c)), None


def ref_ts_momentum(o, h, lo, c, lookback):
    s = close_series(c)
    r = (s / s.shift(lookback) - 1.0).to_numpy()
    assert_clear(r, 1.0, "ts_momentum")
    return full(pd.Series(sign(r), index=s.index), len(c)), None


def ref_macd(o, h, lo, c, fast, slow, signal):
    s = close_series(c)
    line = (ema(s, fast) - ema(s, slow)).dropna()  # the signal EMA starts at the first MACD value
    hist = line - ema(line, signal)
    assert_clear(hist.to_numpy(), s.reindex(hist.index).to_numpy(), "macd")
    return full(pd.Series(sign(hist.to_numpy()), index=hist.index), len(c)), None


def ref_rsi(c, n) -> pd.Series:
    s = close_series(c)
    delta = s.diff().iloc[1:]  # the first delta is at the second valid close
    gain = wilder(delta.where(delta > 0, 0.0), n)
    loss = wilder((-delta).where(delta < 0, 0.0), n)
    rsi = pd.Series(np.nan, index=gain.index)
    for i in gain.index:
        g, l_ = gain[i], loss[i]
        if np.isnan(g):
            continue
        if l_ == 0.0:
            rsi[i] = 100.0 if g > 0.0 else 50.0
        else:
            rsi[i] = 100.0 - 100.0 / (1.0 + g / l_)
    return rsi


def ref_rsi_reversion(o, h, lo, c, n, lower, upper):
    rsi = ref_rsi(c, n)
    assert_clear((rsi - lower).to_numpy(), 100.0, "rsi lower")
    assert_clear((rsi - upper).to_numpy(), 100.0, "rsi upper")
    tgt = pd.Series(np.nan, index=rsi.index)
    tgt[rsi < lower] = 1.0
    tgt[rsi > upper] = -1.0
    return full(tgt, len(c)), None


def ref_bollinger_reversion(o, h, lo, c, n, k):
    s = close_series(c)
    v = s.to_numpy()
    out = pd.Series(np.nan, index=s.index)
    state = 0.0
    for j in range(n - 1, len(v)):
        w = v[j - n + 1:j + 1]
        x = v[j]
        if (w == w[0]).all():  # a constant window: the mean is the price, the std exactly 0
            mid, sd = w[0], 0.0
        else:
            mid, sd = w.mean(), w.std(ddof=0)
            assert_clear([x - mid, x - (mid - k * sd), x - (mid + k * sd)], x, f"bollinger bar {s.index[j]}")
        if x < mid - k * sd:
            state = 1.0  # below the lower band: long
        elif x > mid + k * sd:
            state = -1.0  # above the upper band: short
        elif state == 1.0:
            state = 0.0 if x >= mid else 1.0  # a long is held until the middle is reached
        elif state == -1.0:
            state = 0.0 if x <= mid else -1.0
        out.iloc[j] = state
    return full(out, len(c)), None


def ref_donchian_breakout(o, h, lo, c, entry, exit):
    df = hlc_frame(h, lo, c)
    hi, low, cl = df["high"].to_numpy(), df["low"].to_numpy(), df["close"].to_numpy()
    out = pd.Series(np.nan, index=df.index)
    state = 0.0
    for j in range(entry, len(df)):  # `entry` valid bars before this one
        up, dn = max(hi[j - entry:j]), min(low[j - entry:j])
        x_up, x_dn = max(hi[j - exit:j]), min(low[j - exit:j])
        if cl[j] > up:
            state = 1.0
        elif cl[j] < dn:
            state = -1.0
        elif state == 1.0 and cl[j] < x_dn:
            state = 0.0
        elif state == -1.0 and cl[j] > x_up:
            state = 0.0
        out.iloc[j] = state
    return full(out, len(c)), None


def ref_atr(h, lo, c, n) -> np.ndarray:
    df = hlc_frame(h, lo, c)
    prev = df["close"].shift(1)
    tr = pd.concat([df["high"] - df["low"], (df["high"] - prev).abs(), (df["low"] - prev).abs()], axis=1).max(axis=1)
    tr.iloc[0] = df["high"].iloc[0] - df["low"].iloc[0]  # no previous close: high - low
    return full(wilder(tr, n), len(c))


def ref_atr_breakout(o, h, lo, c, n, k, trail_mult):
    mid = full(ema(close_series(c), n), len(c))
    a = ref_atr(h, lo, c, n)
    cl = np.asarray(c, dtype=np.float64)
    tgt = np.full(len(c), np.nan)
    for t in range(len(c)):
        if not (np.isfinite(mid[t]) and np.isfinite(a[t]) and np.isfinite(cl[t])):
            continue
        assert_clear([cl[t] - (mid[t] + k * a[t]), cl[t] - (mid[t] - k * a[t])], cl[t], f"atr_breakout bar {t}")
        if cl[t] > mid[t] + k * a[t]:
            tgt[t] = 1.0
        elif cl[t] < mid[t] - k * a[t]:
            tgt[t] = -1.0
    return tgt, trail_mult * a


REFS = {"sma_cross": ref_sma_cross, "macd": ref_macd, "rsi_reversion": ref_rsi_reversion,
        "bollinger_reversion": ref_bollinger_reversion, "donchian_breakout": ref_donchian_breakout,
        "atr_breakout": ref_atr_breakout, "ts_momentum": ref_ts_momentum}


def reference_signal(name, o, h, lo, c, params):
    full_params = pt.strategies.get(name).validate(params)
    as_num = {k: (int(v) if pt.strategies.get(name).space[k].kind == "int" else v) for k, v in full_params.items()}
    return REFS[name](*f64(o, h, lo, c), *as_num.values())


# ---------------------------------------------------------------------------- signal tests

SIGNAL_CASES = [
    ("macd", {"fast": 12, "slow": 26, "signal": 9}),
    ("macd", {"fast": 5, "slow": 13, "signal": 4}),
    ("macd", {"fast": 3, "slow": 40, "signal": 15}),
    ("rsi_reversion", {"n": 14, "lower": 30, "upper": 70}),
    ("rsi_reversion", {"n": 5, "lower": 25.5, "upper": 75}),
    ("rsi_reversion", {"n": 2, "lower": 10, "upper": 90}),
    ("bollinger_reversion", {"n": 20, "k": 2.0}),
    ("bollinger_reversion", {"n": 10, "k": 1.0}),
    ("bollinger_reversion", {"n": 5, "k": 0.75}),
    ("donchian_breakout", {"entry": 20, "exit": 10}),
    ("donchian_breakout", {"entry": 8, "exit": 8}),
    ("donchian_breakout", {"entry": 55, "exit": 2}),
    ("atr_breakout", {"n": 20, "k": 1.5, "trail_mult": 3.0}),
    ("atr_breakout", {"n": 7, "k": 0.5, "trail_mult": 1.25}),
    ("atr_breakout", {"n": 5, "k": 1.0, "trail_mult": 8.0}),
]


def _case_id(case):
    name, params = case
    return name + "-" + "-".join(f"{v:g}" for v in params.values())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", SIGNAL_CASES, ids=[_case_id(c) for c in SIGNAL_CASES])
def test_signal_against_reference(case, variant):
    name, params = case
    o, h, lo, c = make_data(variant)
    got, trail = run(name, o, h, lo, c, params)
    ref, ref_trail = reference_signal(name, o, h, lo, c, params)
    # the test must be able to see something: the strategy takes both sides on this data
    assert (ref == 1).sum() >= 3 and (ref == -1).sum() >= 3
    np.testing.assert_array_equal(got, ref)
    if ref_trail is None:
        assert trail.shape == (0,)
    else:
        # pandas' ewm rounds differently from a plain recursion: compare with a tolerance
        np.testing.assert_allclose(trail, ref_trail, rtol=1e-11, atol=0, equal_nan=True)
        assert np.isfinite(ref_trail).sum() > N // 2


FLAT_CASES = [
    ("rsi_reversion", {"n": 5, "lower": 30, "upper": 70}),
    ("rsi_reversion", {"n": 14, "lower": 30, "upper": 70}),
    ("bollinger_reversion", {"n": 20, "k": 2.0}),
    ("bollinger_reversion", {"n": 5, "k": 0.75}),  # k=0.5: n-1 equal values put the close exactly on a band
    ("donchian_breakout", {"entry": 20, "exit": 10}),
    ("donchian_breakout", {"entry": 5, "exit": 3}),
]


@pytest.mark.parametrize("case", FLAT_CASES, ids=[_case_id(c) for c in FLAT_CASES])
def test_signal_against_reference_on_flat_and_one_sided_runs(case):
    """Exact ties by construction: no losses (RSI 100), constant windows (std 0, close ==
    middle band), closes equal to the channel edge."""
    name, params = case
    o, h, lo, c = make_data("flat")
    got, _ = run(name, o, h, lo, c, params)
    ref, _ = reference_signal(name, o, h, lo, c, params)
    np.testing.assert_array_equal(got, ref)
    if name == "rsi_reversion":
        rsi = full(ref_rsi(c, params["n"]), N)
        assert (rsi == 100.0).sum() >= 3 and got[np.flatnonzero(rsi == 100.0)[0]] == -1.0
    if name == "bollinger_reversion":
        assert (got[495 - 2:496] == 0.0).all()  # a constant window: the band has collapsed, flat


def test_atr_reference_true_range_uses_the_previous_valid_close():
    """A hand-worked ATR, so the pandas reference is itself checked on a gap."""
    h = np.array([11.0, np.nan, 14.0, 13.0])
    lo = np.array([9.0, np.nan, 12.0, 12.5])
    c = np.array([10.0, np.nan, 13.0, 12.6])
    # true ranges: 2 (h-l), 4 (14 - prev valid close 10), 0.5 (13 - 12.5 vs |13-13|, |12.5-13|)
    a = ref_atr(h, lo, c, 2)
    np.testing.assert_allclose(a, [np.nan, np.nan, 0.5 * 2 + 0.5 * 4, 0.5 * 3 + 0.5 * 0.5])
    _, trail = run("atr_breakout", np.ones(4), h, lo, c, {"n": 5, "k": 1.0, "trail_mult": 2.0})
    assert np.isnan(trail).all()  # fewer than 5 valid bars: no ATR yet


def test_rsi_reference_hand_worked():
    c = np.array([np.nan, 10.0, 11.0, np.nan, 10.5, 10.5, 11.5])
    # deltas at the valid closes 2..: +1, -0.5, 0, +1; Wilder n=2 seeds with the first delta
    g = [1.0, 0.5 * 1.0 + 0.5 * 0.0, 0.25, 0.5 * 0.25 + 0.5 * 1.0]
    l_ = [0.0, 0.25, 0.125, 0.0625]
    want = [np.nan, np.nan, np.nan, np.nan, 100 - 100 / (1 + g[1] / l_[1]), 100 - 100 / (1 + g[2] / l_[2]),
            100 - 100 / (1 + g[3] / l_[3])]
    np.testing.assert_allclose(full(ref_rsi(c, 2), len(c)), want)


# ---------------------------------------------------------------------------- trade-list reference

def simulate(o, h, lo, c, target, trail, long_only, fees, cash=10_000.0):
    """One symbol, next-open fills, all-in sizing, fees each side, optional trailing stop.

    Returns (trades, final equity); a trade is a dict with the bars as positions.
    The account is cash plus a signed number of shares; equity = cash + shares * price.
    """
    o, h, lo, c = f64(o, h, lo, c)
    money = cash
    qty = 0.0  # signed shares
    side = 0
    trade = None
    order = None  # a target waiting for the next valid open
    stop = None  # trailing-stop level, active from the bar after it is set
    extreme = None  # best high (long) / low (short) since entry
    last_wanted = None  # the last (clipped) target the strategy expressed
    stopped_out = False
    trades = []
    last_bar = None

    def exit_at(price, bar):
        nonlocal money, qty, side, trade, stop, extreme
        fee = abs(qty) * price * fees
        money += qty * price - fee
        trade.update(exit_bar=bar, exit_price=price, open_at_end=False,
                     pnl=side * abs(qty) * (price - trade["entry_price"]) - trade["entry_fee"] - fee)
        trades.append(trade)
        qty, side, trade, stop, extreme = 0.0, 0, None, None, None

    def enter(to, price, bar):
        nonlocal money, qty, side, trade, extreme
        equity = money  # flat here: all of it is cash
        size = equity / (price * (1 + fees))
        fee = size * price * fees
        qty = to * size
        money -= qty * price + fee
        side = to
        trade = dict(entry_bar=bar, side=to, size=size, entry_price=price, entry_fee=fee)
        extreme = h[bar] if to > 0 else lo[bar]

    for t in range(len(c)):
        if not np.isfinite([o[t], h[t], lo[t], c[t]]).all():
            continue  # the symbol has no bar: nothing fills, an order waits
        last_bar = t
        if order is not None:
            to, order = order, None
            if to != side:
                if side:
                    exit_at(o[t], t)
                if to:
                    enter(to, o[t], t)
        if side and stop is not None:
            if side > 0 and o[t] <= stop or side < 0 and o[t] >= stop:
                exit_at(o[t], t)  # gapped through the stop
                stopped_out = True
            elif side > 0 and lo[t] <= stop or side < 0 and h[t] >= stop:
                exit_at(stop, t)
                stopped_out = True
        want = target[t]
        if np.isfinite(want):
            want = int(np.sign(want))
            if long_only and want < 0:
                want = 0
            if stopped_out and want == last_wanted:
                want = None  # the signal that was stopped out is still on: stay flat
            else:
                stopped_out = False
                last_wanted = want
            if want is not None and want != side:
                order = want
        if side and trail is not None and np.isfinite(trail[t]):
            extreme = max(extreme, h[t]) if side > 0 else min(extreme, lo[t])
            level = extreme - side * trail[t]
            if stop is None or (level > stop if side > 0 else level < stop):
                stop = level
        assert money + qty * c[t] > 0  # no wiped-out account in these tests
    if side:
        px = c[last_bar]
        trade.update(exit_bar=last_bar, exit_price=px, open_at_end=True,
                     pnl=side * abs(qty) * (px - trade["entry_price"]) - trade["entry_fee"])
        trades.append(trade)
    final = money + qty * c[last_bar]
    return trades, final


# ---------------------------------------------------------------------------- trade-list tests

SYMBOLS = {
    "AAA": dict(seed=11, noise=0.003, missing=()),
    "BBB": dict(seed=12, noise=0.003, missing=(slice(None, 60), 150, 151, 333, slice(400, 412))),
    "CCC": dict(seed=13, noise=0.003, missing=(90, 230, slice(300, 305), slice(560, None))),  # delisted
    "DDD": dict(seed=14, noise=0.012, missing=(slice(None, 5), 17, 444)),  # gappy opens
}


@pytest.fixture(scope="module")
def panel() -> Panel:
    cols = {f: [] for f in ("open", "high", "low", "close")}
    for spec in SYMBOLS.values():
        for f, a in zip(cols, random_ohlc(N, spec["seed"], 60.0, spec["noise"], spec["missing"])):
            cols[f].append(a)
    arrays = {f: np.asfortranarray(np.column_stack(v), dtype=np.float32) for f, v in cols.items()}  # the panel dtype
    return Panel(pd.bdate_range("2021-01-04", periods=N), list(SYMBOLS), arrays)


TRADE_CASES = [
    ("sma_cross", {"fast": 5, "slow": 20}),
    ("macd", {"fast": 12, "slow": 26, "signal": 9}),
    ("rsi_reversion", {"n": 7, "lower": 35, "upper": 65}),
    ("bollinger_reversion", {"n": 15, "k": 1.5}),
    ("donchian_breakout", {"entry": 20, "exit": 10}),
    # atr_breakout always trails (pt.backtest cannot switch its stop off): the reference
    # simulator models the stop, with the reference ATR as its distance
    ("atr_breakout", {"n": 10, "k": 0.5, "trail_mult": 2.0}),
    ("ts_momentum", {"lookback": 20}),
]


@pytest.mark.parametrize("direction", ["long_only", "long_short"])
@pytest.mark.parametrize("case", TRADE_CASES, ids=[c[0] for c in TRADE_CASES])
def test_trade_list_against_reference(panel, case, direction):
    name, params = case
    fees = 0.001
    res = pt.backtest(name, panel, params, fees=fees, direction=direction)
    got = res.trades
    stopped = 0
    for j, sym in enumerate(panel.symbols):
        o, h, lo, c = (np.asarray(a[:, j]) for a in (panel.open, panel.high, panel.low, panel.close))
        target, trail = reference_signal(name, o, h, lo, c, params)
        trades, final = simulate(o, h, lo, c, target, trail, direction == "long_only", fees)
        mine = got[got.symbol == sym].reset_index(drop=True)
        assert len(mine) == len(trades) >= 3, (sym, len(mine), len(trades))
        want = pd.DataFrame(trades)
        np.testing.assert_array_equal(panel.dates.get_indexer(mine.entry_time), want.entry_bar, err_msg=sym)
        np.testing.assert_array_equal(panel.dates.get_indexer(mine.exit_time), want.exit_bar, err_msg=sym)
        assert mine.side.tolist() == ["long" if s > 0 else "short" for s in want.side], sym
        if direction == "long_only":
            assert (want.side > 0).all()
        assert mine.open_at_end.tolist() == want.open_at_end.tolist(), sym
        for col in ("size", "entry_price", "exit_price", "pnl"):
            np.testing.assert_allclose(mine[col], want[col], rtol=1e-9, err_msg=f"{sym} {col}")
        np.testing.assert_allclose(mine["return"], want.pnl / (want["size"] * want.entry_price + want.entry_fee),
                                   rtol=1e-9, err_msg=f"{sym} return")
        assert res.stats.loc[sym, "final_equity"] == pytest.approx(final, rel=1e-9), sym
        assert res.stats.loc[sym, "n_trades"] == (~want.open_at_end).sum(), sym
        # a stop exit fills away from the open: count them, so the stop is really exercised
        opens = np.asarray(o, dtype=np.float64)[want.exit_bar.to_numpy()]
        stopped += int(((want.exit_price != opens) & ~want.open_at_end).sum())
    if name == "atr_breakout":
        assert stopped >= 3
    else:
        assert stopped == 0


def test_reference_simulator_hand_worked():
    """The reference simulator itself on hand-worked cases, so it cannot just mirror the kernel."""
    o = np.array([10.0, 10.0, 12.0, np.nan, 11.0, 9.0])
    h, lo, c = o + 0.5, o - 0.5, o.copy()
    target = np.array([1.0, np.nan, -1.0, np.nan, np.nan, np.nan])
    trades, final = simulate(o, h, lo, c, target, None, long_only=False, fees=0.01)
    size = 10_000 / (10.0 * 1.01)  # long at the open of bar 1
    pnl1 = size * (11.0 - 10.0) - size * 10.0 * 0.01 - size * 11.0 * 0.01  # reversed at the next valid open, bar 4
    eq1 = 10_000 + pnl1
    size2 = eq1 / (11.0 * 1.01)
    pnl2 = size2 * (11.0 - 9.0) - size2 * 11.0 * 0.01  # open at the end: marked to the last close, no exit fee
    assert [(t["entry_bar"], t["exit_bar"], t["side"], t["open_at_end"]) for t in trades] == \
        [(1, 4, 1, False), (4, 5, -1, True)]
    assert trades[0]["pnl"] == pytest.approx(pnl1, rel=1e-12)
    assert trades[1]["pnl"] == pytest.approx(pnl2, rel=1e-12)
    assert final == pytest.approx(eq1 + pnl2, rel=1e-12)
    long_only, final_lo = simulate(o, h, lo, c, target, None, long_only=True, fees=0.01)
    assert [(t["entry_bar"], t["exit_bar"], t["side"]) for t in long_only] == [(1, 4, 1)]
    assert final_lo == pytest.approx(eq1, rel=1e-12)


@pytest.mark.parametrize("open4,low4,exit_price", [(11.2, 10.7, 11.2), (11.8, 11.3, 11.5)], ids=["gap", "touch"])
def test_reference_simulator_trailing_stop_hand_worked(open4, low4, exit_price):
    o = np.array([10.0, 10.0, 11.0, 12.0, open4, 10.0, 10.5, 10.5])
    h, lo, c = o + 0.5, o - 0.5, o.copy()
    lo[4] = low4
    target = np.array([1.0, np.nan, np.nan, np.nan, np.nan, 1.0, 1.0, np.nan])
    # the stop trails 1.0 behind the best high: 9.5, 10.5, 11.5 after bars 1, 2, 3
    trades, _ = simulate(o, h, lo, c, target, np.ones(8), long_only=True, fees=0.0)
    assert [(t["entry_bar"], t["exit_bar"], t["exit_price"]) for t in trades] == [(1, 4, exit_price)]
    # the long signal is still on after the stop: flat until the target changes
    target[5] = 0.0
    trades, _ = simulate(o, h, lo, c, target, np.ones(8), long_only=True, fees=0.0)
    assert [(t["entry_bar"], t["exit_bar"]) for t in trades] == [(1, 4), (7, 7)]

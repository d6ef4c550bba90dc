"""The simulation core: one symbol's bars and target positions in, equity and trades out.

Semantics (one pass over time):

* ``target[t]`` is the position wanted after seeing bar ``t`` (+1 long, -1 short, 0 flat,
  NaN = no opinion, keep what is held). It may use data up to ``t`` only.
* Fills: ``fill_close=False`` fills at the open of the next valid bar (the default, no
  lookahead); ``fill_close=True`` fills at the close of bar ``t``.
* All-in sizing: an entry spends the whole equity, ``shares = equity / (price * (1 + fees))``,
  floored to whole shares with ``integer_shares``. A reversal closes, then opens, at one price.
* Costs: ``slippage`` moves every fill price against the trader (buy higher, sell lower) by
  that fraction; ``fees`` is charged on each side as a fraction of the traded value.
* Exits inside a bar: stop-loss / take-profit as fractions of the entry price, and a
  trailing stop at ``trail[t]`` price units behind the best high (long) or low (short)
  since entry, ratcheting at each close. A gap through a level fills at the open. When a
  stop and a target are both inside one bar the stop is assumed first (the worse case).
  After a protective exit the symbol stays flat until the target changes.
* A bar with any non-finite OHLC value is a bar the symbol does not have: nothing fills,
  a pending order waits for the next bar, and equity is carried from the last bar (so no
  fake return appears). Equity is NaN only before the first bar; it is never NaN after.
* If equity reaches 0 (a short squeezed past the account), the position is closed at that
  close, equity stays 0 and the symbol trades no more.
* A position still open after the last valid bar is marked to the last close; its trade
  is reported with ``open_at_end = 1`` and no exit fees.
"""

from __future__ import annotations

import numba
import numpy as np

from pitools.kernels.metrics import (EXPOSURE, METRIC_NAMES, N_TRADES, PROFIT_FACTOR, TRADE_METRIC_NAMES, TRADE_STATE_SIZE,
                      WIN_RATE, metrics_finish, metrics_push, metrics_start, trade_finish, trade_push)

from pitools.kernels.layout import (N_STATS, SESSIONS_PER_YEAR, STAT_FIELDS, T_ENTRY_BAR, T_ENTRY_PRICE, T_EXIT_BAR, T_EXIT_PRICE,
                     T_OPEN_AT_END, T_PNL, T_RETURN, T_SIDE, T_SIZE, TRADE_FIELDS)

__all__ = ["simulate_nb", "simulate_curves_nb", "simulate_into_nb", "STAT_FIELDS", "N_STATS", "TRADE_FIELDS",
           "T_ENTRY_BAR", "T_EXIT_BAR", "T_SIDE", "T_SIZE", "T_ENTRY_PRICE", "T_EXIT_PRICE", "T_PNL", "T_RETURN",
           "T_OPEN_AT_END"]

_jit = numba.njit(cache=True, error_model="numpy")

# Helpers of the per-bar loop are inlined by numba itself, so the position state stays in
# registers (scalars in, tuples out) instead of going through memory each bar.
_inline = numba.njit(cache=True, error_model="numpy", inline="always")


@_inline
def _fill_price(price, side, slippage):
    """Price paid (side=+1, buying) or received (side=-1, selling) after slippage."""
    return price * (1.0 + slippage) if side > 0 else price * (1.0 - slippage)


@_inline
def _record(trades, k, entry_bar, exit_bar, side, shares, entry_px, entry_fee, exit_px, pnl, open_at_end):
    """Write trade `k` when trades are recorded (an empty `trades` records none); returns k + 1."""
    if k < trades.shape[0]:
        trades[k, T_ENTRY_BAR] = entry_bar
        trades[k, T_EXIT_BAR] = exit_bar
        trades[k, T_SIDE] = side
        trades[k, T_SIZE] = shares
        trades[k, T_ENTRY_PRICE] = entry_px
        trades[k, T_EXIT_PRICE] = exit_px
        trades[k, T_PNL] = pnl
        trades[k, T_RETURN] = pnl / (shares * entry_px + entry_fee)
        trades[k, T_OPEN_AT_END] = open_at_end
    return k + 1


@_inline
def _close(bal, pos, shares, entry_px, entry_fee, entry_bar, price, t, slippage, fees, trades, k, trade_state):
    """Close the position at `price` (before slippage): the new (balance, trade count)."""
    px = _fill_price(price, -pos, slippage)
    fee = shares * px * fees
    pnl = pos * shares * (px - entry_px) - entry_fee - fee
    trade_push(trade_state, 0, pnl)
    k = _record(trades, k, entry_bar, t, pos, shares, entry_px, entry_fee, px, pnl, 0.0)
    return bal + pos * shares * px - fee, k


@_inline
def _open(bal, to, price, slippage, fees, integer_shares):
    """Spend the whole balance on side `to`: (balance, shares, entry price, entry fee);
    shares is 0 when not even one share fits (nothing is bought)."""
    px = _fill_price(price, to, slippage)
    size = bal / (px * (1.0 + fees))
    if integer_shares:
        size = np.floor(size)
    if size <= 0.0:
        return bal, 0.0, 0.0, 0.0
    fee = size * px * fees
    return bal - (to * size * px + fee), size, px, fee


@_inline
def _move(to, price, t, bal, pos, shares, entry_px, entry_fee, entry_bar, slippage, fees, integer_shares, trades, k,
          trade_state):
    """Close what is held, then open side `to` (0: stay flat) at one `price`: the new
    (balance, position, shares, entry price, entry fee, entry bar, trade count)."""
    if pos != 0:
        bal, k = _close(bal, pos, shares, entry_px, entry_fee, entry_bar, price, t, slippage, fees, trades, k,
                        trade_state)
    if to != 0:
        bal, shares, entry_px, entry_fee = _open(bal, to, price, slippage, fees, integer_shares)
        if shares > 0.0:
            return bal, to, shares, entry_px, entry_fee, np.float64(t), k
    return bal, 0.0, 0.0, 0.0, 0.0, entry_bar, k


@_inline
def _protective_exit(pos, entry_px, stop_loss, take_profit, trail_level, o, h, lo):
    """The price at which a stop, trailing stop or target fills in this bar, or NaN."""
    stop = entry_px * (1.0 - pos * stop_loss) if np.isfinite(stop_loss) else np.nan
    if np.isfinite(trail_level) and (not np.isfinite(stop) or pos * (trail_level - stop) > 0):
        stop = trail_level
    target = entry_px * (1.0 + pos * take_profit) if np.isfinite(take_profit) else np.nan
    worst = lo if pos > 0 else h
    best = h if pos > 0 else lo
    if np.isfinite(stop):
        if pos * (o - stop) <= 0:
            return o  # gapped through the stop
        if pos * (worst - stop) <= 0:
            return stop
    if np.isfinite(target) and pos * (best - target) >= 0:
        return o if pos * (o - target) >= 0 else target
    return np.nan


@_jit
def simulate_into_nb(open_, high, low, close, target, trail, gate, fill_close, long_only, fees, slippage, cash,
                     integer_shares, stop_loss, take_profit, equity, exposure, trades, stats, ret_sum, ret_count):
    """The simulation and its metrics in one pass over one symbol's bars.

    Returns (trade count, next position): the position held after the pending order of
    the last bar fills (+1 / -1 / 0; NaN for a symbol without bars) — what to trade next.

    Inputs as :func:`simulate_nb`, plus `gate` (per-bar bool: False forces the target flat;
    empty = no filter). Outputs, each skipped when passed empty:

    * `equity` (float64, n) and `exposure` (uint8, n) per bar, `trades` ((n + 1) × 9);
    * `stats` (``N_STATS``): the ``STAT_FIELDS`` of the symbol — the metrics are
      accumulated as the bars go, so no per-bar array is needed for them; with a
      1-element `stats` only the number of closed trades is added to ``stats[0]``;
    * `ret_sum` (n), `ret_count` (n + 1): each bar's return is added to ``ret_sum`` from the
      symbol's second bar on (0 for a wiped-out account), and 1 is added to ``ret_count`` at
      that second bar; the cumulative sum of ``ret_count`` is then, bar by bar, the number
      of symbols in the equal-weight portfolio (a symbol stays in it, in cash, after its
      last bar). One add per symbol instead of one per bar.
    """
    n = close.shape[0]
    record = equity.shape[0] == n
    use_trail = trail.shape[0] == n
    use_gate = gate.shape[0] == n
    add_returns = ret_sum.shape[0] == n
    has_stops = np.isfinite(stop_loss) or np.isfinite(take_profit)
    want_stats = stats.shape[0] >= N_STATS  # the running metrics are ~40 % of the pass
    k = 0
    trade_state = np.zeros(TRADE_STATE_SIZE)
    bal = cash
    pos = 0.0  # +1 long, -1 short, 0 flat
    shares = 0.0
    entry_px = 0.0
    entry_fee = 0.0
    entry_bar = 0.0  # float: it goes into the float trades array
    best = 0.0  # best high (long) / low (short) since entry, for the trailing stop
    trail_level = np.nan
    pending = np.nan  # a target waiting for the next valid open
    held = np.nan  # the target last acted on
    blocked = False  # flat after a protective exit until the target changes
    ruined = False  # equity reached 0: nothing trades any more
    last_valid = -1
    first_valid = -1
    acc = metrics_start()
    prev_e = np.nan
    gap_exposed = 0.0  # held bars of a gap, counted once a later bar shows the symbol still exists

    for t in range(n):
        o, h, lo, c = open_[t], high[t], low[t], close[t]
        # a NaN or inf in any of the four makes the float64 sum non-finite (one test, not four)
        if not np.isfinite(np.float64(o) + np.float64(h) + np.float64(lo) + np.float64(c)):
            if last_valid >= 0:  # a missing bar: equity carried, so no fake return appears
                held_now = 1.0 if pos != 0 else 0.0
                gap_exposed += held_now
                if want_stats:
                    acc = metrics_push(acc, prev_e, 0.0)
                if record:
                    equity[t] = prev_e
                    exposure[t] = np.uint8(held_now)
            continue
        if last_valid < 0:
            first_valid = t
        last_valid = t
        pos_at_open = pos

        # (1) the order of the previous valid bar fills at this open
        if np.isfinite(pending):
            to = pending
            pending = np.nan
            if to != pos:
                bal, pos, shares, entry_px, entry_fee, entry_bar, k = _move(
                    to, o, t, bal, pos, shares, entry_px, entry_fee, entry_bar, slippage, fees, integer_shares,
                    trades, k, trade_state)
                trail_level = np.nan
                if pos != 0:
                    best = h if pos > 0 else lo

        # (2) protective exits inside this bar
        if pos != 0 and (has_stops or np.isfinite(trail_level)):
            px = _protective_exit(pos, entry_px, stop_loss, take_profit, trail_level, o, h, lo)
            if np.isfinite(px):
                bal, k = _close(bal, pos, shares, entry_px, entry_fee, entry_bar, px, t, slippage, fees, trades, k,
                                trade_state)
                pos = 0.0
                trail_level = np.nan
                blocked = True

        # (3) this bar's target: act at the close, or at the next open
        want = target[t] if not ruined else np.nan
        if use_gate and not gate[t] and np.isfinite(want):
            want = 0.0  # the regime filter forbids positions this bar
        if np.isfinite(want):
            if long_only and want < 0:
                want = 0.0
            want = 1.0 if want > 0 else (-1.0 if want < 0 else 0.0)
            if blocked and want == held:
                want = np.nan  # the signal that was stopped out is still on: stay flat
            else:
                blocked = False
                held = want
        if np.isfinite(want) and want != pos:
            if fill_close:
                bal, pos, shares, entry_px, entry_fee, entry_bar, k = _move(
                    want, c, t, bal, pos, shares, entry_px, entry_fee, entry_bar, slippage, fees, integer_shares,
                    trades, k, trade_state)
                trail_level = np.nan
                best = c
            else:
                pending = want

        # (4) the trailing stop ratchets on this bar's extremes, for the next bar
        if pos != 0 and use_trail and np.isfinite(trail[t]):
            best = max(best, h) if pos > 0 else min(best, lo)
            level = best - pos * trail[t]
            if not np.isfinite(trail_level) or pos * (level - trail_level) > 0:
                trail_level = level

        e = bal + pos * shares * np.float64(c)
        exposed = 1.0 if (pos != 0 or pos_at_open != 0) else 0.0
        if e <= 0.0 and not ruined:
            # The account is wiped out (a short squeezed past its equity): the broker closes
            # the position at this close and the symbol trades no more, as backtesting.py stops.
            if pos != 0:
                bal, k = _close(bal, pos, shares, entry_px, entry_fee, entry_bar, c, t, 0.0, 0.0, trades, k,
                                trade_state)
                pos = 0.0
            ruined = True
            bal = 0.0
            e = 0.0
            pending = np.nan
        if want_stats:
            acc = metrics_push(acc, e, exposed + gap_exposed)
        gap_exposed = 0.0
        if add_returns and e != prev_e and prev_e > 0.0:  # only a change adds to the sum
            ret_sum[t] += e / prev_e - 1.0
        if record:
            equity[t] = e
            exposure[t] = np.uint8(exposed)
        prev_e = e

    if pos != 0 and last_valid >= 0:
        c = close[last_valid]
        pnl = pos * shares * (c - entry_px) - entry_fee
        k = _record(trades, k, entry_bar, last_valid, pos, shares, entry_px, entry_fee, c, pnl, 1.0)
    if add_returns and first_valid >= 0:
        ret_count[first_valid + 1] += 1.0  # counted from its second bar on: see the docstring
    if record:
        exposure[last_valid + 1:] = 0  # after the last bar the symbol is gone, not held
    if want_stats:
        m = np.empty(len(METRIC_NAMES))
        metrics_finish(acc, SESSIONS_PER_YEAR, m)
        tm = np.empty(len(TRADE_METRIC_NAMES))
        trade_finish(trade_state, 0, tm)
        stats[0], stats[1], stats[2], stats[3], stats[4], stats[5] = m[0], m[1], m[2], m[3], m[4], m[5]
        stats[6], stats[7], stats[8], stats[9], stats[10] = tm[N_TRADES], tm[WIN_RATE], m[EXPOSURE], \
            tm[PROFIT_FACTOR], prev_e
    elif stats.shape[0] == 1:
        stats[0] += trade_state[0]
    next_pos = np.nan if last_valid < 0 else (pending if np.isfinite(pending) else pos)
    return k, next_pos


@_jit
def simulate_curves_nb(open_, high, low, close, target, trail, gate, fill_close, long_only, fees, slippage, cash,
                       integer_shares, stop_loss, take_profit):
    """:func:`simulate_into_nb` with its per-bar outputs: (equity, exposure, trades, next position)."""
    n = close.shape[0]
    equity = np.full(n, np.nan)
    exposure = np.zeros(n, np.uint8)
    trades = np.empty((n + 1, len(TRADE_FIELDS)))
    none = np.empty(0)
    k, next_pos = simulate_into_nb(open_, high, low, close, target, trail, gate, fill_close, long_only, fees,
                                   slippage, cash, integer_shares, stop_loss, take_profit, equity, exposure, trades,
                                   none, none, none)
    return equity, exposure, trades[:k].copy(), next_pos


@_jit
def simulate_nb(open_, high, low, close, target, fill_close, long_only, fees, slippage, cash,
                integer_shares, stop_loss, take_profit, trail):
    """Simulate one symbol. Returns (equity, exposure, trades) — see the module docstring.

    `trail` is an array of trailing distances in price units (NaN = no trailing stop that
    bar); pass an empty array for none. `stop_loss` / `take_profit` are fractions, NaN = off.
    """
    equity, exposure, trades, _ = simulate_curves_nb(open_, high, low, close, target, trail, np.empty(0, np.bool_),
                                                     fill_close, long_only, fees, slippage, cash, integer_shares,
                                                     stop_loss, take_profit)
    return equity, exposure, trades

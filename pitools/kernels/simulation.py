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

__all__ = ["simulate_nb", "TRADE_FIELDS", "T_ENTRY_BAR", "T_EXIT_BAR", "T_SIDE", "T_SIZE", "T_ENTRY_PRICE",
           "T_EXIT_PRICE", "T_PNL", "T_RETURN", "T_OPEN_AT_END"]

_jit = numba.njit(cache=True, error_model="numpy")

# Columns of the trades array.
TRADE_FIELDS = ("entry_bar", "exit_bar", "side", "size", "entry_price", "exit_price", "pnl", "return", "open_at_end")
T_ENTRY_BAR, T_EXIT_BAR, T_SIDE, T_SIZE, T_ENTRY_PRICE, T_EXIT_PRICE, T_PNL, T_RETURN, T_OPEN_AT_END = range(9)


# Slots of the position state array (a small array, so helpers can change it in place).
_BAL, _POS, _SHARES, _ENTRY_PX, _ENTRY_FEE, _ENTRY_BAR = range(6)


@_jit
def _fill_price(price, side, slippage):
    """Price paid (side=+1, buying) or received (side=-1, selling) after slippage."""
    return price * (1.0 + slippage) if side > 0 else price * (1.0 - slippage)


@_jit
def _record(st, trades, k, exit_bar, exit_px, pnl, open_at_end):
    shares, entry_px, entry_fee = st[_SHARES], st[_ENTRY_PX], st[_ENTRY_FEE]
    trades[k, T_ENTRY_BAR] = st[_ENTRY_BAR]
    trades[k, T_EXIT_BAR] = exit_bar
    trades[k, T_SIDE] = st[_POS]
    trades[k, T_SIZE] = shares
    trades[k, T_ENTRY_PRICE] = entry_px
    trades[k, T_EXIT_PRICE] = exit_px
    trades[k, T_PNL] = pnl
    trades[k, T_RETURN] = pnl / (shares * entry_px + entry_fee)
    trades[k, T_OPEN_AT_END] = open_at_end
    return k + 1


@_jit
def _close(st, price, t, slippage, fees, trades, k):
    """Close the position at `price` (before slippage); returns the new trade count."""
    pos, shares = st[_POS], st[_SHARES]
    px = _fill_price(price, -pos, slippage)
    fee = shares * px * fees
    st[_BAL] += pos * shares * px - fee
    k = _record(st, trades, k, t, px, pos * shares * (px - st[_ENTRY_PX]) - st[_ENTRY_FEE] - fee, 0.0)
    st[_POS] = 0.0
    st[_SHARES] = 0.0
    return k


@_jit
def _open(st, to, price, t, slippage, fees, integer_shares):
    """Spend the whole balance on a position of side `to`; False if not even one share fits."""
    px = _fill_price(price, to, slippage)
    size = st[_BAL] / (px * (1.0 + fees))
    if integer_shares:
        size = np.floor(size)
    if size <= 0.0:
        return False
    st[_ENTRY_FEE] = size * px * fees
    st[_BAL] -= to * size * px + st[_ENTRY_FEE]
    st[_POS] = to
    st[_SHARES] = size
    st[_ENTRY_PX] = px
    st[_ENTRY_BAR] = t
    return True


@_jit
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
def simulate_nb(open_, high, low, close, target, fill_close, long_only, fees, slippage, cash,
                integer_shares, stop_loss, take_profit, trail):
    """Simulate one symbol. Returns (equity, exposure, trades) — see the module docstring.

    `trail` is an array of trailing distances in price units (NaN = no trailing stop that
    bar); pass an empty array for none. `stop_loss` / `take_profit` are fractions, NaN = off.
    """
    n = close.shape[0]
    equity = np.full(n, np.nan)
    exposure = np.zeros(n, np.uint8)
    trades = np.empty((n + 1, len(TRADE_FIELDS)))
    k = 0
    use_trail = trail.shape[0] == n
    st = np.zeros(6)
    st[_BAL] = cash
    best = 0.0  # best high (long) / low (short) since entry, for the trailing stop
    trail_level = np.nan
    pending = np.nan  # a target waiting for the next valid open
    held = np.nan  # the target last acted on
    blocked = False  # flat after a protective exit until the target changes
    ruined = False  # equity reached 0: nothing trades any more
    last_valid = -1

    for t in range(n):
        o, h, lo, c = open_[t], high[t], low[t], close[t]
        if not (np.isfinite(o) and np.isfinite(h) and np.isfinite(lo) and np.isfinite(c)):
            if last_valid >= 0:  # a missing bar: equity carried, so no fake return appears
                equity[t] = equity[last_valid]
                exposure[t] = 1 if st[_POS] != 0 else 0
            continue
        last_valid = t
        pos_at_open = st[_POS]

        # (1) the order of the previous valid bar fills at this open
        if np.isfinite(pending):
            to = pending
            pending = np.nan
            if to != st[_POS]:
                if st[_POS] != 0:
                    k = _close(st, o, t, slippage, fees, trades, k)
                    trail_level = np.nan
                if to != 0 and _open(st, to, o, t, slippage, fees, integer_shares):
                    best = h if to > 0 else lo
                    trail_level = np.nan

        # (2) protective exits inside this bar
        if st[_POS] != 0:
            px = _protective_exit(st[_POS], st[_ENTRY_PX], stop_loss, take_profit, trail_level, o, h, lo)
            if np.isfinite(px):
                k = _close(st, px, t, slippage, fees, trades, k)
                trail_level = np.nan
                blocked = True

        # (3) this bar's target: act at the close, or at the next open
        want = target[t] if not ruined else np.nan
        if np.isfinite(want):
            if long_only and want < 0:
                want = 0.0
            want = 1.0 if want > 0 else (-1.0 if want < 0 else 0.0)
            if blocked and want == held:
                want = np.nan  # the signal that was stopped out is still on: stay flat
            else:
                blocked = False
                held = want
        if np.isfinite(want) and want != st[_POS]:
            if fill_close:
                if st[_POS] != 0:
                    k = _close(st, c, t, slippage, fees, trades, k)
                    trail_level = np.nan
                if want != 0 and _open(st, want, c, t, slippage, fees, integer_shares):
                    best = c
                    trail_level = np.nan
            else:
                pending = want

        # (4) the trailing stop ratchets on this bar's extremes, for the next bar
        pos = st[_POS]
        if pos != 0 and use_trail and np.isfinite(trail[t]):
            best = max(best, h) if pos > 0 else min(best, lo)
            level = best - pos * trail[t]
            if not np.isfinite(trail_level) or pos * (level - trail_level) > 0:
                trail_level = level

        equity[t] = st[_BAL] + pos * st[_SHARES] * c
        exposure[t] = 1 if (pos != 0 or pos_at_open != 0) else 0
        if equity[t] <= 0.0 and not ruined:
            # The account is wiped out (a short squeezed past its equity): the broker closes
            # the position at this close and the symbol trades no more, as backtesting.py stops.
            if pos != 0:
                k = _close(st, c, t, 0.0, 0.0, trades, k)
            ruined = True
            st[_BAL] = 0.0
            equity[t] = 0.0
            pending = np.nan

    exposure[last_valid + 1:] = 0  # after the last bar the symbol is gone, not held
    if st[_POS] != 0 and last_valid >= 0:
        c = close[last_valid]
        pnl = st[_POS] * st[_SHARES] * (c - st[_ENTRY_PX]) - st[_ENTRY_FEE]
        k = _record(st, trades, k, last_valid, c, pnl, 1.0)
    return equity, exposure, trades[:k].copy()

"""What the morning report tells from a night's leaderboard and its signals: which strategies
are worth reading, tomorrow's positions, what changed since the night before, and the signals
that flipped side. DataFrames in, DataFrames out; the reads are named queries of
:class:`pitools.market.db.TradesDB` (``night_leaderboard``, ``latest_night``, ``signals``).

>>> import pandas as pd
>>> board = pd.DataFrame({"strategy": ["macd", "sma_cross", "rsi_reversion"], "fitness": [0.4, 0.9, -0.2]})
>>> worth_reading(board)
['sma_cross', 'macd']
>>> before = pd.DataFrame({"strategy": ["macd"], "symbol": ["AAPL"], "side": ["long"]})
>>> signal_flips(before, before.assign(side="flat"))
  strategy symbol side before side now
0     macd   AAPL        long     flat
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pitools.engine.strategies import format_params, format_value

__all__ = ["changes_since", "signal_counts", "signal_flips", "worth_reading", "positions"]


def changes_since(before: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    """Per strategy, fitness and parameters the night before against tonight.

    Parameters
    ----------
    before, now : pandas.DataFrame
        ``db.night_leaderboard`` of the two nights.

    Returns
    -------
    pandas.DataFrame
        Indexed by strategy: ``fitness before``, ``fitness now``, ``Δ fitness``,
        ``params before``, ``params now``, ``what changed`` (``fast 10→12; slow 30→41``,
        ``same params``, ``new strategy`` or ``not evaluated tonight``).
    """

    b = before.set_index("strategy") if len(before) else pd.DataFrame(columns=["fitness", "params"])
    n = now.set_index("strategy") if len(now) else pd.DataFrame(columns=["fitness", "params"])
    rows = {}
    for name in list(dict.fromkeys([*n.index, *b.index])):
        pb = b["params"].get(name) if name in b.index else None
        pn = n["params"].get(name) if name in n.index else None
        fb = float(b["fitness"].get(name)) if name in b.index else math.nan
        fn = float(n["fitness"].get(name)) if name in n.index else math.nan
        if pb is None:
            what = "new strategy"
        elif pn is None:
            what = "not evaluated tonight"
        else:
            diffs = [f"{k} {format_value(pb.get(k))}→{format_value(pn.get(k))}" for k in dict.fromkeys([*pb, *pn])
                     if pb.get(k) != pn.get(k)]
            what = "; ".join(diffs) if diffs else "same params"
        rows[name] = {"fitness before": fb, "fitness now": fn, "Δ fitness": fn - fb,
                      "params before": format_params(pb, name), "params now": format_params(pn, name),
                      "what changed": what}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "strategy"
    return out.round({"fitness before": 3, "fitness now": 3, "Δ fitness": 3})


def signal_counts(signals: pd.DataFrame) -> pd.DataFrame:
    """Signals per strategy (rows) and side (columns ``long``, ``short``, ``flat``)."""
    if signals.empty:
        return pd.DataFrame(columns=["long", "short", "flat"], dtype=np.int64)
    t = pd.crosstab(signals["strategy"], signals["side"])
    return t.reindex(columns=["long", "short", "flat"], fill_value=0)


def signal_flips(before: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    """Signals whose side changed between two sessions' signals (``symbol``, ``strategy``, ``side``).

    A symbol present on one side only counts as flat on the other. Returns ``strategy``,
    ``symbol``, ``side before``, ``side now``, sorted by strategy and symbol.
    """
    key = ["strategy", "symbol"]
    b = before[key + ["side"]].rename(columns={"side": "side before"})
    n = now[key + ["side"]].rename(columns={"side": "side now"})
    m = b.merge(n, on=key, how="outer").fillna({"side before": "flat", "side now": "flat"})
    m = m[m["side before"] != m["side now"]]
    return m.sort_values(key).reset_index(drop=True)


def worth_reading(board: pd.DataFrame) -> list[str]:
    """The strategies of a leaderboard (``db.night_leaderboard``) with a positive fitness —
    out-of-sample Sharpe left after the penalties — best first. The others (fitness ≤ 0, or no
    result) lost out of sample tonight: their signals are shown apart, not to be traded."""
    if board.empty:
        return []
    fit = pd.to_numeric(board["fitness"], errors="coerce").astype(float)
    ranked = board.assign(_fit=fit)[fit > 0].sort_values(["_fit", "strategy"], ascending=[False, True])
    return list(ranked["strategy"])


def positions(signals: pd.DataFrame, board: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tomorrow's positions (the non-flat signals), split into those of strategies worth reading
    and the others.

    Parameters
    ----------
    signals : pandas.DataFrame
        One session's rows of trades.db ``signals`` (``db.signals(session)``).
    board : pandas.DataFrame
        The night's ``db.night_leaderboard`` (fitness per strategy).

    Returns
    -------
    (worth, others) : two pandas.DataFrame
        Columns ``strategy``, ``fitness``, ``symbol``, ``side``, ``regime``; best strategy
        first, then by symbol. `worth`: strategies of :func:`worth_reading`; `others`: those
        with fitness ≤ 0 or none tonight. ``strength`` is left out: ``pitools.market.signals``
        writes 1.0 for every position (0.0 for flat), so it says nothing a side does not.
    """
    cols = ["strategy", "fitness", "symbol", "side", "regime"]
    fitness = dict(zip(board["strategy"], pd.to_numeric(board["fitness"], errors="coerce").astype(float))) \
        if len(board) else {}
    active = signals[signals["side"] != "flat"] if len(signals) else signals
    out = pd.DataFrame({"strategy": active.get("strategy", pd.Series(dtype=object)).to_numpy(),
                        "symbol": active.get("symbol", pd.Series(dtype=object)).to_numpy(),
                        "side": active.get("side", pd.Series(dtype=object)).to_numpy(),
                        "regime": active.get("regime", pd.Series(dtype=object)).to_numpy()})
    out["fitness"] = out["strategy"].map(fitness).astype(float).round(3)
    out = out.sort_values(["fitness", "strategy", "symbol"], ascending=[False, True, True], na_position="last")
    good = out["strategy"].isin(worth_reading(board))
    return out[good][cols].reset_index(drop=True), out[~good][cols].reset_index(drop=True)

"""Tomorrow's signals: the position each strategy wants in each symbol for the next session.

For every strategy, its best parameters (the highest fitness of the latest night in
``<data_dir>/evolve/<strategy>/evaluations.jsonl`` up to the night asked for — a night
dated in the future never steers the nights before it; the strategy's defaults when it
has never been evolved) are backtested on the latest bars. A symbol's wanted position is the
one the backtest holds once its last bar's order fills (a NaN target holds, a stopped-out
signal stays flat). The rows go to ``signals`` in trades.db for the
next NYSE session — replacing that session's rows of those strategies, so rerunning a
night never duplicates them.

>>> rows = next_session_signals(panel, "sma_cross", {"fast": 10, "slow": 30})
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pitools.engine import strategies as _strategies
from pitools.engine.backtest import backtest
from pitools.search.evolution_log import LOG_NAME, read_evaluations
from pitools.data.calendar import sessions

__all__ = ["best_params", "fresh_symbols", "next_session", "next_session_signals", "write_next_session_signals"]


def best_params(data_dir: str | Path, strategy: str, night=None) -> tuple[dict, str]:
    """(params, where they come from) for `strategy`: the best of its latest evolved night.

    `night` (``YYYY-MM-DD``): only nights up to it count, so re-running a night, or any
    night after a run dated in the future, uses what was known that night. Default:
    every night in the log.

    >>> params, where = best_params("data", "sma_cross", night="2026-11-20")
    """
    path = Path(data_dir) / "evolve" / strategy / LOG_NAME
    records = [r for r in read_evaluations(path, night=night) if r["fitness"] is not None]
    if not records:
        return dict(_strategies.get(strategy).defaults), "defaults (never evolved)"
    night = max(r["night"] for r in records)
    best = max((r for r in records if r["night"] == night), key=lambda r: r["fitness"])
    return dict(best["params"]), f"evolved, night {night}, fitness {best['fitness']:.3f}"


def next_session(last_date) -> pd.Timestamp:
    """The first NYSE session after `last_date`."""

    last = pd.Timestamp(last_date).normalize()
    return sessions(last + pd.Timedelta(days=1), last + pd.Timedelta(days=15))[0]


def fresh_symbols(panel, night) -> set[str]:
    """The symbols of `panel` with a bar (a close) on the session `night`; only they get signals."""
    night = pd.Timestamp(night).normalize()
    if len(panel.dates) == 0 or panel.dates[-1] != night:  # the panel has no bar on the night at all
        return set()
    last = panel.field("close")[-1]
    return {s for s, c in zip(panel.symbols, last) if not math.isnan(c)}


def next_session_signals(panel, strategy: str, params: dict | None = None, direction: str = "long_only",
                         regime: str | None = None, night=None, **backtest_kwargs) -> list[dict]:
    """One row per symbol that has a bar on `night` (default: the panel's last session):
    symbol, strategy, side (long/short/flat), strength, params, regime.

    A symbol without the night's bar gets no row: a signal is only ever computed from fresh
    data. The side is the backtest's own next position (``res.next_positions``): the last
    bar's order once filled, so holds, stops and the long-only clip are the simulation's.
    """
    checked = _strategies.get(strategy).validate(params)
    fresh = fresh_symbols(panel, night if night is not None else panel.dates[-1])
    if not fresh:
        return []
    wanted = backtest(strategy, panel, checked, direction=direction, **backtest_kwargs).next_positions
    rows = []
    for symbol, pos in wanted.items():
        if math.isnan(pos) or symbol not in fresh:
            continue  # no bars, or none on the night: stale
        side = "long" if pos > 0 else "short" if pos < 0 else "flat"
        rows.append({"symbol": symbol, "strategy": strategy, "side": side, "strength": 1.0 if side != "flat" else 0.0,
                     "params": checked, "regime": regime})
    return rows


def write_next_session_signals(db, panel, strategies_=None, data_dir=None, run_id: int | None = None,
                               regime: str | None = None, session=None, params: dict | None = None, night=None,
                               **backtest_kwargs) -> pd.DataFrame:
    """Signals of `strategies_` (default: all eight) for `session` (default: the session after
    `night`, which defaults to the panel's last bar), written to `db` (a
    :class:`pitools.market.db.TradesDB`); returns that session's rows. Only symbols with a bar on
    `night` get a row (:func:`fresh_symbols`); the rows of the session for these strategies
    are replaced, so a symbol gone stale loses its earlier row. `params` (strategy →
    parameters) are used as given; otherwise each strategy's :func:`best_params` from
    `data_dir` (its defaults without one), of the nights before `session`."""
    night = pd.Timestamp(night).normalize() if night is not None else panel.dates[-1]
    session = str(pd.Timestamp(session).date()) if session is not None else str(next_session(night).date())
    before = str((pd.Timestamp(session) - pd.Timedelta(days=1)).date())  # a night after the session cannot trade it
    names = list(strategies_ or _strategies.names())
    rows = []
    for name in names:
        if params is not None and name in params:
            chosen = params[name]
        else:
            chosen = best_params(data_dir, name, night=before)[0] if data_dir is not None else None
        rows += next_session_signals(panel, name, chosen, regime=regime, night=night, **backtest_kwargs)
    db.write_signals(session, rows, run_id=run_id, strategies=names)
    return db.signals(session)

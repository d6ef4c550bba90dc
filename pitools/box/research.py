"""What the nightly research notebooks (02_regime, 03_research, 05_report) compute, outside them.

The notebooks stay short and readable; the decisions and tables they show are here, as
functions tested on their own:

* the regime model's "fit or update" (:func:`fit_or_update`) and the index series it needs
  (:func:`index_series`);
* tonight's candidates from the evaluation logs (:func:`read_evaluation_log`);
* the morning report's reads of trades.db — a night's leaderboard, the night before, what
  changed, signals that flipped side, the current regime — and of the runner's
  ``run.json`` (resources used per notebook).

>>> model, why = fit_or_update(regime_model_path(prof), vix, spx, refit_every_days=7)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pitools.errors import DataError, PitoolsError
from pitools.search.evolution_log import LOG_NAME, as_night, read_evaluations

__all__ = ["INDEX_SYMBOLS", "GROWTH_REFIT", "regime_model_path", "index_series", "refit_reason", "fit_or_update",
           "current_regime", "regime_table", "read_evaluation_log", "night_leaderboard", "previous_night", "changes_since",
           "signal_sessions", "signal_counts", "signal_flips", "worth_reading", "positions",
           "read_run_record", "resources_table"]

from pitools.market.regime.lifecycle import (GROWTH_REFIT, INDEX_SYMBOLS, _days_arg, current_regime,  # noqa: F401
                                             fit_or_update, index_series, refit_reason, regime_model_path,
                                             regime_table)


# ---------------------------------------------------------------- evolution logs

def read_evaluation_log(data_dir, night: str | None = None, strategies=None) -> pd.DataFrame:
    """Evaluations from ``<data_dir>/evolve/<strategy>/evaluations.jsonl``, read by
    :func:`pitools.search.evolution_log.read_evaluations` (lines that are not records skipped, with a warning).

    Parameters
    ----------
    data_dir : path-like
        The profile's data directory.
    night : str, optional
        Only this night's evaluations (``YYYY-MM-DD``).
    strategies : sequence of str, optional
        Default: every strategy with a log.

    Returns
    -------
    pandas.DataFrame
        ``strategy``, ``night``, ``generation``, ``params`` (dict), ``fitness`` (NaN when
        the candidate failed), ``incumbent``, and the scoring details of each record.
    """
    night = as_night(night)
    root = Path(data_dir) / "evolve"
    names = list(strategies) if strategies is not None else sorted(p.name for p in root.glob("*") if p.is_dir())
    rows = []
    for name in names:
        # night=: this night and earlier ones (a night reads only its past), then this one alone
        for rec in read_evaluations(root / name / LOG_NAME, night=night):
            if night is None or rec["night"] == night:
                rows.append({"strategy": name, **rec})
    cols = ["strategy", "night", "generation", "params", "fitness", "incumbent"]
    df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)
    df["fitness"] = pd.to_numeric(df["fitness"], errors="coerce").astype(float)
    return df


# ---------------------------------------------------------------- trades.db for the report

def night_leaderboard(db, night: str) -> pd.DataFrame:
    """The best parameters per strategy of `night` from trades.db ``evaluations`` (params as dicts),
    best fitness first; empty when that night has none."""
    df = db.query("SELECT night, strategy, params, fitness, is_sharpe, oos_sharpe, oos_max_drawdown, "
                  "trades_per_year, deflated_sharpe, run_id FROM evaluations WHERE night = ? AND rank = 1 "
                  "ORDER BY fitness IS NULL, fitness DESC, strategy", (night,))
    df["params"] = [_in_space_order(name, json.loads(p)) for name, p in zip(df["strategy"], df["params"])]
    num = ["fitness", "is_sharpe", "oos_sharpe", "oos_max_drawdown", "trades_per_year", "deflated_sharpe"]
    df[num] = df[num].apply(pd.to_numeric, errors="coerce").astype(float)
    return df


def _in_space_order(strategy: str, params: dict) -> dict:
    """`params` ordered like the strategy's search space (trades.db stores them sorted by name)."""
    from pitools.engine import strategies

    if strategy not in strategies.REGISTRY:
        return params
    order = list(strategies.get(strategy).space)
    return dict(sorted(params.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def previous_night(db, night: str) -> str | None:
    """The latest night before `night` that has evaluations in trades.db, or None (a first night)."""
    return db.conn.execute("SELECT MAX(night) FROM evaluations WHERE night < ?", (night,)).fetchone()[0]


def changes_since(before: pd.DataFrame, now: pd.DataFrame) -> pd.DataFrame:
    """Per strategy, fitness and parameters the night before against tonight.

    Parameters
    ----------
    before, now : pandas.DataFrame
        :func:`night_leaderboard` of the two nights.

    Returns
    -------
    pandas.DataFrame
        Indexed by strategy: ``fitness before``, ``fitness now``, ``Δ fitness``,
        ``params before``, ``params now``, ``what changed`` (``fast 10→12; slow 30→41``,
        ``same params``, ``new strategy`` or ``not evaluated tonight``).
    """
    from pitools.engine.strategies import format_params, format_value

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


def signal_sessions(db) -> list[str]:
    """Sessions that have signals in trades.db, oldest first."""
    return [r[0] for r in db.conn.execute("SELECT DISTINCT session FROM signals WHERE session IS NOT NULL "
                                          "ORDER BY session")]


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
    """The strategies of a leaderboard (:func:`night_leaderboard`) with a positive fitness —
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
        The night's :func:`night_leaderboard` (fitness per strategy).

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


# ---------------------------------------------------------------- the run record

def read_run_record(run_dir) -> dict | None:
    """``run_dir/run.json`` as written by the nightly runner, or None (no run_dir, no file, unreadable)."""
    if run_dir is None:
        return None
    from pitools.box.reports import RUN_FILE

    path = Path(run_dir) / RUN_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def resources_table(record: dict, now=None, running_rss_bytes: int | None = None) -> pd.DataFrame:
    """Per notebook of a run record: status, duration (s), peak PSS and RSS (MB), and a total row.

    The total's duration is the sum, its memory the run's ``peak_pss_bytes`` (else the
    largest notebook's). A notebook still running (the report itself, read while the run
    goes on) says ``running``, its duration so far (from its ``started_at`` to `now`,
    default the current time) and, given `running_rss_bytes`, its kernel's peak RSS so far;
    what the runner has not measured yet is NaN (a report shows it as a dash).
    """
    mb = 1024.0 * 1024.0
    moment = pd.Timestamp.now(tz="UTC") if now is None else _utc(now)
    rows = {}
    for nb in record.get("notebooks") or []:
        status = nb.get("status", "?")
        row = {"status": status, "duration (s)": _float(nb.get("duration_s")),
               "peak PSS (MB)": _float(nb.get("peak_pss_bytes")) / mb,
               "peak RSS (MB)": _float(nb.get("peak_rss_bytes")) / mb}
        if status == "running":
            started = _utc(nb.get("started_at"))
            if not math.isfinite(row["duration (s)"]) and started is not None and moment is not None:
                row["duration (s)"] = max((moment - started).total_seconds(), 0.0)
            if not math.isfinite(row["peak RSS (MB)"]) and running_rss_bytes:
                row["peak RSS (MB)"] = float(running_rss_bytes) / mb
        rows[str(nb.get("name", "?"))] = row
    out = pd.DataFrame.from_dict(rows, orient="index",
                                 columns=["status", "duration (s)", "peak PSS (MB)", "peak RSS (MB)"])
    run_pss = _float(record.get("peak_pss_bytes")) / mb
    total = {"status": record.get("status", ""), "duration (s)": out["duration (s)"].sum(min_count=1),
             "peak PSS (MB)": run_pss if math.isfinite(run_pss) else out["peak PSS (MB)"].max(),
             "peak RSS (MB)": out["peak RSS (MB)"].max()}
    out.loc["total"] = total
    out.index.name = "notebook"
    return out.round({"duration (s)": 1, "peak PSS (MB)": 1, "peak RSS (MB)": 1})


def _utc(value) -> pd.Timestamp | None:
    """`value` (an ISO time, naive meaning UTC) as a UTC timestamp; None when it is not one."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _float(v) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan

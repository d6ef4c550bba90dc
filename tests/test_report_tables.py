"""What the reports' tables show: every row (or "first N of M"), no 0..n counter, parameters as
people write them, which strategies are worth reading, the running notebook's resources — the
helpers on small input, and 05_report run by papermill on a real trades.db with 120 signal rows."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest

import pitools as pt
from pitools.notebook import charts
from pitools.market import morning
from pitools.box import reports
from pitools.config import load_profile
from pitools.errors import DataError
from pitools.notebook.tables import table

ROOT = Path(__file__).resolve().parents[1]
NIGHT, SESSION = "2026-11-20", "2026-11-23"  # a Friday and the next NYSE session
COUNTER = re.compile(r"<tbody>\s*<tr>\s*<th>0</th>")  # a table whose rows are labelled 0, 1, 2 …


# ---------------------------------------------------------------- tables.table

def test_a_long_table_is_shown_whole_where_pandas_would_cut_it():
    df = pd.DataFrame({"strategy": ["sma_cross"] * 119, "symbol": [f"S{i:03d}" for i in range(119)]})
    assert "..." in repr(df)  # what the report used to show: 10 of 119 rows
    t = table(df, what="positions")
    text, page = repr(t), t._repr_html_()
    assert "..." not in text and len(text.splitlines()) == 120  # a header and every row
    assert all(f"S{i:03d}" in text and f"<td>S{i:03d}</td>" in page for i in range(119))
    assert page.count("<tr") == 120
    assert not text.splitlines()[1].lstrip().startswith("0 ") and not COUNTER.search(page)  # no row counter


def test_the_index_is_shown_only_when_it_labels_the_rows():
    counter = pd.DataFrame({"a": [1, 2]})
    assert repr(table(counter)).splitlines() == [" a", " 1", " 2"]
    named = pd.DataFrame({"a": [1, 2]}, index=pd.RangeIndex(1, 3, name="rank"))
    assert "rank" in repr(table(named)) and "<th>1</th>" in table(named)._repr_html_()
    labelled = pd.DataFrame({"a": [1, 2]}, index=["macd", "sma_cross"])
    assert repr(table(labelled)).splitlines()[1].startswith("macd")


def test_a_capped_table_says_first_n_of_m_and_missing_values_are_a_dash():
    df = pd.DataFrame({"n": range(7), "x": [1.5, np.nan, 3, 4, 5, 6, 7]})
    t = table(df, limit=3, what="flips")
    assert repr(t).splitlines()[0] == "first 3 of 7 flips:" and len(repr(t).splitlines()) == 5
    assert "first 3 of 7 flips" in t._repr_html_() and t._repr_html_().count("<tr") == 4
    assert "—" in repr(t) and "NaN" not in repr(t) and "NaN" not in t._repr_html_()
    assert table(df, limit=7).note == "" and table(df, limit=50).note == ""
    assert repr(table(df.iloc[:0], what="positions")) == "(no positions)"
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(DataError, match="`limit`"):
            table(df, limit=bad)
    with pytest.raises(DataError, match="`frame`"):
        table([1, 2])


def test_html_is_escaped():
    assert "<b>" not in table(pd.DataFrame({"a": ["<b>x</b>"]}))._repr_html_()


# ---------------------------------------------------------------- which strategies are worth reading

def _board():
    rows = [("xs_momentum", 1.2), ("sma_cross", 0.8), ("macd", 0.3), ("rsi_reversion", 0.05),
            ("atr_breakout", 0.0), ("bollinger_reversion", -0.1), ("donchian_breakout", -0.5),
            ("ts_momentum", math.nan)]
    params = {"xs_momentum": {"lookback": 60.0, "top_k": 4.0, "rebalance": 21.0},
              "sma_cross": {"fast": 25.0, "slow": 80.0},
              "rsi_reversion": {"n": 14.0, "lower": 19.453824394278428, "upper": 70.0}}
    return pd.DataFrame([{"strategy": s, "fitness": f, "is_sharpe": 1.0, "oos_sharpe": f, "oos_max_drawdown": 0.2,
                          "trades_per_year": 3.0, "deflated_sharpe": 0.5,
                          "params": params.get(s, pt.strategies.get(s).defaults)} for s, f in rows])


def _signals(n_symbols=15):
    rows = []
    for i, name in enumerate(pt.strategies.names()):
        for j in range(n_symbols):
            side = "flat" if (i + j) % 3 == 0 else "short" if (i * j) % 7 == 1 else "long"
            rows.append({"symbol": f"S{j:02d}", "strategy": name, "side": side,
                         "strength": 0.0 if side == "flat" else 1.0, "params": {}, "regime": "calm_bull"})
    return rows


def test_worth_reading_is_a_positive_fitness_best_first():
    assert morning.worth_reading(_board()) == ["xs_momentum", "sma_cross", "macd", "rsi_reversion"]
    assert morning.worth_reading(_board().iloc[:0]) == []


def test_positions_split_worth_reading_from_the_rest_and_drop_strength():
    signals = pd.DataFrame(_signals())
    good, others = morning.positions(signals, _board())
    active = signals[signals["side"] != "flat"]
    assert len(good) + len(others) == len(active) and len(good) and len(others)
    assert list(good.columns) == ["strategy", "fitness", "symbol", "side", "regime"]  # no strength
    assert set(good["strategy"]) == {"xs_momentum", "sma_cross", "macd", "rsi_reversion"}
    assert set(others["strategy"]) == set(pt.strategies.names()) - set(good["strategy"])
    assert (good["fitness"] > 0).all() and not (others["fitness"] > 0).any()
    assert good["fitness"].is_monotonic_decreasing and good["strategy"].iloc[0] == "xs_momentum"
    assert others["fitness"].isna().tolist()[-1]  # no result: last
    assert sorted(zip(good["strategy"], good["symbol"], good["side"])) == sorted(
        (r.strategy, r.symbol, r.side) for r in active.itertuples() if r.strategy in set(good["strategy"]))
    assert (good["side"] != "flat").all() and (others["side"] != "flat").all()
    # nothing evaluated tonight: every position is apart
    good, others = morning.positions(signals, _board().iloc[:0])
    assert good.empty and len(others) == len(active)


def test_the_leaderboard_says_which_are_worth_reading_and_writes_params_plainly():
    t = charts.leaderboard_table(_board())
    verdict = dict(zip(t["strategy"], t["worth reading"]))
    assert verdict["xs_momentum"] == "yes" and verdict["rsi_reversion"] == "yes"
    assert verdict["atr_breakout"] == "no: fitness ≤ 0" and verdict["donchian_breakout"] == "no: fitness ≤ 0"
    assert verdict["ts_momentum"] == "no: no result"
    params = dict(zip(t["strategy"], t["params"]))
    assert params["sma_cross"] == "fast=25, slow=80"
    assert params["rsi_reversion"] == "n=14, lower=19.45, upper=70"
    assert params["xs_momentum"] == "lookback=60, top_k=4, rebalance=21"


# ---------------------------------------------------------------- resources while the report runs

def test_the_running_notebook_shows_what_is_known_not_nan():
    started = pd.Timestamp("2026-11-20T23:40:00+01:00")
    record = {"status": "running", "peak_pss_bytes": 300 * 2**20, "notebooks": [
        {"name": "04_signals", "status": "ok", "duration_s": 4.0, "peak_pss_bytes": 200 * 2**20,
         "peak_rss_bytes": 150 * 2**20},
        {"name": "05_report", "status": "running", "started_at": started.isoformat()}]}
    t = reports.resources_table(record, now=started + pd.Timedelta(seconds=7.25), running_rss_bytes=180 * 2**20)
    row = t.loc["05_report"]
    assert row["status"] == "running" and row["duration (s)"] == 7.2 and row["peak RSS (MB)"] == 180.0
    assert math.isnan(row["peak PSS (MB)"])  # measured by the runner when the notebook ends: a dash
    assert "NaN" not in repr(table(t)) and "—" in repr(table(t))
    assert t.loc["total", "duration (s)"] == 11.2 and t.loc["total", "peak RSS (MB)"] == 180.0
    # a naive started_at is UTC; without one the duration is unknown
    naive = dict(record, notebooks=[{"name": "05_report", "status": "running", "started_at": "2026-11-20T22:40:00"}])
    assert reports.resources_table(naive, now=started + pd.Timedelta(seconds=2)).loc["05_report", "duration (s)"] == 2.0
    unknown = dict(record, notebooks=[{"name": "05_report", "status": "running"}])
    assert math.isnan(reports.resources_table(unknown).loc["05_report", "duration (s)"])
    # a finished notebook keeps what the runner wrote
    assert reports.resources_table(record).loc["04_signals", "duration (s)"] == 4.0


# ---------------------------------------------------------------- 05_report on a real trades.db

def _outputs_by_cell(path: Path) -> dict[str, list]:
    return {c["id"]: c.get("outputs", []) for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"}


def _plain(out) -> str:
    return out.get("text", "") if out.get("output_type") == "stream" else out.get("data", {}).get("text/plain", "")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from pitools.box.kernelspec import ensure_kernel

    ensure_kernel()
    tmp = tmp_path_factory.mktemp("report")
    overrides = [f"data_dir={tmp / 'data'}"]
    prof = load_profile("ci", overrides=overrides)
    labels = pd.Series(["calm_bull"] * 30 + ["bear"] * 12 + ["calm_bull"] * 20 + ["crisis"] * 5 + ["calm_bull"] * 6
                       + ["volatile_bull"] * 3,  # 6 spells
                       index=pd.bdate_range(end=NIGHT, periods=76))
    with pt.open_trades_db(prof.db_path) as db:
        db.write_evaluations(NIGHT, _board())
        db.write_regimes(labels, [0] * len(labels))
        db.write_signals(SESSION, _signals())
    run_dir = tmp / "outputs" / NIGHT
    run_dir.mkdir(parents=True)
    started = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)).isoformat(timespec="seconds")
    (run_dir / "run.json").write_text(json.dumps({"status": "running", "started_at": started,
                                                  "peak_pss_bytes": 400 * 2**20, "notebooks": [
        {"name": "04_signals", "status": "ok", "duration_s": 4.0, "peak_pss_bytes": 200 * 2**20,
         "peak_rss_bytes": 150 * 2**20},
        {"name": "05_report", "status": "running", "started_at": started}]}))
    out = tmp / "05_report.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "05_report.ipynb"), str(out), kernel_name="pitools", cwd=str(ROOT),
                        parameters={"profile": "ci", "overrides": overrides, "night": NIGHT, "run_dir": str(run_dir)},
                        progress_bar=False, execution_timeout=300)
    return out


def test_the_report_shows_every_position_of_the_strategies_worth_reading_and_the_rest_apart(report):
    cells = _outputs_by_cell(report)
    outs = cells["cell-10"]
    assert not [o for c in cells.values() for o in c if o["output_type"] == "error"]
    signals = pd.DataFrame(_signals())
    good, others = morning.positions(signals, _board())
    assert len(signals) == 120 and len(good) + len(others) > 60  # more than pandas shows uncut
    text = "".join(_plain(o) for o in outs)
    assert f"signals for {SESSION}: {len(good) + len(others)} positions of 120 symbol×strategy rows" in text
    assert f"(xs_momentum, sma_cross, macd, rsi_reversion): {len(good)}" in text
    assert f"fitness ≤ 0 or no result tonight: {len(others)}" in text
    tables_shown = [o for o in outs if o["output_type"] == "display_data"]
    counts, shown_good, shown_others = tables_shown
    for shown, expected in ((shown_good, good), (shown_others, others)):
        lines = _plain(shown).splitlines()
        assert len(lines) == len(expected) + 1 and "..." not in _plain(shown)
        assert lines[0].split() == ["strategy", "fitness", "symbol", "side", "regime"]  # no strength, no counter
        page = shown["data"]["text/html"]
        assert page.count("<tr") == len(expected) + 1 and not COUNTER.search(page)
        got = [tuple(line.split()[i] for i in (0, 2, 3)) for line in lines[1:]]
        assert got == list(zip(expected["strategy"], expected["symbol"], expected["side"]))
    assert "strength" not in text + "".join(_plain(o) for o in tables_shown)


def test_the_report_writes_params_plainly_caps_only_with_a_note_and_shows_no_counter_nor_nan(report):
    cells = _outputs_by_cell(report)
    every = "\n".join(_plain(o) for outs in cells.values() for o in outs)
    assert "Worth reading (fitness > 0): xs_momentum, sma_cross, macd, rsi_reversion; 4 of 8" in every
    assert "fast=25, slow=80" in every and "lower=19.45" in every and "top_k=4," in every
    assert "19.4538" not in every and "fast=25.0" not in every and "NaN" not in every
    assert "first 5 of 5 regime spells" not in every and "first 5 of 6 regime spells, newest first" in every
    for outs in cells.values():
        for o in outs:
            page = o.get("data", {}).get("text/html", "")
            assert not COUNTER.search(page), page[:400]
    resources = "".join(_plain(o) for o in cells["cell-13"])
    row = next(line for line in resources.splitlines() if line.startswith("05_report"))
    status, duration, pss, rss = row.split()[1:5]
    assert status == "running" and float(duration) >= 30 and pss == "—" and float(rss) > 10
    assert "running: this report, still at work" in resources

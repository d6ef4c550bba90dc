"""Signals only from fresh data, and nights that are sessions: real GOOG bars, real nights.

The store holds real daily bars (backtesting.py's GOOG, 2004-08-19..2013-03-01) and a copy
of them that stops at the end of 2012 — a symbol whose data stopped while the others go on.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import ROOT, run_cli
from pitools.data.calendar import sessions
from pitools.data.freshness import freshness, resolve_night, sessions_missed
from pitools.errors import NightError

LAST_GOOG = "2013-03-01"  # a Friday: GOOG's last bar
STALE_END = "2012-12-31"  # GOOGOLD stops here
LATE_NIGHT = "2013-03-12"  # 7 sessions after the last bar


# ---------------------------------------------------------------- the calendar rules

@pytest.mark.parametrize("night,now,expect", [
    (None, "2026-11-23 20:00", "2026-11-20"),  # Monday 15:00 in New York: Monday has not closed
    (None, "2026-11-23 22:00", "2026-11-23"),
    ("2026-11-27", "2026-11-27 18:30", "2026-11-27"),  # the half day closes at 13:00
    ("2024-12-24", "2025-01-06 12:00", "2024-12-24"),
])
def test_a_night_is_a_closed_session(night, now, expect):
    assert resolve_night(night, now=now) == pd.Timestamp(expect)


@pytest.mark.parametrize("night,now,words", [
    ("2026-11-28", "2026-12-02 12:00", ["'2026-11-28' is a Saturday", "2026-11-27 (Fri) or 2026-11-30 (Mon)"]),
    ("2026-11-26", "2026-12-02 12:00", ["'2026-11-26' is an NYSE holiday (Thursday)", "2026-11-25 (Wed) or 2026-11-27"]),
    ("2026-11-29", "2026-11-30 12:00", ["is a Sunday", "The nearest closed session is 2026-11-27 (Fri)"]),  # Monday not closed
    ("2027-01-05", "2026-12-02 12:00", ["'2027-01-05' is in the future", "last closed NYSE session is 2026-12-01 (Tue)"]),
    ("2026-12-02", "2026-12-02 18:00", ["'2026-12-02' has not closed yet", "2026-12-01 (Tue)"]),  # 13:00 in New York
    ("2100-01-01", "2026-12-02 12:00", ["in the future", "--date 2026-12-01"]),
    ("2026-13-01", "2026-12-02 12:00", ["'2026-13-01' is not a date", "YYYY-MM-DD"]),
    ("20/11/2026", "2026-12-02 12:00", ["is not a date"]),
])
def test_a_day_that_is_not_a_closed_session_is_refused_with_the_nearest_one(night, now, words):
    with pytest.raises(NightError) as err:
        resolve_night(night, now=now)
    assert err.value.exit_code == 2
    for w in words:
        assert w in str(err.value)


def test_sessions_missed_counts_the_exchange_calendar():
    # independent count: business days minus the NYSE holidays in between (Thanksgiving 2026)
    assert sessions_missed("2026-11-20", "2026-11-30") == len(pd.bdate_range("2026-11-21", "2026-11-30")) - 1
    assert sessions_missed("2026-11-20", "2026-11-20") == 0
    assert sessions_missed("2026-11-24", "2026-11-20") == 0  # a bar after the night is not "missed"


# ---------------------------------------------------------------- a store of real bars

def _goog_csv(path: Path, end: str | None = None) -> Path:
    from backtesting.test import GOOG

    bars = GOOG if end is None else GOOG.loc[:end]
    bars.rename_axis("Date").to_csv(path)
    return path


@pytest.fixture(scope="module")
def real_data(tmp_path_factory) -> Path:
    """A data folder whose store was built by `pitools ingest` from two real files."""
    data = tmp_path_factory.mktemp("real")
    files = data / "files"
    files.mkdir()
    _goog_csv(files / "GOOG.csv")
    _goog_csv(files / "GOOGOLD.csv", end=STALE_END)
    proc = run_cli("ingest", str(files), "--store", str(data / "store"), "--profile", "ci",
                   "--set", f"data_dir={data}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return data


def test_freshness_names_the_stale_symbol_and_the_sessions_missed(real_data):
    fresh = freshness(real_data / "store", LAST_GOOG, max_stale_sessions=1)
    assert fresh.ok and fresh.missed == 0 and list(fresh.stale) == ["GOOGOLD"]
    assert fresh.stale["GOOGOLD"] == pd.Timestamp(STALE_END)
    table = fresh.stale_table()
    expected_missed = len(sessions("2013-01-01", LAST_GOOG))  # every session after its last bar
    assert table.to_dict("records") == [{"symbol": "GOOGOLD", "last bar": STALE_END,
                                         "sessions missed": expected_missed}]
    late = freshness(real_data / "store", LATE_NIGHT, max_stale_sessions=1)
    assert not late.ok and late.missed == 7
    assert "last bar 2013-03-01 (Fri), night 2013-03-12 (Tue): 7 sessions missed" in late.refusal()


# ---------------------------------------------------------------- real nights

@pytest.fixture(scope="module")
def nights(real_data, numba_cache_dir, tmp_path_factory):
    """Two real `pitools nightly` runs (01_data, 04_signals, 05_report: what freshness touches):
    the night of GOOG's last bar, then a night 7 sessions later with no new bars."""
    notebooks = tmp_path_factory.mktemp("list") / "nightly.yaml"
    notebooks.write_text("notebooks:\n  - name: 01_data\n  - name: 04_signals\n    needs: [01_data]\n"
                         "  - name: 05_report\n")
    outputs = real_data / "outputs"
    env = {"NUMBA_CACHE_DIR": numba_cache_dir, "PITOOLS_HOME": str(ROOT)}
    args = ["--profile", "ci", "--set", f"data_dir={real_data}", "--outputs", str(outputs),
            "--notebooks", str(notebooks)]
    fresh = run_cli("nightly", *args, "--date", LAST_GOOG, env=env)
    late = run_cli("nightly", *args, "--date", LATE_NIGHT, env=env)
    return {"fresh": fresh, "late": late, "outputs": outputs, "db": real_data / "trades.db", "args": args,
            "env": env}


def _printed(nb_path: Path) -> list[str]:
    nb = nbformat.read(str(nb_path), as_version=4)
    lines = []
    for cell in nb.cells[2:] if nb.cells else []:  # after the parameters and injected-parameters cells
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                lines += out["text"].splitlines()
    return lines


def _signals(db: Path) -> pd.DataFrame:
    with sqlite3.connect(db) as conn:
        return pd.read_sql("SELECT session, symbol, strategy, side FROM signals", conn)


def test_a_stale_symbol_gets_no_signal_and_is_listed(nights):
    proc = nights["fresh"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _signals(nights["db"])
    tomorrow = rows[rows.session == "2013-03-04"]
    assert set(tomorrow.symbol) == {"GOOG"} and len(tomorrow) == 8  # one row per strategy, no GOOGOLD
    run = nights["outputs"] / LAST_GOOG
    printed = "\n".join(_printed(run / "04_signals.ipynb"))
    assert "1 of 2 symbols have no bar on 2013-03-01 and get no signal: GOOGOLD (last 2012-12-31)" in printed
    report = "\n".join(_printed(run / "05_report.ipynb"))
    assert "GOOGOLD" in report and "stale" in report.lower()


def test_a_store_behind_the_night_publishes_nothing_exits_1_and_the_report_says_so_first(nights):
    proc = nights["late"]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _signals(nights["db"])
    assert set(rows.session) == {"2013-03-04"}  # nothing for the session after the late night
    run = nights["outputs"] / LATE_NIGHT
    record = json.loads((run / "run.json").read_text())
    status = {nb["name"]: nb for nb in record["notebooks"]}
    assert record["status"] == "failed" and status["04_signals"]["status"] == "failed"
    assert "7 sessions missed" in status["04_signals"].get("error", "")
    assert status["01_data"]["status"] == "ok" and status["05_report"]["status"] == "ok"
    first = _printed(run / "05_report.ipynb")[0]
    assert first.startswith("NO SIGNALS for the night of 2013-03-12") and "7 sessions missed" in first
    data = "\n".join(_printed(run / "01_data.ipynb"))
    assert "FAIL  data" in data and "NOT READY: data" in data  # the same verdict as `pitools check`
    index = (nights["outputs"] / "index.html").read_text()
    assert '04_signals <span class="status failed">failed</span>' in index


def test_pitools_check_gives_the_same_verdict_as_01_data(nights, real_data):
    check = run_cli("check", "--profile", "ci", "--set", f"data_dir={real_data}", "--date", LATE_NIGHT,
                    env=nights["env"])
    assert check.returncode == 1 and "FAIL  data" in check.stdout and "7 sessions missed" in check.stdout
    ok = run_cli("check", "--profile", "ci", "--set", f"data_dir={real_data}", "--date", LAST_GOOG,
                 env=nights["env"])
    assert "WARN  data" in ok.stdout and "GOOGOLD (last 2012-12-31)" in ok.stdout


@pytest.mark.parametrize("date,words", [("2027-01-05", "is in the future"), ("2026-11-28", "is a Saturday")])
def test_a_future_or_weekend_date_is_exit_2_and_writes_nothing(nights, tmp_path, date, words):
    outputs = tmp_path / "outputs"
    args = [a if a != str(nights["outputs"]) else str(outputs) for a in nights["args"]]
    before = _signals(nights["db"])
    proc = run_cli("nightly", *args, "--date", date, env=nights["env"])
    assert proc.returncode == 2 and words in proc.stderr, proc.stdout + proc.stderr
    assert not outputs.exists() or not any(outputs.iterdir())
    pd.testing.assert_frame_equal(_signals(nights["db"]), before)
    evolve = run_cli("evolve", "--profile", "ci", "--set", f"data_dir={tmp_path}", "--store",
                     str(tmp_path / "none"), "--date", date, env=nights["env"])
    assert evolve.returncode == 2 and words in evolve.stderr

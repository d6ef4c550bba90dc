"""Readiness checks: calendar-aware staleness, schema, disk, memory, numba cache, temperature."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import pytest

from conftest import run_cli
from pitools.config import load_profile
from pitools.market.db import LATEST_VERSION, migrate, open_trades_db
from pitools.errors import NightError
from pitools.box.health import FAIL, OK, WARN, check, missed_sessions


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("last_bar,now,missed,why", [
    ("2026-11-20", "2026-11-22 12:00", 0, "Sunday: the weekend misses nothing"),
    ("2026-11-20", "2026-11-23 20:00", 0, "Monday before the 16:00 ET close"),
    ("2026-11-20", "2026-11-23 22:00", 1, "Monday after the close: Monday's bar is due"),
    ("2026-11-20", "2026-11-24 10:00", 1, "Tuesday morning without Monday: a missed Monday"),
    ("2026-11-25", "2026-11-26 23:00", 0, "Thanksgiving: a holiday misses nothing"),
    ("2026-11-25", "2026-11-27 17:00", 0, "the half day after Thanksgiving, before its 13:00 ET close"),
    ("2026-11-25", "2026-11-27 19:00", 1, "after the half day's close"),
    ("2026-11-18", "2026-11-30 12:00", 6, "19, 20, 23, 24, 25 and the 27th half day; not Thanksgiving"),
    ("2026-12-24", "2026-12-28 12:00", 0, "Christmas Day and the weekend"),
])
def test_staleness_counts_missed_nyse_sessions_not_hours(last_bar, now, missed, why):
    assert missed_sessions(last_bar, utc(now))[0] == missed, why


@pytest.fixture()
def profile(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # pitools.kernels.cache_dir(): per user
    return load_profile("ci", overrides=[f"data_dir={tmp_path}"])


def by_name(report):
    return {c.name: c for c in report.checks}


def test_a_weekend_is_ready_and_a_missed_monday_is_not(profile, demo_store):  # the store ends Fri 2026-11-20
    migrate(profile.data_dir / "trades.db")
    weekend = by_name(check(profile, store=demo_store, now=utc("2026-11-22 12:00")))
    assert weekend["data"].status == OK and "0 sessions missed" in weekend["data"].detail
    strict = profile.replace(max_stale_sessions=0)
    tuesday = check(strict, store=demo_store, now=utc("2026-11-24 10:00"))
    data = by_name(tuesday)["data"]
    assert data.status == FAIL and "1 session missed" in data.detail and "2026-11-23 (Mon)" in data.detail
    assert not tuesday.ok and "NOT READY: data" in tuesday.text()
    # the default max_stale_sessions (1) lets one session pass — but no symbol has Monday's bar
    lenient = by_name(check(profile, store=demo_store, now=utc("2026-11-24 10:00")))["data"]
    assert lenient.status == WARN and "24 of 24 symbols have no bar on 2026-11-23" in lenient.detail
    wednesday = by_name(check(profile, store=demo_store, now=utc("2026-11-25 10:00")))["data"]
    assert wednesday.status == FAIL and "2 sessions missed (max_stale_sessions 1)" in wednesday.detail
    assert check(strict, store=demo_store, now=utc("2026-11-24 10:00"), allowed_missed=1).ok


def test_check_is_for_a_night_and_refuses_a_day_that_is_not_one(profile, demo_store):
    migrate(profile.data_dir / "trades.db")
    now = utc("2026-12-02 12:00")  # the store ends Fri 2026-11-20, 7 sessions before Tue 2026-12-01
    assert by_name(check(profile, store=demo_store, now=now))["data"].status == FAIL
    assert by_name(check(profile, store=demo_store, now=now, night="2026-11-20"))["data"].status == OK
    with pytest.raises(NightError, match=r"'2026-11-22' is a Sunday: not a session. The nearest closed sessions are "
                                         r"2026-11-20 \(Fri\) or 2026-11-23 \(Mon\)"):
        check(profile, store=demo_store, now=now, night="2026-11-22")
    with pytest.raises(NightError, match=r"'2026-12-03' is in the future.*2026-12-01 \(Tue\)"):
        check(profile, store=demo_store, now=now, night="2026-12-03")


def test_a_missing_or_older_database_warns_because_the_nightly_migrates_it(profile, demo_store):
    db = profile.data_dir / "trades.db"
    now = utc("2026-11-22 12:00")
    missing = by_name(check(profile, store=demo_store, now=now))["database"]
    assert missing.status == WARN and "the nightly creates it" in missing.detail
    assert "run `pitools db migrate`" in missing.detail and not db.exists()  # the check writes nothing
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE signals (id INTEGER PRIMARY KEY, created_at TEXT, strategy_name TEXT)")
    conn.close()
    old = by_name(check(profile, store=demo_store, now=now))["database"]
    assert old.status == WARN and f"schema version 0, latest is {LATEST_VERSION}" in old.detail
    assert "the nightly migrates it" in old.detail
    # What the WARN promises: the nightly's own opener (nightly._start_db_run) migrates it.
    with open_trades_db(db):
        pass
    assert by_name(check(profile, store=demo_store, now=now))["database"].status == OK


def test_a_newer_or_broken_database_fails(profile, demo_store):
    db = profile.data_dir / "trades.db"
    now = utc("2026-11-22 12:00")
    migrate(db)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    newer = by_name(check(profile, store=demo_store, now=now))["database"]
    assert newer.status == FAIL and f"schema version {LATEST_VERSION + 1}, newer than this pitools" in newer.detail
    assert "upgrade pitools" in newer.detail
    db.write_text("not a database")
    broken = by_name(check(profile, store=demo_store, now=now))["database"]
    assert broken.status == FAIL and "not an SQLite database" in broken.detail


def test_memory_budget_and_disk(profile, demo_store, tmp_path_factory):
    import pitools as pt

    big = tmp_path_factory.mktemp("big") / "store"  # ~80 MB to load: more than the smallest budget
    pt.make_demo_store(big, n_symbols=600, years=8, seed=2, end="2026-11-20")
    tight = profile.replace(memory_budget_mb=64, max_symbols=600, max_years=8)
    mem = by_name(check(tight, store=big, min_free_mb=1))["memory"]
    assert mem.status == FAIL and "lower max_symbols / max_years or raise memory_budget_mb" in mem.detail
    roomy = by_name(check(profile.replace(memory_budget_mb=1024), store=demo_store, min_free_mb=1))
    assert roomy["memory"].status in (OK, WARN) and roomy["disk"].status == OK
    assert by_name(check(profile, store=demo_store, min_free_mb=10**12))["disk"].status == FAIL


def test_numba_cache_cold_then_warm(profile, tmp_path):
    assert by_name(check(profile, store=tmp_path / "none"))["numba"].status == WARN
    cache = profile.data_dir / "xdg" / "pitools" / "numba"
    script = textwrap.dedent("""
        import numpy as np, pandas as pd, pitools as pt
        c = np.asfortranarray(50 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, .01, (200, 2)), axis=0)))
        panel = pt.Panel(pd.bdate_range("2024-01-01", periods=200), ["A", "B"],
                         {"open": c, "high": c * 1.01, "low": c * .99, "close": c})
        pt.backtest("sma_cross", panel)
    """)
    subprocess.run([sys.executable, "-c", script], env={**os.environ, "NUMBA_CACHE_DIR": str(cache)}, check=True,
                   timeout=600)
    warm = by_name(check(profile, store=tmp_path / "none"))["numba"]
    assert warm.status == OK and str(cache) in warm.detail


@pytest.mark.parametrize("milli,status", [("52000", OK), ("79500", WARN), ("90000", FAIL)])
def test_cpu_temperature_from_sysfs(profile, tmp_path, milli, status):
    zone = tmp_path / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(milli + "\n")
    temp = by_name(check(profile, store=tmp_path / "none", thermal_root=tmp_path / "thermal"))["temperature"]
    assert temp.status == status and f"{int(milli) / 1000:.1f} °C" in temp.detail
    assert "temperature" not in by_name(check(profile, store=tmp_path / "none", thermal_root=tmp_path / "no"))


def test_pitools_check_exit_codes(tmp_path, demo_store):
    args = ("check", "--profile", "ci", "--set", f"data_dir={tmp_path}", "--store", str(demo_store))
    out = run_cli(*args)
    assert out.returncode == 1 and "WARN  database" in out.stdout and "NOT READY" in out.stdout
    migrate(tmp_path / "trades.db")
    out = run_cli(*args, "--allow-missed", "100000")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.rstrip().endswith("ready") and "OK    data" in out.stdout


def test_cpu_temperature_from_psutil_by_default(profile, tmp_path):
    """Without `thermal_root` the sensors are psutil's: the check is there exactly when psutil
    reads a temperature, and it shows the hottest."""
    import psutil

    readings = [t.current for ts in getattr(psutil, "sensors_temperatures", dict)().values() for t in ts if t.current]
    checks = by_name(check(profile, store=tmp_path / "none"))
    assert ("temperature" in checks) == bool(readings)
    if readings:
        assert f"{max(readings):.1f} °C" in checks["temperature"].detail

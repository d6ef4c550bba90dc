"""trades.db: migrations (the old system's database upgraded in place), backups, rollback,
refusals, idempotent signals, readers beside a writer — all on real SQLite files."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
import time

import pytest

import pitools as pt
import pitools.market.db as dbmod
from conftest import run_cli
from pitools.market.db import LATEST_VERSION, DatabaseError, migrate, schema_version

OLD_ROWS = [
    (1, "2024-03-01 21:05:00", "AAPL", "sma_cross", "BUY", 0.8),
    (2, "2024-03-01 21:05:00", "MSFT", "rsi_mean_reversion", "SELL", 0.4),
    (3, "2024-03-04 21:05:01", "AAPL", "sma_cross", "HOLD", None),
    (4, "2024-03-05 21:04:59", "NVDA", "momentum", "BUY", 1.0),
]


def build_old_system_db(path):
    """The old system's trades.db: signals with created_at and strategy_name, no timestamp,
    no strategy, no index, user_version 0, rollback journal."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE signals (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at TEXT NOT NULL, "
                 "symbol TEXT NOT NULL, strategy_name TEXT NOT NULL, action TEXT, confidence REAL)")
    conn.executemany("INSERT INTO signals VALUES (?, ?, ?, ?, ?, ?)", OLD_ROWS)
    conn.commit()
    conn.close()
    return path


def dump(path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump()) + [f"user_version={conn.execute('PRAGMA user_version').fetchone()[0]}"]
    finally:
        conn.close()


def test_the_old_system_database_is_upgraded_in_place_with_every_row(tmp_path):
    path = build_old_system_db(tmp_path / "trades.db")
    before, after, backup = migrate(path)
    assert (before, after) == (0, LATEST_VERSION)
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT id, created_at, symbol, strategy_name, action, confidence, timestamp, strategy "
                        "FROM signals ORDER BY id").fetchall()
    assert [r[:6] for r in rows] == OLD_ROWS  # every old row and column survives
    assert [(r[6], r[7]) for r in rows] == [(r[1], r[3]) for r in OLD_ROWS]  # filled from the old columns
    indexes = {r[1] for r in conn.execute("PRAGMA index_list(signals)")}
    assert "idx_signals_timestamp" in indexes
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM signals WHERE timestamp > '2024-03-02'"))
    assert "idx_signals_timestamp" in plan
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"runs", "evaluations", "regimes"} <= {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    # the backup is a consistent copy of the old database, dated, beside it
    assert backup is not None and backup.parent == path.parent and backup.name.startswith("trades.db.backup-")
    assert backup.name.endswith("-v0")
    old = sqlite3.connect(backup)
    assert old.execute("SELECT * FROM signals ORDER BY id").fetchall() == OLD_ROWS
    assert old.execute("PRAGMA user_version").fetchone()[0] == 0
    old.close()
    assert migrate(path) == (LATEST_VERSION, LATEST_VERSION, None)  # idempotent, no second backup
    assert len(list(tmp_path.glob("trades.db.backup-*"))) == 1


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    path = build_old_system_db(tmp_path / "trades.db")
    original = dump(path)

    def half_then_fail(conn):
        dbmod._v1_schema(conn)  # does real work inside the transaction …
        conn.execute("INSERT INTO signals (created_at, symbol, strategy_name) VALUES ('x', 'y', 'z')")
        raise RuntimeError("disk on fire")  # … then fails

    monkeypatch.setattr(dbmod, "MIGRATIONS", [(1, "broken on purpose", half_then_fail)])
    with pytest.raises(DatabaseError, match="migration to schema version 1 .* rolled back: RuntimeError: disk on fire"):
        migrate(path)
    assert dump(path) == original
    assert len(list(tmp_path.glob("trades.db.backup-*"))) == 1  # the backup taken first is kept


def test_a_new_database_is_created_at_the_latest_version(tmp_path):
    with pt.open_trades_db(tmp_path / "sub" / "trades.db") as db:
        assert db.schema_version == LATEST_VERSION
        assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert not list((tmp_path / "sub").glob("*.backup-*"))  # nothing to back up


@pytest.mark.parametrize("content", [b"this is a csv,not,a database\n1,2,3\n", b"\x00" * 4096])
def test_a_file_that_is_not_sqlite_is_refused_and_never_overwritten(tmp_path, content):
    path = tmp_path / "trades.db"
    path.write_bytes(content)
    with pytest.raises(DatabaseError, match="not an SQLite database.*left untouched"):
        pt.open_trades_db(path)
    assert path.read_bytes() == content


def test_a_corrupt_database_is_refused_and_never_overwritten(tmp_path):
    path = tmp_path / "trades.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # smash a b-tree page, keep the header
    path.write_bytes(bytes(data))
    with pytest.raises(DatabaseError, match="corrupt|cannot be read"):
        migrate(path)
    assert path.read_bytes() == bytes(data)


def test_a_newer_schema_is_refused_not_downgraded(tmp_path):
    path = tmp_path / "trades.db"
    migrate(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 5}")
    conn.close()
    before = dump(path)
    with pytest.raises(DatabaseError, match=f"schema version {LATEST_VERSION + 5}, newer than .* not downgraded"):
        pt.open_trades_db(path)
    assert dump(path) == before
    assert schema_version(path) == LATEST_VERSION + 5


def test_signals_of_a_night_are_replaced_not_duplicated(tmp_path):
    with pt.open_trades_db(tmp_path / "trades.db") as db:
        run = db.start_run("2026-11-23", profile="ci")
        rows = [{"symbol": s, "strategy": "sma_cross", "side": side, "strength": 1.0, "params": {"fast": 10},
                 "regime": "calm_bull"} for s, side in (("AAA", "long"), ("BBB", "flat"))]
        other = [{"symbol": "AAA", "strategy": "macd", "side": "short", "strength": 0.5}]
        db.write_signals("2026-11-24", rows + other, run_id=run)
        db.write_signals("2026-11-24", rows[:1], run_id=run, strategies=["sma_cross"])  # the night rerun
        got = db.signals("2026-11-24")
        assert sorted(zip(got.strategy, got.symbol, got.side)) == [("macd", "AAA", "short"),
                                                                   ("sma_cross", "AAA", "long")]
        db.write_signals("2026-11-25", rows, run_id=run)
        assert len(db.signals()) == 2 and set(db.signals().session) == {"2026-11-25"}
        assert len(db.signals("2026-11-24")) == 2  # another night is not touched
        db.finish_run(run, "ok", duration_s=12.5, peak_pss_bytes=10**8, details={"notebooks": 5})
        run_row = db.query("SELECT status, duration_s FROM runs WHERE id = ?", (run,))
        assert run_row.iloc[0].tolist() == ["ok", 12.5]
        with pytest.raises(DatabaseError, match="`side` = 'buy' must be one of long, short, flat"):
            db.write_signals("2026-11-26", [{"symbol": "A", "strategy": "macd", "side": "buy"}])
        assert db.signals("2026-11-26").empty  # nothing half-written


def _writer(path, stop_at, errors):
    try:
        with pt.open_trades_db(path) as db:
            n = 0
            while time.monotonic() < stop_at:
                rows = [{"symbol": f"S{i:03d}", "strategy": "sma_cross", "side": "long", "strength": float(n)}
                        for i in range(200)]
                db.write_signals(f"night-{n % 5}", rows)
                n += 1
        errors.put(("writer", n))
    except Exception as exc:  # noqa: BLE001 — reported to the test
        errors.put(("writer-error", repr(exc)))


def test_readers_beside_the_nightly_writer_never_see_database_is_locked(tmp_path):
    path = tmp_path / "trades.db"
    migrate(path)
    stop_at = time.monotonic() + 3.0
    q = mp.get_context("spawn").Queue()
    writer = mp.get_context("spawn").Process(target=_writer, args=(path, stop_at, q))
    writer.start()
    failures, reads = [], [0]

    def reader():
        try:
            with pt.open_trades_db(path) as db:
                while time.monotonic() < stop_at:
                    frame = db.signals()
                    assert frame.empty or len(frame) == 200  # a whole night or nothing, never half
                    reads[0] += 1
        except Exception as exc:  # noqa: BLE001
            failures.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.join(timeout=60)
    kind, value = q.get(timeout=10)
    assert kind == "writer" and value > 5, value
    assert not failures and reads[0] > 20


def test_pitools_db_migrate(tmp_path):
    path = build_old_system_db(tmp_path / "trades.db")
    out = run_cli("db", "migrate", "--db", str(path))
    assert out.returncode == 0, out.stderr
    assert f"schema version 0 -> {LATEST_VERSION}" in out.stdout and "backup" in out.stdout
    again = run_cli("db", "migrate", "--db", str(path))
    assert again.returncode == 0 and "up to date" in again.stdout
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    out = run_cli("db", "migrate", "--db", str(bad))
    assert out.returncode == 2 and "not an SQLite database" in out.stderr and "Traceback" not in out.stderr
    assert bad.read_text() == "hello"


def test_evaluations_and_regimes_of_a_night_are_replaced_not_duplicated(tmp_path):
    import pandas as pd

    board = pd.DataFrame([
        {"strategy": "macd", "fitness": 0.4, "params": {"fast": 12}, "is_sharpe": 1.0, "oos_sharpe": 0.4,
         "oos_max_drawdown": 0.2, "trades_per_year": 3.0, "deflated_sharpe": float("nan")},
        {"strategy": "sma_cross", "fitness": 0.9, "params": {"fast": 10, "slow": 30}, "is_sharpe": 1.2,
         "oos_sharpe": 0.9, "oos_max_drawdown": 0.1, "trades_per_year": 2.0, "deflated_sharpe": 0.8}])
    labels = pd.Series(["calm_bull", "crisis"], index=pd.to_datetime(["2026-11-19", "2026-11-20"]))
    with pt.open_trades_db(tmp_path / "trades.db") as db:
        for _ in range(2):
            db.write_evaluations("2026-11-20", board)
            db.write_regimes(labels, [0, 3])
        ev = db.conn.execute("SELECT strategy, rank, params, deflated_sharpe FROM evaluations ORDER BY strategy")
        assert ev.fetchall() == [("macd", 1, '{"fast": 12}', None), ("sma_cross", 1, '{"fast": 10, "slow": 30}', 0.8)]
        reg = db.query("SELECT session, regime, code FROM regimes ORDER BY session")
        assert reg.values.tolist() == [["2026-11-19", "calm_bull", 0], ["2026-11-20", "crisis", 3]]


def test_parameters_are_stored_with_integers_as_integers_and_reals_as_run(tmp_path):
    import json

    import pandas as pd

    real = 19.453824394278428
    board = pd.DataFrame([{"strategy": "rsi_reversion", "fitness": 0.4, "params": {"upper": 70.0, "n": 14.0,
                                                                                 "lower": real}}])
    # what pitools.market.signals hands over: the validated params, all floats
    checked = pt.strategies.get("sma_cross").validate({"fast": 25, "slow": 80})
    assert checked == {"fast": 25.0, "slow": 80.0}
    with pt.open_trades_db(tmp_path / "trades.db") as db:
        db.write_evaluations("2026-11-20", board)
        db.write_signals("2026-11-24", [{"symbol": "AAA", "strategy": "sma_cross", "side": "long", "strength": 1.0,
                                         "params": checked}])
        stored_ev = db.conn.execute("SELECT params FROM evaluations").fetchone()[0]
        stored_sig = db.conn.execute("SELECT params FROM signals").fetchone()[0]
    assert stored_sig == '{"fast": 25, "slow": 80}'  # not 25.0
    assert stored_ev == '{"lower": 19.453824394278428, "n": 14, "upper": 70.0}'
    assert json.loads(stored_ev)["lower"] == real  # exactly what was run: a stored set backtests the same
    assert isinstance(json.loads(stored_ev)["n"], int) and isinstance(json.loads(stored_ev)["upper"], float)

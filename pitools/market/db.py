"""The trades database: ``trades.db`` (SQLite) under the data directory.

WAL mode (readers — notebooks, JupyterLab — never block the nightly writer, nor it them),
foreign keys on, a busy timeout instead of "database is locked". The schema is versioned
with ``PRAGMA user_version`` and upgraded by the numbered migrations of ``MIGRATIONS``:

* before any migration runs, a consistent copy is taken with SQLite's online backup API
  into ``trades.db.backup-<UTC time>-v<old version>`` beside the database;
* each migration runs in one transaction, together with its ``user_version`` bump: a
  failing one rolls back and leaves the database as it was;
* a database with a version newer than this pitools knows is refused, never downgraded;
  a file that is not SQLite, or is corrupt, is refused and never written to.

Version 1 also upgrades the old system's database in place: its ``signals`` table had
``created_at`` and ``strategy_name`` and no ``timestamp``/``strategy`` nor index; the
columns are added and filled from the old ones (the old columns stay: nothing is lost).

>>> db = pt.open_trades_db("data/trades.db")
>>> list(db.signals("2026-11-24").columns)     # a new database: no signals yet
['session', 'symbol', 'strategy', 'side', 'strength', 'params', 'regime', 'run_id', 'timestamp']
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd

from pitools.errors import DatabaseError, DatabaseLocked, DatabaseUnavailable
from pitools.engine import strategies
from pitools.engine.strategies import typed_params

__all__ = ["open_trades_db", "migrate", "schema_version", "TradesDB", "DatabaseError", "DatabaseUnavailable",
           "DatabaseLocked", "LATEST_VERSION", "MIGRATIONS"]

# A reader waits this long for another writer's commit, not forever. Read at every connect,
# so a test (or a caller in a hurry) may lower it: `pitools.market.db.BUSY_TIMEOUT_S = 1.0`.
BUSY_TIMEOUT_S = 30.0
_HEADER = b"SQLite format 3\x00"
SIDES = ("long", "short", "flat")


def _sqlite_error(path: Path, exc: sqlite3.Error) -> DatabaseError | None:
    """The pitools error for an SQLite error that is about the database's situation, not
    its content (locked, disk full, read-only); None for any other."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return DatabaseLocked(f"trades.db at {str(path)!r} is locked by another process ({exc}; waited "
                              f"{BUSY_TIMEOUT_S:g} s); try again when it finishes")
    if name.startswith("SQLITE_FULL"):
        return DatabaseUnavailable(f"trades.db at {str(path)!r} cannot be written: the disk is full ({exc}); "
                                   "free space there and run again")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
        return DatabaseError(f"trades.db at {str(path)!r} cannot be written ({exc}); make it and its folder "
                             "writable, or choose another data folder with --set data_dir=PATH")
    return None


@contextlib.contextmanager
def _situation(path: Path):
    """Turn SQLite's 'database is locked' / 'disk is full' / 'readonly' into one-line pitools
    errors naming the file; other errors pass unchanged."""
    try:
        yield
    except sqlite3.Error as exc:
        err = _sqlite_error(path, exc)
        if err is None:
            raise
        raise err from None


# ---------------------------------------------------------------- migrations

def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _v1_schema(conn: sqlite3.Connection) -> None:
    """runs, signals, evaluations, regimes; the old system's signals table upgraded in place."""
    conn.execute("""CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        night TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed')),
        profile TEXT,
        duration_s REAL,
        peak_pss_bytes INTEGER,
        details TEXT)""")
    new_columns = {"timestamp": "TEXT", "session": "TEXT", "symbol": "TEXT", "strategy": "TEXT", "side": "TEXT",
                   "strength": "REAL", "params": "TEXT", "regime": "TEXT",
                   "run_id": "INTEGER REFERENCES runs(id) ON DELETE SET NULL"}
    old = _columns(conn, "signals")
    if not old:
        conn.execute("""CREATE TABLE signals (
            id INTEGER PRIMARY KEY,
            timestamp TEXT NOT NULL,
            session TEXT,
            symbol TEXT NOT NULL,
            strategy TEXT NOT NULL,
            side TEXT CHECK (side IN ('long', 'short', 'flat')),
            strength REAL,
            params TEXT,
            regime TEXT,
            run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL)""")
    else:  # the old system's table: add what is missing, fill it from the old columns
        for name, decl in new_columns.items():
            if name not in old:
                conn.execute(f"ALTER TABLE signals ADD COLUMN {name} {decl}")
        if "created_at" in old:
            conn.execute("UPDATE signals SET timestamp = created_at WHERE timestamp IS NULL")
        if "strategy_name" in old:
            conn.execute("UPDATE signals SET strategy = strategy_name WHERE strategy IS NULL")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_signals_timestamp ON signals(timestamp)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_signals_session ON signals(session, strategy)")
    conn.execute("""CREATE TABLE IF NOT EXISTS evaluations (
        id INTEGER PRIMARY KEY,
        night TEXT NOT NULL,
        strategy TEXT NOT NULL,
        rank INTEGER NOT NULL,
        params TEXT NOT NULL,
        fitness REAL,
        is_sharpe REAL,
        oos_sharpe REAL,
        oos_max_drawdown REAL,
        trades_per_year REAL,
        deflated_sharpe REAL,
        run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        UNIQUE (night, strategy, rank))""")
    conn.execute("""CREATE TABLE IF NOT EXISTS regimes (
        session TEXT PRIMARY KEY,
        regime TEXT NOT NULL,
        code INTEGER NOT NULL,
        run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL)""")


# (version it brings the database to, what it does, the step); append, never edit a shipped one
MIGRATIONS: list[tuple[int, str, Callable[[sqlite3.Connection], None]]] = [
    (1, "runs, signals, evaluations, regimes; upgrade the old system's signals table", _v1_schema),
]
LATEST_VERSION = MIGRATIONS[-1][0]


# ---------------------------------------------------------------- opening safely

def _check_file(path: Path) -> None:
    if path.is_dir():
        raise DatabaseError(f"{str(path)!r} is a directory, not a trades database")
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            if fh.read(len(_HEADER)) != _HEADER:
                raise DatabaseError(f"{str(path)!r} is not an SQLite database (wrong header); it was left untouched. "
                                    "Point --db at trades.db, or move this file away")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)  # explicit transactions
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _verified(path: Path) -> sqlite3.Connection:
    """A connection to `path` after the file proved to be a healthy SQLite database."""
    _check_file(path)
    with _situation(path):
        conn = _connect(path)
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        conn.close()
        # a lock held by another writer (a rollback-journal database) is not damage
        raise _sqlite_error(path, exc) or DatabaseError(
            f"{str(path)!r} cannot be read as SQLite ({exc}); it was left untouched") from None
    if result != "ok":
        conn.close()
        raise DatabaseError(f"{str(path)!r} is corrupt (quick_check: {result}); it was left untouched. "
                            "Restore the newest trades.db.backup-* beside it")
    return conn


def schema_version(path: str | Path) -> int | None:
    """The ``user_version`` of the database at `path`; None if there is no file."""
    path = Path(path)
    if not path.exists():
        return None
    conn = _verified(path)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


def _backup(conn: sqlite3.Connection, path: Path, version: int) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.backup-{stamp}-v{version}")
    dest = sqlite3.connect(target)
    try:
        conn.backup(dest)  # SQLite's online backup: a consistent copy even with readers attached
    finally:
        dest.close()
    return target


def migrate(path: str | Path) -> tuple[int, int, Path | None]:
    """Create or upgrade the database at `path` to ``LATEST_VERSION``.

    Returns (version before, version after, backup file or None). Raises DatabaseError for
    a file that is not SQLite or is corrupt, a newer schema, or a migration that failed
    (rolled back; the database is as it was and the backup is kept).
    """
    path = Path(path)
    conn = _open_checked(path)
    try:
        return _migrate(conn, path)
    finally:
        conn.close()


def _open_checked(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    return _verified(path)


def _migrate(conn: sqlite3.Connection, path: Path) -> tuple[int, int, Path | None]:
    """:func:`migrate` on a connection that :func:`_verified` opened."""
    before = conn.execute("PRAGMA user_version").fetchone()[0]
    if before > LATEST_VERSION:
        raise DatabaseError(f"{str(path)!r} has schema version {before}, newer than this pitools knows "
                            f"({LATEST_VERSION}); it is not downgraded. Upgrade pitools")
    backup = None
    has_tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] > 0
    if before < LATEST_VERSION and has_tables:
        backup = _backup(conn, path, before)
    for version, what, step in MIGRATIONS:
        if version <= before:
            continue
        with _situation(path):
            conn.execute("BEGIN IMMEDIATE")  # waits for another writer; a timeout is DatabaseLocked
        try:
            step(conn)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except Exception as exc:
            conn.execute("ROLLBACK")
            raise DatabaseError(f"migration to schema version {version} ({what}) of {str(path)!r} failed and "
                                f"was rolled back: {type(exc).__name__}: {exc}"
                                + (f"; a copy from before is in {backup}" if backup else "")) from exc
    with _situation(path):
        conn.execute("PRAGMA journal_mode = WAL")  # persistent: readers never block the writer
    return before, LATEST_VERSION, backup


# ---------------------------------------------------------------- the handle

class TradesDB:
    """An open trades database (from :func:`open_trades_db`); a context manager."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn

    def __enter__(self) -> TradesDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def __repr__(self) -> str:
        return f"<TradesDB {str(self.path)!r} schema v{self.schema_version}>"

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def query(self, sql: str, params: Iterable = ()) -> pd.DataFrame:
        """A read-only query as a DataFrame."""
        with _situation(self.path):
            cur = self.conn.execute(sql, tuple(params))
        return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])

    # -- runs
    def start_run(self, night: str, profile: str | None = None, started_at: str | None = None) -> int:
        started_at = started_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        with _situation(self.path):
            cur = self.conn.execute("INSERT INTO runs (night, started_at, status, profile) VALUES (?, ?, 'running', ?)",
                                    (night, started_at, profile))
        return int(cur.lastrowid)

    def run_status(self, run_id: int) -> str | None:
        """The status recorded for run `run_id` ('running', 'ok', 'failed'); None if no such run."""
        row = self.conn.execute("SELECT status FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        return None if row is None else row[0]

    def finish_run(self, run_id: int, status: str, duration_s: float | None = None,
                   peak_pss_bytes: int | None = None, details: Mapping | None = None) -> None:
        if status not in ("ok", "failed"):
            raise DatabaseError(f"`status` = {status!r} must be 'ok' or 'failed'")
        with _situation(self.path):
            self.conn.execute("UPDATE runs SET status = ?, finished_at = ?, duration_s = ?, peak_pss_bytes = ?, "
                              "details = ? WHERE id = ?",
                              (status, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), duration_s,
                               peak_pss_bytes, json.dumps(details) if details is not None else None, run_id))

    # -- evolution results and regimes (idempotent: a night written again replaces itself)
    def write_evaluations(self, night: str, leaderboard: pd.DataFrame, run_id: int | None = None) -> None:
        """The best parameters per strategy of `night` (an evolve leaderboard), ranked by fitness."""
        cols = ("fitness", "is_sharpe", "oos_sharpe", "oos_max_drawdown", "trades_per_year", "deflated_sharpe")
        rows = []
        for strategy, group in leaderboard.groupby("strategy", sort=True):
            for rank, rec in enumerate(group.sort_values("fitness", ascending=False).to_dict("records"), 1):
                rows.append((night, strategy, rank, _params_json(strategy, rec["params"]),
                             *(None if pd.isna(rec.get(c)) else float(rec[c]) for c in cols), run_id))
        with self._transaction():
            self.conn.execute("DELETE FROM evaluations WHERE night = ?", (night,))
            self.conn.executemany(f"INSERT INTO evaluations (night, strategy, rank, params, {', '.join(cols)}, run_id) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def write_regimes(self, labels: pd.Series, codes, run_id: int | None = None) -> None:
        """One regime label (and its code) per session; a session written again is replaced."""
        rows = [(str(pd.Timestamp(d).date()), str(name), int(code), run_id)
                for d, name, code in zip(labels.index, labels.to_numpy(), codes)]
        with self._transaction():
            self.conn.executemany("INSERT OR REPLACE INTO regimes (session, regime, code, run_id) VALUES (?, ?, ?, ?)",
                                  rows)

    # -- the named reads of the notebooks and the morning report
    def night_leaderboard(self, night: str) -> pd.DataFrame:
        """The best parameters per strategy of `night` (params as dicts, in the strategy's
        space order), best fitness first; empty when that night has none."""
        df = self.query("SELECT night, strategy, params, fitness, is_sharpe, oos_sharpe, oos_max_drawdown, "
                        "trades_per_year, deflated_sharpe, run_id FROM evaluations WHERE night = ? AND rank = 1 "
                        "ORDER BY fitness IS NULL, fitness DESC, strategy", (night,))
        df["params"] = [_in_space_order(name, json.loads(p)) for name, p in zip(df["strategy"], df["params"])]
        num = ["fitness", "is_sharpe", "oos_sharpe", "oos_max_drawdown", "trades_per_year", "deflated_sharpe"]
        df[num] = df[num].apply(pd.to_numeric, errors="coerce").astype(float)
        return df

    def latest_night(self, before: str | None = None) -> str | None:
        """The latest night that has evaluations (only nights before `before`, when given);
        None when there is none (a first night)."""
        if before is None:
            return self.conn.execute("SELECT MAX(night) FROM evaluations").fetchone()[0]
        return self.conn.execute("SELECT MAX(night) FROM evaluations WHERE night < ?", (before,)).fetchone()[0]

    def regimes(self, until: str | None = None) -> pd.Series:
        """The regime label of each session up to `until` (``YYYY-MM-DD``, default: all),
        oldest first, indexed by the session as a string."""
        df = self.query("SELECT session, regime FROM regimes WHERE session <= ? ORDER BY session",
                        (until or "9999-12-31",))
        return df.set_index("session")["regime"]

    def regime_on(self, session: str) -> tuple[str, str] | None:
        """(session, regime) of the latest labelled session up to `session`; None when none is."""
        row = self.conn.execute("SELECT session, regime FROM regimes WHERE session <= ? ORDER BY session DESC "
                                "LIMIT 1", (session,)).fetchone()
        return None if row is None else (row[0], row[1])

    def signal_sessions(self) -> list[str]:
        """Sessions that have signals, oldest first."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT session FROM signals WHERE session IS NOT NULL "
                                                "ORDER BY session")]

    @contextlib.contextmanager
    def _transaction(self):
        """One write transaction, taken at once (BEGIN IMMEDIATE) so it waits, not fails; a
        lock held past the busy timeout or a full disk is a one-line error, rolled back."""
        with _situation(self.path):
            self.conn.execute("BEGIN IMMEDIATE")
        try:
            with _situation(self.path):
                yield
                self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:  # a failed COMMIT may already have rolled back
                self.conn.execute("ROLLBACK")
            raise

    # -- signals
    def write_signals(self, session: str, rows: Iterable[Mapping], run_id: int | None = None,
                      strategies: Iterable[str] | None = None) -> int:
        """Replace the signals for `session` (of `strategies`, default: those in `rows`) with
        `rows` in one transaction: rerunning a night never duplicates its signals.

        Each row: symbol, strategy, side (long/short/flat), strength, params (dict), regime.
        """
        rows = list(rows)
        for i, r in enumerate(rows):
            if r.get("side") not in SIDES:
                raise DatabaseError(f"signal {i} ({r.get('symbol')!r}, {r.get('strategy')!r}): `side` = "
                                    f"{r.get('side')!r} must be one of {', '.join(SIDES)}")
        names = sorted(set(strategies) if strategies is not None else {r["strategy"] for r in rows})
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        with self._transaction():
            self.conn.executemany("DELETE FROM signals WHERE session = ? AND strategy = ?",
                                  [(session, n) for n in names])
            self.conn.executemany(
                "INSERT INTO signals (timestamp, session, symbol, strategy, side, strength, params, regime, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(now, session, r["symbol"], r["strategy"], r["side"], r.get("strength"),
                  _params_json(r["strategy"], r.get("params")), r.get("regime"), run_id) for r in rows])
        return len(rows)

    def signals(self, session: str | None = None) -> pd.DataFrame:
        """The signals of `session` (default: the latest session that has any)."""
        if session is None:
            row = self.conn.execute("SELECT MAX(session) FROM signals").fetchone()
            session = row[0]
        return self.query("SELECT session, symbol, strategy, side, strength, params, regime, run_id, timestamp "
                          "FROM signals WHERE session = ? ORDER BY strategy, symbol", (session,))


def _in_space_order(strategy: str, params: dict) -> dict:
    """`params` ordered like the strategy's search space (trades.db stores them sorted by name)."""

    if strategy not in strategies.REGISTRY:
        return params
    order = list(strategies.get(strategy).space)
    return dict(sorted(params.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def _params_json(strategy: str, params) -> str:
    """A parameter set as trades.db stores it: integers as integers (``"fast": 25``, not 25.0),
    reals exactly as they were run (not rounded: a stored set backtests to the same result;
    reports round them for reading, :func:`pitools.engine.strategies.format_params`)."""

    return json.dumps(typed_params(strategy, params), sort_keys=True)


def open_trades_db(path: str | Path) -> TradesDB:
    """Open (creating or migrating first, with a backup) the trades database at `path`."""
    path = Path(path)
    conn = _open_checked(path)  # one integrity check, one connection: migrate, then use it
    try:
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return TradesDB(path, conn)

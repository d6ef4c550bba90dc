"""Readiness before a nightly run: ``pitools check``.

Each check gives OK, WARN (worth knowing, the run can go on) or FAIL (the run should not
start); the report is a few readable lines and ``pitools check`` exits 0 when nothing
failed, 1 otherwise.

* data — staleness in *missed NYSE sessions* (the trading calendar, not hours): the
  sessions of the night (default: the last closed one) and before it that the store has no
  bar for. A weekend or a holiday misses nothing; a Monday without its bar on Tuesday
  morning is one missed session. More than the profile's ``max_stale_sessions`` is FAIL
  (04_signals refuses such a night); symbols without the night's bar are a WARN (no signal).
* store — every year file the manifest lists is there with the size, sha256 and row
  groups it recorded (a truncated, missing or bit-flipped file fails; ``pitools store repair``).
* database — trades.db exists and is at the latest schema version.
* disk — free space where the data lives.
* memory — the profile's universe, estimated from the store's manifest before anything is
  loaded, against the profile's ``memory_budget_mb``, and that budget against the memory
  the machine has available (RSS terms, never virtual size).
* numba — the compiled kernels are in the cache (a cold cache makes the night compile).
* temperature — the hottest sensor psutil reads (on a Pi, the SoC); skipped where there is none.

>>> report = check(load_profile("demo"))           # doctest: +SKIP
>>> print(report.text()); report.ok                # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil

from pitools.config import Profile
from pitools.kernels import cache_dir
from pitools.errors import PitoolsError
from pitools.data import Store
from pitools.data.calendar import last_closed_session
from pitools.data.freshness import freshness, resolve_night, sessions_missed
from pitools.data.universe import profile_universe
from pitools.market.db import LATEST_VERSION, schema_version
from pitools.memory import available_bytes

__all__ = ["Check", "Report", "check", "missed_sessions"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def text(self) -> str:
        lines = [f"  {c.status:<5} {c.name:<12} {c.detail}" for c in self.checks]
        verdict = "ready" if self.ok else "NOT READY: " + ", ".join(c.name for c in self.checks if c.status == FAIL)
        return "pitools check\n" + "\n".join(lines) + f"\n{verdict}"


def missed_sessions(last_bar, now: datetime | None = None) -> tuple[int, object]:
    """(sessions closed after `last_bar` up to `now`, the last closed session)."""

    last_closed = last_closed_session(now)
    return sessions_missed(last_bar, last_closed), last_closed


def _data(store_dir: Path, night, allowed_missed: int) -> Check:
    if not Store.exists(store_dir):
        return Check("data", FAIL, f"no bar store at {store_dir}: run `pitools demo-data` or `pitools ingest`")
    try:
        fresh = freshness(Store.open(store_dir), night, allowed_missed)
    except PitoolsError as exc:
        return Check("data", FAIL, str(exc))
    if fresh.last_bar is None:
        return Check("data", FAIL, f"the store at {store_dir} holds no equity bars (the traded universe)")
    if not fresh.ok:
        return Check("data", FAIL, f"{fresh.summary()}: 04_signals refuses stale data (research still runs); "
                                   "bring the store up to date")
    if fresh.stale:
        return Check("data", WARN, f"{fresh.summary()}; {fresh.stale_text(limit=5)}")
    return Check("data", OK, fresh.summary())


def _store(store_dir: Path) -> Check | None:
    if not Store.exists(store_dir):
        return None  # the data check says so
    try:
        store = Store.open(store_dir)
    except PitoolsError as exc:
        return Check("store", FAIL, str(exc))
    problems = store.verify()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check("store", FAIL, f"{problems[0]}{more}; run `pitools store repair --store {store_dir}`")
    return Check("store", OK, f"{len(store.partitions)} year files match the manifest (size, sha256, rows)")


def _database(db_path: Path) -> Check:
    """trades.db at this pitools' schema. The nightly creates or migrates it itself before its
    first notebook (``nightly._start_db_run`` → ``db.open_trades_db``, backup first), so a
    missing or older database is worth knowing (WARN), not a reason to stop; one that is not
    SQLite, or newer than this pitools (never downgraded), stops the night: FAIL."""

    try:
        version = schema_version(db_path)
    except PitoolsError as exc:
        return Check("database", FAIL, str(exc))
    if version is None:
        return Check("database", WARN, f"no trades database at {db_path} yet: the nightly creates it "
                                       "(or run `pitools db migrate`)")
    if version < LATEST_VERSION:
        return Check("database", WARN, f"{db_path} is at schema version {version}, latest is {LATEST_VERSION}: "
                                       "the nightly migrates it, backup first (or run `pitools db migrate`)")
    if version > LATEST_VERSION:
        return Check("database", FAIL, f"{db_path} is at schema version {version}, newer than this pitools "
                                       f"({LATEST_VERSION}): upgrade pitools (it never downgrades a database)")
    return Check("database", OK, f"{db_path}, schema version {version} (latest)")


def _disk(path: Path, min_free_mb: float) -> Check:
    probe = path
    while not probe.exists():
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free / 2**20
    status = OK if free_mb >= min_free_mb else FAIL
    return Check("disk", status, f"{free_mb:,.0f} MB free at {probe} (needs {min_free_mb:,.0f} MB)")


def _memory(profile: Profile, store_dir: Path) -> Check:
    budget = profile.memory_budget_mb
    avail = available_bytes()
    avail_mb = avail / 2**20 if avail is not None else None
    if not Store.exists(store_dir):
        return Check("memory", WARN, f"no store to estimate the universe from; budget {budget} MB")
    try:
        store = Store.open(store_dir)
    except PitoolsError:
        return Check("memory", WARN, f"the store is damaged: no universe to estimate; budget {budget} MB")
    universe = profile_universe(profile, store)
    est = universe.estimate()
    need_mb = est.peak_bytes / 2**20
    detail = (f"the universe ({len(universe.symbols)} symbols x {profile.max_years} y) needs ~{need_mb:,.0f} MB to load, "
              f"budget {budget} MB" + (f", {avail_mb:,.0f} MB available" if avail_mb is not None else ""))
    if need_mb > budget:
        return Check("memory", FAIL, detail + ": lower max_symbols / max_years or raise memory_budget_mb")
    if avail_mb is not None and budget > avail_mb:
        return Check("memory", WARN, detail + ": the budget is more than the machine has free now")
    return Check("memory", OK, detail)


def _numba(cache_dir: Path) -> Check:
    env = os.environ.get("NUMBA_CACHE_DIR")  # where numba really caches when it is set
    where = Path(env) if env else cache_dir
    if not where.exists():
        return Check("numba", WARN, f"no compiled kernels in {where}: the first backtest will compile (~25 s)")
    cached = [p for p in where.rglob("*.nbi") if "driver" in p.name]
    if not cached:
        return Check("numba", WARN, f"no compiled backtest loop in {where}: the first backtest will compile (~25 s)")
    return Check("numba", OK, f"compiled kernels cached in {where} ({len(list(where.rglob('*.nbc')))} files)")


def _temperature(thermal_root: Path | None) -> Check | None:
    """The hottest sensor: psutil's (hwmon and thermal zones) or, with `thermal_root`, that
    sysfs tree's ``thermal_zone*/temp``; None where there is none (a VM, a Mac)."""
    if thermal_root is None:
        sensors = getattr(psutil, "sensors_temperatures", dict)()  # not on macOS/Windows
        temps = [t.current for readings in sensors.values() for t in readings if t.current]
    else:
        temps = []
        for zone in sorted(thermal_root.glob("thermal_zone*/temp")):
            try:
                temps.append(int(zone.read_text().strip()) / 1000.0)
            except (OSError, ValueError):
                continue
    if not temps:
        return None
    hottest = max(temps)
    status = OK if hottest < 75 else WARN if hottest < 85 else FAIL  # a Pi 5 throttles from 85 °C
    return Check("temperature", status, f"{hottest:.1f} °C (the Pi throttles at 85 °C)")


def check(profile: Profile, store=None, db=None, now: datetime | None = None, night=None,
          allowed_missed: int | None = None, min_free_mb: float = 1024.0,
          thermal_root: str | Path | None = None) -> Report:
    """Every readiness check for `profile` and `night` (default: the last NYSE session closed by
    `now`); the one verdict ``pitools check`` prints and ``01_data`` shows.

    The data may lag the night by `allowed_missed` sessions (default: the profile's
    ``max_stale_sessions``, the limit 04_signals enforces). A `night` that is not a closed
    session raises :class:`~pitools.errors.NightError`.
    """

    store_dir = Path(store) if store is not None else profile.store_dir
    db_path = Path(db) if db is not None else profile.data_dir / "trades.db"
    night = resolve_night(night, now)
    allowed = profile.max_stale_sessions if allowed_missed is None else allowed_missed
    checks = [_data(store_dir, night, allowed), _store(store_dir), _database(db_path),
              _disk(profile.data_dir, min_free_mb), _memory(profile, store_dir), _numba(cache_dir())]
    report = Report([c for c in checks if c is not None])
    temp = _temperature(Path(thermal_root) if thermal_root is not None else None)
    if temp is not None:
        report.checks.append(temp)
    return report

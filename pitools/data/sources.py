"""Where the nightly ``01_data`` notebook gets new bars: small, pluggable refresh sources.

The profile's ``data_source`` names one of :data:`SOURCES`:

* ``drop_folder`` — another tool puts bar files into ``profile.drop_path``; they are imported
  with :func:`~pitools.data.ingest.ingest` and then moved to ``<drop>/imported/<timestamp>/``.
* ``http`` — Stooq-style daily CSV downloads of exactly the sessions each symbol lacks.
* ``none`` — the store is refreshed some other way.

Whatever a source gets wrong is quarantined (the raw bytes and a ``.reason.txt``) and listed
in the :class:`RefreshReport`; nothing is dropped silently, nothing is deleted, and the store
changes only in one atomic ingest commit. The quarantine is ``quarantine/<timestamp>`` beside
the store folder, as for ``pitools ingest`` (:func:`~pitools.data.ingest.default_quarantine`).

A store that ``pitools demo-data`` built is never refreshed with real bars: with files to
import (or symbols to download) the refresh stops with
:class:`~pitools.errors.MixedDataError` before anything is fetched, imported or moved.

Example
-------
>>> from pitools.config import load_profile
>>> report = refresh(load_profile("demo"))          # doctest: +SKIP
>>> print(report.summary())                         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from pitools.errors import ConfigError, did_you_mean
from pitools.data.atomic import write_bytes_atomic, write_text_atomic
from pitools.data.calendar import last_closed_session, sessions
from pitools.data.ingest import CSV_SUFFIXES, PARQUET_SUFFIXES, IngestReport, default_quarantine, free_name, ingest
from pitools.data.provenance import check_import
from pitools.data.store import Store

__all__ = ["SOURCES", "register", "get", "refresh", "RefreshReport", "stooq_symbol"]

SOURCES: dict[str, type] = {}
HTTP_WORKERS = 4  # a few requests at once: fast enough, and polite to a free service
GIVE_UP_AFTER = 8  # failed connections in a row: the service is down, do not wait out every symbol
STOOQ_INDEX = {"^GSPC": "^spx", "^VIX": "^vix", "^DJI": "^dji", "^IXIC": "^ndq", "^NDX": "^ndx"}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a source available as ``data_source: <name>``."""
    def deco(cls: type) -> type:
        cls.name = name
        SOURCES[name] = cls
        return cls
    return deco


def get(name: str) -> type:
    """The source class registered as `name`; :class:`ConfigError` naming the choices otherwise.

    Example
    -------
    >>> get("http").__name__
    'HttpSource'
    """
    if name not in SOURCES:
        raise ConfigError(f"`data_source` = {name!r} is not a known data source.{did_you_mean(name, SOURCES)} "
                          f"Allowed: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


@dataclass
class RefreshReport:
    """What one refresh did: what was checked, added, and quarantined (and where)."""

    source: str
    unit: str = "symbols"  # what `checked` counts: symbols (http) or files (drop_folder)
    checked: int = 0
    up_to_date: int = 0
    updated: list[str] = field(default_factory=list)  # symbols that gained bars
    rows_added: int = 0
    rows_replaced: int = 0
    added: dict[str, int] = field(default_factory=dict)  # rows per symbol (http) or per file (drop)
    problems: list[dict] = field(default_factory=list)  # symbol, file, reason, quarantined
    through: str | None = None  # the last closed session the http source asked for
    quarantine_dir: str | None = None
    moved_to: str | None = None  # where drop_folder put the files it processed
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing had to be quarantined or reported."""
        return not self.problems

    def problem(self, reason: str, symbol: str | None = None, file: str | None = None,
                quarantined: str | os.PathLike | None = None) -> None:
        self.problems.append({"symbol": symbol, "file": file, "reason": reason,
                              "quarantined": None if quarantined is None else str(quarantined)})

    def summary(self) -> str:
        """A few lines for a person: counts, what was added, what was quarantined and where."""
        if self.source == "none":
            return "refresh: data_source is 'none', nothing was fetched"
        checked = f"{self.checked} {self.unit} checked" + (
            f" ({self.up_to_date} up to date)" if self.unit == "symbols" else "")
        lines = [f"refresh from {self.source}: {checked}, {len(self.updated)} symbol(s) updated, "
                 f"{self.rows_added} new rows" + (f" through {self.through}" if self.through else "")
                 + (f", {self.rows_replaced} replaced" if self.rows_replaced else "")
                 + f"; {len(self.problems)} problem(s) in {self.elapsed_s:.1f} s"]
        if self.added:
            items = [f"{k} +{n}" for k, n in sorted(self.added.items())]
            lines.append("  added: " + ", ".join(items[:12]) + (f", … ({len(items)} in all)" if len(items) > 12 else ""))
        for p in self.problems[:10]:  # a night when the service is down must stay readable
            where = f" → {p['quarantined']}" if p["quarantined"] else ""
            lines.append(f"  problem: {p['symbol'] or p['file']}: {p['reason']}{where}")
        if len(self.problems) > 10:
            lines.append(f"  … and {len(self.problems) - 10} more problem(s) (all in the run record)")
        if self.quarantine_dir:
            lines.append(f"  quarantine: {self.quarantine_dir}")
        if self.moved_to:
            lines.append(f"  processed files moved to {self.moved_to}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-able form for the run record."""
        return {**asdict(self), "ok": self.ok}


def refresh(profile, store: str | os.PathLike | None = None, now: datetime | None = None,
            quarantine: str | os.PathLike | None = None,
            progress: Callable[[int, int], None] | None = None) -> RefreshReport:
    """Bring the store up to date from the profile's ``data_source``.

    Parameters
    ----------
    profile : Profile
        Gives ``data_source``, ``drop_path``, ``http_base_url``, ``http_timeout_s``, ``data_dir``.
    store : path, optional
        The bar store (default ``profile.store_dir``); it must exist (:class:`NoStoreError`).
    now : datetime, optional
        The moment that decides the last closed NYSE session (default: the current time).
    quarantine : path, optional
        Where bad files, responses and rows go; default ``quarantine/<timestamp>`` beside the
        store folder (``<data_dir>/quarantine/…`` for the profile's own store).
    progress : callable, optional
        ``progress(done, total)``, e.g. :func:`pitools.progress.reporter`.

    Returns
    -------
    RefreshReport
        ``report.ok`` is False when something was quarantined; print ``report.summary()``.

    Raises
    ------
    MixedDataError
        The store was built by ``pitools demo-data`` and there is something to import into it.

    Example
    -------
    >>> report = refresh(profile, now=datetime(2026, 11, 20, 23, 0))   # doctest: +SKIP
    >>> report.updated, report.rows_added                               # doctest: +SKIP
    (['AAPL', '^GSPC'], 10)
    """
    cls = get(profile.data_source)
    started = time.monotonic()
    report = RefreshReport(source=profile.data_source)
    store_root = Path(store) if store is not None else Path(profile.store_dir)
    qdir = Path(quarantine) if quarantine is not None else default_quarantine(store_root)
    cls(profile, store_root, now, qdir, progress).run(report)
    if report.quarantine_dir is None and qdir.is_dir() and any(qdir.iterdir()):
        report.quarantine_dir = str(qdir)
    report.elapsed_s = round(time.monotonic() - started, 3)
    return report


def _fresh(base: Path) -> Path:
    """``base/<timestamp>``, not yet used (two runs in one second get ``<timestamp>.1`` …)."""
    return free_name(base / datetime.now().strftime("%Y%m%dT%H%M%S"))


class _Source:
    def __init__(self, profile, store: Path, now: datetime | None, qdir: Path,
                 progress: Callable[[int, int], None] | None):
        self.profile, self.store, self.now, self.qdir, self.progress = profile, store, now, qdir, progress

    def _refuse_demo_store(self, store: Store, what: str) -> None:
        """A demo store gets no real bars: said before anything is fetched or moved."""
        check_import(store, force=False, action=f"refreshing it from `data_source` = {self.profile.data_source!r} ({what})",
                     ways_out="Point the profile (`data_dir`) or the notebook's `store` at a store of real bars, "
                              "or set `data_source: none` for the demo")


@register("none")
class NoneSource(_Source):
    """Fetches nothing: the store is kept up to date by something else."""

    def run(self, report: RefreshReport) -> None:
        report.notes.append("data_source is 'none': the store is refreshed some other way")


@register("drop_folder")
class DropFolderSource(_Source):
    """Imports the bar files another tool dropped into ``profile.drop_path``."""

    def run(self, report: RefreshReport) -> None:
        report.unit = "files"
        target = Store.open(self.store)  # a missing store is a setup error, not something to create here
        drop = Path(self.profile.drop_path)
        store = self.store.resolve()
        if drop.resolve() == store or store in drop.resolve().parents or drop.resolve() in store.parents:
            # Files under the drop folder are moved away after import: never the store's own.
            raise ConfigError(f"`drop_dir` = {self.profile.drop_dir!r} ({str(drop)!r}) overlaps the store at "
                              f"{str(self.store)!r}; give the drop folder a folder of its own (default 'incoming')")
        if not drop.is_dir():
            drop.mkdir(parents=True)
            report.notes.append(f"no new files: created the drop folder {drop}")
            return
        files, other = self._scan(drop)
        if other:
            report.notes.append(f"left {len(other)} file(s) that are not bar files in {drop}: "
                                + ", ".join(other[:5]) + ("…" if len(other) > 5 else ""))
        report.checked = len(files)
        if not files:
            report.notes.append(f"no new files in {drop}")
            return
        self._refuse_demo_store(target, f"{len(files)} file(s) in {drop}")  # they stay where they are
        # Only this snapshot is ingested and then moved: files arriving meanwhile wait for tomorrow.
        result = ingest(files, self.store, fmt="auto", quarantine=self.qdir, progress=self.progress)
        _record(report, result, {str(f): None for f in files}, drop)
        dest = _fresh(drop / "imported")
        for f in files:
            target = free_name(dest / f.relative_to(drop))
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(f, target)
            except OSError as exc:  # it stays in place: importing it again tomorrow is harmless
                report.problem(f"processed but could not be moved to {dest} ({exc})", file=str(f.relative_to(drop)))
        report.moved_to = str(dest)

    def _scan(self, drop: Path) -> tuple[list[Path], list[str]]:
        skip = {(drop / "imported").resolve(), self.qdir.resolve(), (self.store.parent / "quarantine").resolve(),
                (Path(self.profile.data_dir) / "quarantine").resolve()}
        files, other = [], []
        for p in sorted(drop.rglob("*")):
            rel = p.relative_to(drop)
            # Dot files are downloads in progress by convention (write, then rename).
            if p.is_file() and not any(part.startswith(".") for part in rel.parts) \
                    and not any(s == p.resolve() or s in p.resolve().parents for s in skip):
                (files if p.suffix.lower() in CSV_SUFFIXES | PARQUET_SUFFIXES else other).append(p)
        return files, [str(p.relative_to(drop)) for p in other]


def _record(report: RefreshReport, result: IngestReport, symbol_of: dict[str, str | None], root: Path | None) -> None:
    """Copy an ingest outcome into the refresh report (per symbol for http, per file for drops)."""
    qdir = result.quarantine_dir
    updated = set(report.updated)
    for f in result.files:
        sym = symbol_of.get(f.path)
        name = Path(f.path).name
        label = sym or (str(Path(f.path).relative_to(root)) if root else name)
        if f.status == "quarantined":
            report.problem(f.reason, symbol=sym, file=None if sym else label, quarantined=qdir / name if qdir else None)
            continue
        report.added[label] = f.rows_imported
        updated.update(f.symbols)
        if f.rows_rejected:
            why = "; ".join(f"{n} × {r}" for r, n in sorted(f.reasons.items(), key=lambda x: -x[1]))
            report.problem(f"{f.rows_rejected} row(s) failed validation ({why})", symbol=sym,
                           file=None if sym else label, quarantined=qdir / f"{name}.rejected.csv" if qdir else None)
    report.updated = sorted(updated)
    report.rows_added += result.new_rows
    report.rows_replaced += result.replaced_rows
    if qdir is not None:
        report.quarantine_dir = str(qdir)


def stooq_symbol(symbol: str) -> str:
    """Stooq's name of a store symbol: ``AAPL`` → ``aapl.us``, ``BRK.B`` → ``brk-b.us``, ``^GSPC`` → ``^spx``.

    Example
    -------
    >>> stooq_symbol("AAPL"), stooq_symbol("^VIX")
    ('aapl.us', '^vix')
    """
    if symbol.startswith("^"):
        return STOOQ_INDEX.get(symbol.upper(), symbol.lower())
    return symbol.lower().replace(".", "-") + ".us"


@dataclass
class _Response:
    url: str
    status: int | None = None
    content_type: str = ""
    body: bytes | None = None
    error: str | None = None  # why the transfer itself failed
    skipped: bool = False  # never sent: the service was given up on


def _fetch(url: str, timeout: float) -> _Response:
    """One GET; never raises: every failure becomes `error` (with what bytes did arrive)."""
    out = _Response(url)
    request = urllib.request.Request(url, headers={"User-Agent": "pitools-refresh/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            out.status, out.content_type = resp.status, resp.headers.get("Content-Type", "")
            out.body = resp.read()
    except urllib.error.HTTPError as exc:
        out.status, out.content_type = exc.code, exc.headers.get("Content-Type", "") if exc.headers else ""
        with contextlib.suppress(Exception):  # an error page that itself breaks off: the status says enough
            out.body = exc.read()
        out.error = f"HTTP {exc.code} {exc.reason}"
    except http.client.IncompleteRead as exc:
        out.body = exc.partial
        out.error = f"truncated response: got {len(exc.partial)} bytes, {exc.expected} more were announced"
    except (TimeoutError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        out.error = (f"timed out after {timeout:g} s (http_timeout_s)" if isinstance(reason, TimeoutError)
                     else f"connection failed ({reason})")
    except (OSError, http.client.HTTPException, ValueError) as exc:  # resets, bad status lines, bad URLs
        out.error = f"request failed ({type(exc).__name__}: {exc})"
    return out


def _parse(resp: _Response, last: pd.Timestamp) -> tuple[pd.DataFrame | None, str | None]:
    """The response's rows after `last` as text, or why the response cannot be used."""
    if resp.error:
        return None, resp.error
    if resp.status != 200:
        return None, f"HTTP status {resp.status} (expected 200)"
    try:
        text = (resp.body or b"").decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "not UTF-8 text (binary data instead of CSV)"
    stripped = text.strip()
    if not stripped:
        return None, "empty response"
    if "html" in resp.content_type.lower() or stripped.startswith("<"):
        title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
        return None, "an HTML page instead of CSV" + (f" (title: {title.group(1).strip()[:80]!r})" if title else "")
    if stripped.lower().startswith("no data"):
        return None, "Stooq has no data for this symbol and range ('No data')"
    lines = stripped.splitlines()
    header = [c.strip().lower() for c in lines[0].split(",")]
    if header[0] != "date" or "close" not in header:
        return None, f"not a Stooq CSV (first line: {lines[0][:80]!r}; expected Date,Open,High,Low,Close,Volume)"
    if len(lines) > 1 and len(lines[-1].split(",")) != len(header):
        return None, f"truncated response: the last line {lines[-1][:60]!r} is cut mid-row"
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        return None, f"unreadable CSV ({str(exc)[:120]})"
    dates = frame.iloc[:, 0].str.strip()
    compact = bool(dates.str.fullmatch(r"\d{8}").all())
    parsed = pd.to_datetime(dates, format="%Y%m%d" if compact else "ISO8601", errors="coerce")
    # Rows whose date cannot be read stay in: ingest rejects them with a reason.
    frame = frame[parsed.isna() | (parsed > last)]
    if frame.empty:
        return None, f"no bars after the last one in the store ({last.date()})"
    return frame, None


@register("http")
class HttpSource(_Source):
    """Downloads the missing sessions of every store symbol from a Stooq-style CSV endpoint."""

    def run(self, report: RefreshReport) -> None:
        store = Store.open(self.store)
        through = last_closed_session(self.now, store.calendar)
        report.through = str(through.date())
        infos = {s: store.symbol_info(s) for s in store.symbols(None)}
        report.checked = len(infos)
        if not infos:
            report.notes.append("the store holds no symbols: nothing to refresh")
            return
        first = min(i.last for i in infos.values()) + pd.Timedelta(days=1)
        open_days = sessions(first, through, store.calendar)
        wanted: dict[str, tuple[str, pd.Timestamp]] = {}
        for sym, info in infos.items():
            missing = open_days[open_days > info.last]
            if len(missing) == 0:
                report.up_to_date += 1
                continue
            query = urllib.parse.urlencode({"s": stooq_symbol(sym), "d1": missing[0].strftime("%Y%m%d"),
                                            "d2": through.strftime("%Y%m%d"), "i": "d"})
            base = self.profile.http_base_url
            wanted[sym] = (base + ("&" if "?" in base else "?") + query, info.last)
        if not wanted:
            return
        self._refuse_demo_store(store, f"{len(wanted)} symbol(s) to download")
        responses = self._download({sym: url for sym, (url, _) in wanted.items()}, report)
        # Stage the good rows as <SYMBOL>.csv (ingest names symbols from file names, '^' kept)
        # so that all symbols land in the store in one validated, atomic commit.
        with tempfile.TemporaryDirectory(prefix=".refresh-", dir=self.store.parent) as staging:
            symbol_of: dict[str, str | None] = {}
            for sym in sorted(responses):
                resp = responses[sym]
                frame, reason = _parse(resp, wanted[sym][1])
                if resp.skipped:
                    report.problem(reason, symbol=sym)  # nothing was sent, nothing to keep
                    continue
                if reason is not None:
                    report.problem(reason, symbol=sym, quarantined=self._quarantine(sym, resp, reason))
                    continue
                path = Path(staging) / f"{sym}.csv"
                frame.to_csv(path, index=False)
                symbol_of[str(path)] = sym
            if symbol_of:
                result = ingest(list(symbol_of), self.store, fmt="stooq", quarantine=self.qdir)
                _record(report, result, symbol_of, None)

    def _download(self, urls: dict[str, str], report: RefreshReport) -> dict[str, _Response]:
        give_up = threading.Event()
        timeout = self.profile.http_timeout_s

        def fetch(url: str) -> _Response:
            if give_up.is_set():
                return _Response(url, error=f"not requested: {GIVE_UP_AFTER} connections failed in a row",
                                 skipped=True)
            return _fetch(url, timeout)

        responses: dict[str, _Response] = {}
        failed = 0
        with ThreadPoolExecutor(max_workers=HTTP_WORKERS, thread_name_prefix="refresh") as pool:
            futures = {pool.submit(fetch, url): sym for sym, url in urls.items()}
            for done, fut in enumerate(as_completed(futures), 1):
                resp = responses[futures[fut]] = fut.result()
                failed = failed + 1 if resp.status is None and not resp.skipped else 0
                if failed >= GIVE_UP_AFTER and not give_up.is_set():
                    give_up.set()
                    report.notes.append(f"gave up after {GIVE_UP_AFTER} failed connections in a row "
                                        f"({resp.error}); the other symbols were not requested")
                if self.progress is not None:
                    self.progress(done, len(futures))
        return responses

    def _quarantine(self, sym: str, resp: _Response, reason: str) -> Path:
        """Keep what arrived (if anything) and why it was refused; returns the file to look at."""
        self.qdir.mkdir(parents=True, exist_ok=True)
        head = (resp.body or b"")[:512].lstrip().lower()
        ext = (".html" if head.startswith(b"<") or "html" in resp.content_type.lower()
               else ".csv" if head.startswith((b"date", b"\xef\xbb\xbfdate")) else ".txt")
        target = free_name(self.qdir / (f"{sym}{ext}" if resp.body is not None else sym))
        note = target.with_name(target.name + ".reason.txt")  # nothing arrived: only <SYMBOL>.reason.txt
        if resp.body is not None:
            write_bytes_atomic(target, resp.body)
        write_text_atomic(note, f"symbol: {sym}\nurl: {resp.url}\nstatus: {resp.status}\n"
                                f"content-type: {resp.content_type}\nbytes: {len(resp.body or b'')}\nreason: {reason}\n")
        return target if resp.body is not None else note

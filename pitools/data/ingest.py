"""Import bar files (Yahoo or Stooq CSV, parquet) into the store, quarantining what is bad.

Nothing is lost: the source files are never moved or changed; a file that cannot be used
at all is copied to the quarantine folder with a ``.reason.txt`` beside it; rows that
cannot be used are written to ``<file>.rejected.csv`` there, each with its reason; the rest
is imported in one store transaction per batch (a crash leaves the store as it was before
that batch).

Formats (``fmt``):

* ``yahoo``  — ``Date,Open,High,Low,Close,Adj Close,Volume``; the symbol is the file name.
* ``stooq``  — ``Date,Open,High,Low,Close,Volume``, or the bulk-download form
  ``<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>``
  (dates ``YYYYMMDD``, tickers like ``AAPL.US``).
* ``parquet`` — long bars with ``date, open, high, low, close[, volume][, symbol]``.
* ``auto``   — by extension and header.

When two files of one ingest hold the same (symbol, date), the later file (in path order)
wins, as a re-ingest of a newer download would.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..errors import DataError, IngestError, did_you_mean
from .atomic import write_text_atomic
from .store import Store
from .validate import MISSING_TOKENS, check_bars

__all__ = ["ingest", "IngestReport", "FileOutcome", "FORMATS"]

log = logging.getLogger(__name__)

FORMATS = ("auto", "yahoo", "stooq", "parquet")
CSV_SUFFIXES = {".csv", ".txt", ".gz"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
_BATCH_ROWS = 1_500_000  # rows validated before one store commit: bounds memory on a Pi
_SYMBOL_RE = re.compile(r"^[A-Z0-9^][A-Z0-9.\-_^=]{0,23}$")

# Header names (lower-case, without <>, spaces and underscores) → our column names.
_ALIASES = {
    "date": "date", "datetime": "date", "timestamp": "date", "day": "date",
    "open": "open", "high": "high", "low": "low", "close": "close",
    "adjclose": "adj_close", "volume": "volume", "vol": "volume",
    "ticker": "symbol", "symbol": "symbol", "per": "period",
}


@dataclass
class FileOutcome:
    """What happened to one source file."""

    path: str
    status: str  # "imported", "partial", "quarantined"
    symbols: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_imported: int = 0
    rows_rejected: int = 0
    reason: str = ""  # why a whole file was quarantined
    reasons: dict[str, int] = field(default_factory=dict)  # row rejections by reason
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        name = Path(self.path).name
        if self.status == "quarantined":
            return f"  quarantined  {name}: {self.reason}"
        syms = ",".join(self.symbols[:3]) + ("…" if len(self.symbols) > 3 else "")
        text = f"  {self.status:<12} {name} [{syms}]: {self.rows_imported} rows"
        if self.rows_rejected:
            why = "; ".join(f"{n} × {r}" for r, n in sorted(self.reasons.items(), key=lambda x: -x[1]))
            text += f", {self.rows_rejected} rejected ({why})"
        if self.notes:
            text += " — " + "; ".join(self.notes)
        return text


@dataclass
class IngestReport:
    """The outcome of :func:`ingest`: per file, and the rows written to the store."""

    files: list[FileOutcome]
    new_rows: int
    replaced_rows: int
    quarantine_dir: Path | None
    ignored: list[str] = field(default_factory=list)

    @property
    def imported_rows(self) -> int:
        return sum(f.rows_imported for f in self.files)

    @property
    def ok(self) -> bool:
        """True when something usable was imported."""
        return self.imported_rows > 0

    def summary(self) -> str:
        n = len(self.files)
        bad = sum(f.status == "quarantined" for f in self.files)
        partial = sum(f.status == "partial" for f in self.files)
        rejected = sum(f.rows_rejected for f in self.files)
        lines = [f"ingest: {n} file(s) → {n - bad} imported ({partial} partially), {bad} quarantined; "
                 f"{self.new_rows} new rows, {self.replaced_rows} replaced, {rejected} rows rejected"]
        lines += [f.line() for f in self.files]
        if self.ignored:
            lines.append(f"  ignored {len(self.ignored)} file(s) that are not .csv/.txt/.gz/.parquet: "
                         + ", ".join(Path(p).name for p in self.ignored[:5]) + ("…" if len(self.ignored) > 5 else ""))
        if self.quarantine_dir is not None:
            lines.append(f"quarantine: {self.quarantine_dir}")
        return "\n".join(lines)


class _FileRejected(Exception):
    """A whole file cannot be used; the message says why."""


def _expand(sources: Iterable[str | os.PathLike], skip: Path) -> tuple[list[Path], list[str]]:
    """Files to read; `skip` (the quarantine folder) is never read back in."""
    files, ignored = [], []
    skip = skip.resolve()
    for src in sources:
        p = Path(src)
        if not p.exists():
            raise IngestError(f"`SRC` {str(src)!r} does not exist (give files or folders of .csv/.txt/.parquet bars)")
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if skip in child.resolve().parents:
                    continue
                if child.is_file() and not child.name.startswith("."):
                    if child.suffix.lower() in CSV_SUFFIXES | PARQUET_SUFFIXES:
                        files.append(child)
                    else:
                        ignored.append(str(child))
        else:
            files.append(p)
    return files, ignored


def _symbol_from_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv", ".txt", ".parquet", ".pq"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return _normalise_symbol(name)


def _is_missing(value) -> bool:
    if value is None or (isinstance(value, float) and value != value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_TOKENS


def _normalise_symbol(text: str) -> str:
    sym = str(text).strip().upper()
    if sym.endswith(".US"):  # Stooq's market suffix
        sym = sym[:-3]
    return sym


def _canonical(columns) -> dict[str, str]:
    mapping = {}
    for c in columns:
        key = re.sub(r"[<>\s_]", "", str(c)).lower()
        if key in _ALIASES and _ALIASES[key] not in mapping.values():
            mapping[c] = _ALIASES[key]
    return mapping


def _read(path: Path, fmt: str) -> tuple[pd.DataFrame, str | None, str]:
    """Read one file as raw (mostly text) columns; returns frame, date format, detected format."""
    suffix = path.suffix.lower()
    is_parquet = fmt == "parquet" or (fmt == "auto" and suffix in PARQUET_SUFFIXES)
    if is_parquet:
        try:
            frame = pd.read_parquet(path)
            if isinstance(frame.index, pd.DatetimeIndex) or str(frame.index.name).lower() in ("date", "datetime"):
                frame = frame.reset_index()  # df.to_parquet() of a date-indexed frame
        except Exception as exc:  # pyarrow raises many types for a damaged file
            raise _FileRejected(f"unreadable parquet file ({type(exc).__name__}: {str(exc)[:120]})") from None
        detected = "parquet"
    else:
        _reject_binary(path)
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                                compression="infer", encoding_errors="strict")
        except UnicodeDecodeError:
            raise _FileRejected("unreadable: not a text CSV file (binary or wrong encoding)") from None
        except pd.errors.EmptyDataError:
            raise _FileRejected("empty file") from None
        except (pd.errors.ParserError, OSError, EOFError, ValueError) as exc:
            raise _FileRejected(f"unreadable CSV ({type(exc).__name__}: {str(exc)[:120]})") from None
        headers = [re.sub(r"\s", "", str(c)).lower() for c in frame.columns]
        detected = "stooq" if any(h.startswith("<") for h in headers) else (
            "yahoo" if "adjclose" in headers else "csv")
        if fmt == "stooq":
            detected = "stooq"
    mapping = _canonical(frame.columns)
    frame = frame.rename(columns=mapping)[list(mapping.values())]
    date_format = "%Y%m%d" if detected == "stooq" and _looks_compact(frame) else None
    return frame, date_format, detected


def _reject_binary(path: Path) -> None:
    """A CSV reader happily turns binary junk into one odd column; say what it is instead."""
    import gzip

    try:
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rb") as fh:
            head = fh.read(8192)
    except (OSError, EOFError) as exc:
        raise _FileRejected(f"unreadable ({type(exc).__name__}: {str(exc)[:120]})") from None
    if b"\0" in head:
        raise _FileRejected("unreadable: binary data, not a text CSV file")


def _looks_compact(frame: pd.DataFrame) -> bool:
    if "date" not in frame.columns or frame.empty:
        return False
    sample = frame["date"].astype(str).str.strip().head(20)
    return bool(sample.str.fullmatch(r"\d{8}").all())


def _prepare(path: Path, fmt: str) -> tuple[pd.DataFrame, str | None, list[str]]:
    frame, date_format, detected = _read(path, fmt)
    required = ["date", "open", "high", "low", "close"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise _FileRejected(f"missing column(s) {', '.join(missing)} (found: {', '.join(map(str, frame.columns)) or 'none'}; "
                            f"need Date, Open, High, Low, Close[, Volume])")
    if frame.empty:
        raise _FileRejected("no rows (header only)")
    if "period" in frame.columns:
        periods = sorted(set(frame["period"].astype(str).str.strip().str.upper()) - {"D"})
        if periods:
            raise _FileRejected(f"not daily bars: <PER> = {periods[0]!r} (download the daily 'D' files)")
    if "symbol" in frame.columns:
        # A row without a symbol is rejected row by row in check_bars ("missing symbol").
        frame["symbol"] = frame["symbol"].map(lambda v: "" if _is_missing(v) else _normalise_symbol(v))
    else:
        frame["symbol"] = _symbol_from_name(path)
    bad_syms = sorted({s for s in frame["symbol"].unique() if s and not _SYMBOL_RE.match(s)})
    if bad_syms:
        raise _FileRejected(f"cannot use symbol(s) {bad_syms[:3]!r} (from the file name or ticker column): "
                            "use letters, digits, '.', '-', '^' (e.g. AAPL.csv, ^GSPC.csv)")
    blank = frame[["open", "high", "low", "close"]].map(_is_missing)
    if bool(blank.to_numpy().all()):
        raise _FileRejected("all prices are missing (all-NaN file)")
    return frame, date_format, [f"read as {detected}"] if fmt == "auto" else []


def ingest(sources: Iterable[str | os.PathLike] | str | os.PathLike, store: str | os.PathLike,
           fmt: str = "auto", quarantine: str | os.PathLike | None = None, adjust: bool = True,
           progress: Callable[[int, int], None] | None = None) -> IngestReport:
    """Import bar files or folders into the store at `store`.

    Parameters
    ----------
    sources : path or list of paths
        Files, or folders searched recursively for ``.csv``, ``.txt``, ``.gz``, ``.parquet``.
    store : path
        The bar store; created if it does not exist.
    fmt : {"auto", "yahoo", "stooq", "parquet"}
    quarantine : path, optional
        Where bad files and rows go; default ``<store>/../quarantine/<timestamp>``.
    adjust : bool
        Apply Yahoo's ``Adj Close`` to open/high/low/close (see :func:`check_bars`).

    Returns
    -------
    IngestReport
        Print ``report.summary()``; ``report.ok`` is False when nothing was imported.

    Example
    -------
    >>> report = ingest(["downloads/"], "data/store")   # doctest: +SKIP
    >>> print(report.summary())                         # doctest: +SKIP
    """
    if fmt not in FORMATS:
        raise DataError(f"`format` = {fmt!r} is not supported.{did_you_mean(fmt, FORMATS)} "
                        f"Allowed: {', '.join(FORMATS)}")
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    store_root = Path(store)
    qdir = Path(quarantine) if quarantine is not None else (
        store_root.parent / "quarantine" / datetime.now().strftime("%Y%m%dT%H%M%S"))
    files, ignored = _expand(sources, skip=qdir)
    if not files:
        raise IngestError(f"no bar files found in {', '.join(map(str, sources))} "
                          "(looked for .csv, .txt, .gz, .parquet)")
    calendar = Store.open(store_root).calendar if Store.exists(store_root) else "XNYS"
    outcomes: list[FileOutcome] = []
    pending: list[pd.DataFrame] = []
    pending_rows = 0
    totals = {"new": 0, "replaced": 0}
    used_quarantine = False

    def flush() -> None:
        nonlocal pending, pending_rows
        if not pending:
            return
        batch = pd.concat(pending, ignore_index=True)
        with Store.create(store_root).writer() as w:
            counts = w.upsert(batch)
            w.info.setdefault("source", "ingest")
            w.commit()
        totals["new"] += counts["new"]
        totals["replaced"] += counts["replaced"]
        pending, pending_rows = [], 0

    for k, path in enumerate(files):
        outcome = FileOutcome(str(path), "imported")
        try:
            raw, date_format, notes = _prepare(path, fmt)
            outcome.rows_read = len(raw)
            result = check_bars(raw, calendar=calendar, date_format=date_format, adjust=adjust)
            outcome.notes = notes + result.notes
            outcome.rows_imported = len(result.good)
            outcome.rows_rejected = len(result.rejected)
            outcome.reasons = result.reason_counts()
            outcome.symbols = sorted(result.good["symbol"].unique().tolist()) or sorted(raw["symbol"].unique().tolist())
            if result.good.empty:
                top = max(outcome.reasons, key=outcome.reasons.get) if outcome.reasons else "no usable rows"
                raise _FileRejected(f"no usable rows ({outcome.rows_rejected} rejected, mostly: {top})")
            if outcome.rows_rejected:
                outcome.status = "partial"
                used_quarantine = True
                _quarantine_rows(qdir, path, result.rejected)
            pending.append(result.good)
            pending_rows += len(result.good)
        except (_FileRejected, Exception) as exc:  # a file we could not foresee is quarantined too
            reason = str(exc) if isinstance(exc, _FileRejected) else f"unexpected {type(exc).__name__}: {exc}"
            outcome.status, outcome.reason = "quarantined", reason[:400]
            outcome.rows_imported = 0
            used_quarantine = True
            _quarantine_file(qdir, path, outcome.reason)
        outcomes.append(outcome)
        log.debug("%s", outcome.line().strip())
        if pending_rows >= _BATCH_ROWS:
            flush()
        if progress is not None:
            progress(k + 1, len(files))
    flush()
    return IngestReport(outcomes, totals["new"], totals["replaced"], qdir if used_quarantine else None, ignored)


def free_name(path: Path) -> Path:
    """`path`, or `name.1.ext`, `name.2.ext` …: a name neither it nor its ``.reason.txt``
    holds yet (quarantine and archive folders never overwrite anything)."""
    n, out = 0, path
    while out.exists() or out.with_name(out.name + ".reason.txt").exists():
        n += 1
        out = path.with_name(f"{path.stem}.{n}{path.suffix}")
    return out


def _quarantine_name(qdir: Path, path: Path) -> Path:
    qdir.mkdir(parents=True, exist_ok=True)
    return free_name(qdir / path.name)


def _quarantine_file(qdir: Path, path: Path, reason: str) -> None:
    target = _quarantine_name(qdir, path)
    shutil.copy2(path, target)  # a copy: the source stays where the user put it
    write_text_atomic(target.with_name(target.name + ".reason.txt"),
                      f"source: {path.resolve()}\nreason: {reason}\n")


def _quarantine_rows(qdir: Path, path: Path, rejected: pd.DataFrame) -> None:
    target = _quarantine_name(qdir, path)
    rows = target.with_name(target.name + ".rejected.csv")
    write_text_atomic(rows, rejected.to_csv(index=False))
    counts = rejected["reason"].value_counts()
    write_text_atomic(target.with_name(target.name + ".reason.txt"),
                      f"source: {path.resolve()}\nrejected rows: {len(rejected)} (in {rows.name})\n"
                      + "".join(f"  {n} × {r}\n" for r, n in counts.items()))

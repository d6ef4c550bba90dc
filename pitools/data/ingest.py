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

CSV dialects (encoding, separator, decimal mark, dates) are read exactly as the file meant, or
the file is refused with a reason: the rules are in :mod:`pitools.data.dialect`.

Values: prices in :data:`~pitools.data.validate.PRICE_RANGE`, volumes 0 or in
  :data:`~pitools.data.validate.VOLUME_RANGE` (in the float32 panel none becomes inf or 0);
  other rows are rejected one by one. Values in reasons are cut to 40 characters.

When two files of one ingest hold the same (symbol, date), the later file (in path order)
wins, as a re-ingest of a newer download would.

Real bars never land in a store that ``pitools demo-data`` built (its manifest says
``"source": "demo"``) unless ``force``: :class:`~pitools.errors.MixedDataError` (exit 2)
names the store before any file is read; a forced import marks the store ``"mixed"``, any
other ``"ingest"`` (:mod:`pitools.data.provenance`).

Write failures (disk full, read-only folder) never end in a traceback, and nothing is lost:
a store batch that cannot be written raises :class:`~pitools.errors.StoreError` (exit 1)
naming the path — the store keeps what it held; a quarantine record that cannot be written
is removed again (no half records), the file's reason stays in its outcome, and after the
other files are imported :class:`QuarantineError` (exit 1) says which file and why.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from pitools.data.atomic import write_text_atomic
from pitools.data.bar_files import CSV_SUFFIXES, FORMATS, PARQUET_SUFFIXES, expand, prepare
from pitools.data.dialect import SEPARATORS, _check_dialect_args, _cut_text, _FileRejected
from pitools.data.provenance import DEMO, MIXED, check_import, source_after_import
from pitools.data.store import Store
from pitools.data.validate import check_bars
from pitools.errors import DataError, IngestError, PitoolsError, QuarantineError, StoreError, did_you_mean

__all__ = ["ingest", "IngestReport", "FileOutcome", "QuarantineError", "FORMATS", "SEPARATORS",
           "CSV_SUFFIXES", "PARQUET_SUFFIXES", "default_quarantine"]

log = logging.getLogger(__name__)

_BATCH_ROWS = 1_500_000  # rows validated before one store commit: bounds memory on a Pi


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
    quarantine_error: str = ""  # why its quarantine record could not be written

    def why_rows(self) -> str:
        return "; ".join(f"{n} × {r}" for r, n in sorted(self.reasons.items(), key=lambda x: -x[1]))

    def line(self) -> str:
        name = Path(self.path).name
        if self.status == "quarantined":
            text = f"  quarantined  {name}: {self.reason}"
        else:
            syms = ",".join(self.symbols[:3]) + ("…" if len(self.symbols) > 3 else "")
            text = f"  {self.status:<12} {name} [{syms}]: {self.rows_imported} rows"
            if self.rows_rejected:
                text += f", {self.rows_rejected} rejected ({self.why_rows()})"
            if self.notes:
                text += " — " + "; ".join(self.notes)
        if self.quarantine_error:
            text += f" — NOT RECORDED: {self.quarantine_error}"
        return text


@dataclass
class IngestReport:
    """The outcome of :func:`ingest`: per file, and the rows written to the store."""

    files: list[FileOutcome]
    new_rows: int
    replaced_rows: int
    quarantine_dir: Path | None
    ignored: list[str] = field(default_factory=list)
    source: str | None = None  # the store's provenance after the import ("ingest" or "mixed")

    @property
    def imported_rows(self) -> int:
        return sum(f.rows_imported for f in self.files)

    @property
    def ok(self) -> bool:
        """True when something usable was imported."""
        return self.imported_rows > 0

    @property
    def unrecorded(self) -> list[FileOutcome]:
        """Files whose quarantine record could not be written."""
        return [f for f in self.files if f.quarantine_error]

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
        if self.source == MIXED:
            lines.append('store: real and demo bars mixed (forced); its manifest says "source": "mixed"')
        if self.unrecorded:
            lines.append(f"{len(self.unrecorded)} file(s) could not be recorded in the quarantine: see NOT RECORDED above")
        return "\n".join(lines)



def default_quarantine(store: str | os.PathLike) -> Path:
    """``quarantine/<timestamp>`` beside the store folder (``<data_dir>/quarantine/…`` for a
    profile's ``<data_dir>/store``), a name not used yet: where an import into `store` puts
    what it refuses, whoever starts it (``pitools ingest``, the nightly refresh)."""
    return free_name(Path(store).parent / "quarantine" / datetime.now().strftime("%Y%m%dT%H%M%S"))


def ingest(sources: Iterable[str | os.PathLike] | str | os.PathLike, store: str | os.PathLike,
           fmt: str = "auto", quarantine: str | os.PathLike | None = None, adjust: bool = True,
           progress: Callable[[int, int], None] | None = None, sep: str | None = None,
           decimal: str | None = None, dayfirst: bool | None = None, force: bool = False) -> IngestReport:
    """Import bar files or folders into the store at `store`.

    Parameters
    ----------
    sources : path or list of paths
        Files, or folders searched recursively for ``.csv``, ``.txt``, ``.gz``, ``.parquet``.
    store : path
        The bar store; created if it does not exist.
    fmt : {"auto", "yahoo", "stooq", "parquet"}
    quarantine : path, optional
        Where bad files and rows go; default ``<store>/../quarantine/<timestamp>``
        (:func:`default_quarantine`).
    adjust : bool
        Apply Yahoo's ``Adj Close`` to open/high/low/close (see :func:`check_bars`).
    sep, decimal, dayfirst : optional
        The CSV dialect, when detecting it (see :mod:`pitools.data.dialect`) is not wanted:
        separator ``,`` ``;`` ``\\t`` ``|``; decimal mark ``.`` or ``,``; whether
        day/month/year dates are day-first.
    force : bool
        Import into a store that ``pitools demo-data`` built all the same, mixing real and
        synthetic bars; the store's manifest then says ``"source": "mixed"``.

    Returns
    -------
    IngestReport
        Print ``report.summary()``; ``report.ok`` is False when nothing was imported.

    Raises
    ------
    MixedDataError
        `store` was built by ``pitools demo-data`` and `force` is False; raised before any
        file is read: nothing is written, not even to the quarantine.
    StoreError
        The store could not be written (e.g. no space left on device): the store keeps
        what it held before the failed batch.
    QuarantineError
        A bad file's or rows' record could not be written to the quarantine; raised after
        the other files were imported; ``.report`` holds the outcomes.

    Example
    -------
    >>> import os, pandas as pd, pitools as pt
    >>> os.makedirs("downloads")
    >>> pd.DataFrame({"Date": ["2026-11-19", "2026-11-20"], "Open": [10, 10.5], "High": [11, 12], "Low": [9.5, 10],
    ...               "Close": [10.5, -1], "Volume": [1000, 1200]}).to_csv("downloads/ACME.csv", index=False)
    >>> report = ingest(["downloads/"], pt.Store.create("mine/store").root)
    >>> report.new_rows, report.files[0].status, report.files[0].rows_rejected   # the bad close is quarantined
    (1, 'partial', 1)
    """
    if fmt not in FORMATS:
        raise DataError(f"`format` = {fmt!r} is not supported.{did_you_mean(fmt, FORMATS)} "
                        f"Allowed: {', '.join(FORMATS)}")
    _check_dialect_args(sep, decimal, dayfirst)
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    store_root = Path(store)
    qdir = Path(quarantine) if quarantine is not None else default_quarantine(store_root)
    files, ignored = expand(sources, skip=qdir)
    if not files:
        raise IngestError(f"no bar files found in {', '.join(map(str, sources))} "
                          "(looked for .csv, .txt, .gz, .parquet)")
    existing = Store.open(store_root) if Store.exists(store_root) else None
    if existing is not None:
        check_import(existing, force)  # before anything is read, copied or written
    calendar = existing.calendar if existing is not None else "XNYS"
    outcomes: list[FileOutcome] = []
    pending: list[pd.DataFrame] = []
    pending_files: list[FileOutcome] = []
    totals = {"new": 0, "replaced": 0, "batches": 0, "source": None}
    used_quarantine = False

    def flush() -> None:
        nonlocal pending, pending_files
        if not pending:
            return
        batch = pd.concat(pending, ignore_index=True)
        try:
            with Store.create(store_root).writer() as w:
                if w.info.get("source") == DEMO and not force:  # a `demo-data --force` since the check
                    check_import(Store.open(store_root), force)
                counts = w.upsert(batch)
                w.info["source"] = totals["source"] = source_after_import(w.info.get("source"))
                w.commit()
        except StoreError as exc:  # the store's own message (a lock, a write it caught itself)
            if not any(o.quarantine_error for o in outcomes):
                raise
            raise type(exc)(f"{exc}{_unrecorded_note(outcomes)}") from exc
        except PitoolsError:
            raise
        except OSError as exc:
            raise StoreError(_store_failed(store_root, exc, pending_files, totals["batches"])
                             + _unrecorded_note(outcomes)) from exc
        totals["new"] += counts["new"]
        totals["replaced"] += counts["replaced"]
        totals["batches"] += 1
        pending, pending_files = [], []

    for k, path in enumerate(files):
        outcome = FileOutcome(str(path), "imported")
        try:
            raw, date_format, mark, notes = prepare(path, fmt, sep, decimal, dayfirst)
            outcome.rows_read = len(raw)
            result = check_bars(raw, calendar=calendar, date_format=date_format, adjust=adjust, decimal=mark)
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
                used_quarantine |= _record(outcome, qdir, lambda out: _quarantine_rows(qdir, path, result.rejected, out))
            pending.append(result.good)
            pending_files.append(outcome)
        except (_FileRejected, Exception) as exc:  # a file we could not foresee is quarantined too
            reason = str(exc) if isinstance(exc, _FileRejected) else f"unexpected {type(exc).__name__}: {exc}"
            outcome.status, outcome.reason = "quarantined", _cut_text(reason)
            outcome.rows_imported = 0
            used_quarantine |= _record(outcome, qdir, lambda out: _quarantine_file(qdir, path, outcome.reason, out))
        outcomes.append(outcome)
        log.debug("%s", outcome.line().strip())
        if sum(len(p) for p in pending) >= _BATCH_ROWS:
            flush()
        if progress is not None:
            progress(k + 1, len(files))
    flush()
    report = IngestReport(outcomes, totals["new"], totals["replaced"], qdir if used_quarantine else None, ignored,
                          totals["source"])
    if report.unrecorded:
        raise QuarantineError(_quarantine_failed(report), report)
    return report


# -- write failures ----------------------------------------------------------------------------
def _os_problem(exc: OSError, path: Path | None = None) -> str:
    """'PATH: no space left on device': what the system said, and where (`path`, else the
    file the error names, if any)."""
    text = str(exc)
    if exc.errno == errno.ENOSPC or "no space left on device" in text.lower():
        what = "no space left on device"
    elif exc.strerror:
        what = exc.strerror[:1].lower() + exc.strerror[1:]
    else:
        what = _cut_text(text, 160)
    where = path or exc.filename
    return f"{where}: {what}" if where else what


def _store_failed(root: Path, exc: OSError, batch: list[FileOutcome], committed: int) -> str:
    names = ", ".join(Path(o.path).name for o in batch[:3]) + ("…" if len(batch) > 3 else "")
    before = "before" if not committed else f"after the {committed} earlier batch(es) of this ingest"
    return (f"cannot write the store `{root}`: {_os_problem(exc)}; the rows of {len(batch)} file(s) ({names}) "
            f"were not stored and the store holds what it held {before}; the source files are untouched: "
            "free space (or fix the folder) and run the ingest again")


def _why(outcome: FileOutcome) -> str:
    if outcome.status == "quarantined":
        return outcome.reason
    return f"{outcome.rows_rejected} row(s) rejected: {outcome.why_rows()}"


def _unrecorded_note(outcomes: list[FileOutcome]) -> str:
    """A store failure's message also says which reasons the quarantine could not keep."""
    unrecorded = [o for o in outcomes if o.quarantine_error]
    if not unrecorded:
        return ""
    first = unrecorded[0]
    return (f"; the quarantine could not be written either for {len(unrecorded)} file(s) "
            f"({Path(first.path).name}: {_cut_text(_why(first), 120)})")


def _quarantine_failed(report: IngestReport) -> str:
    first, n = report.unrecorded[0], len(report.unrecorded)
    text = f"{Path(first.path).name} {first.quarantine_error} (its reason: {_cut_text(_why(first), 200)})"
    if n > 1:
        text += f"; {n - 1} more file(s) likewise"
    return (text + f"; {report.imported_rows} rows were imported, the source files are untouched: "
            "free space (or fix the folder) and run the ingest again")


def _record(outcome: FileOutcome, qdir: Path, write: Callable[[list[Path]], None]) -> bool:
    """Run one quarantine `write`; True when it wrote its record. A failed write removes
    what it had written (the quarantine holds no half records) and is kept in `outcome`."""
    written: list[Path] = []
    try:
        write(written)
        return True
    except OSError as exc:
        for p in reversed(written):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
        # The target, not the source that copy2's error may name: the source is fine.
        where = written[-1] if written else qdir
        outcome.quarantine_error = f"could not be recorded in the quarantine: {_os_problem(exc, where)}"
        log.debug("%s %s", outcome.path, outcome.quarantine_error)
        return False


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


def _quarantine_file(qdir: Path, path: Path, reason: str, written: list[Path]) -> None:
    target = _quarantine_name(qdir, path)
    written.append(target)  # listed before it exists: a half copy is removed too
    shutil.copy2(path, target)  # a copy: the source stays where the user put it
    written.append(target.with_name(target.name + ".reason.txt"))
    write_text_atomic(written[-1], f"source: {path.resolve()}\nreason: {reason}\n")


def _quarantine_rows(qdir: Path, path: Path, rejected: pd.DataFrame, written: list[Path]) -> None:
    target = _quarantine_name(qdir, path)
    rows = target.with_name(target.name + ".rejected.csv")
    written.append(rows)
    write_text_atomic(rows, rejected.to_csv(index=False))
    counts = rejected["reason"].value_counts()
    written.append(target.with_name(target.name + ".reason.txt"))
    write_text_atomic(written[-1], f"source: {path.resolve()}\nrejected rows: {len(rejected)} (in {rows.name})\n"
                      + "".join(f"  {n} × {r}\n" for r, n in counts.items()))

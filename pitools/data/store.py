"""The parquet bar store: daily OHLCV bars of many symbols, one file per year.

Layout::

    store/
      manifest.json              the commit point: lists every live file and its contents
      bars/2024/<sha256-16>.parquet
      bars/2025/<sha256-16>.parquet
      .lock                      held by the one process that writes

Each year file holds ``symbol, date, open, high, low, close, volume`` sorted by symbol
then date, in row groups of at most :data:`ROW_GROUP_ROWS` rows. The manifest records,
per year, the sessions present, the symbol range of every row group (so a subset of
symbols reads only the row groups that hold it) and per-symbol row counts (so the size of
a panel is known before anything is read).

Why it cannot be corrupted by a crash: data files are written under a temporary name,
fsynced and renamed to a name derived from their content; nothing reads a file that the
manifest does not list; the manifest is replaced atomically as the last step; files that
the new manifest no longer lists are removed only after that. A crash at any point leaves
the previous manifest and every file it lists intact.

Why nothing is ever deleted by mistake: a commit deletes only the files its *base*
manifest recorded as ``retired`` (listed by the generation before and dropped since), never
a file merely because the manifest does not name it. A folder with data files but no
readable manifest is a damaged store (:class:`~pitools.errors.DamagedStoreError`): nothing
writes into it until :func:`repair` rebuilds the manifest from the files whose content
still matches their name (the name is the first 16 hex digits of the file's sha256);
see :mod:`pitools.data.repair`.

Why damage is noticed: every read checks the file's size and sha256 against the manifest
(hashed once per process and file) and its row groups against the manifest's row counts.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pitools.errors import DamagedStoreError, DataError, NoStoreError, StoreError
from pitools.locks import exclusive_lock
from pitools.data.atomic import TMP_PREFIX, fsync_dir, write_text_atomic

__all__ = ["Store", "StoreWriter", "FIELDS", "PRICE_FIELDS", "ROW_GROUP_ROWS", "bars_schema"]

FORMAT = "pitools-store"
VERSION = 1
MANIFEST = "manifest.json"
PRICE_FIELDS = ("open", "high", "low", "close")
FIELDS = PRICE_FIELDS + ("volume",)
ROW_GROUP_ROWS = 65_536
_EPOCH = np.datetime64("1970-01-01", "D")


def bars_schema() -> pa.Schema:
    """The on-disk schema of a year file."""
    return pa.schema(
        [("symbol", pa.dictionary(pa.int32(), pa.string())), ("date", pa.date32())]
        + [(f, pa.float64()) for f in FIELDS]
    )


def _days(values) -> np.ndarray:
    """Dates (anything numpy/pandas understands) → int64 days since 1970-01-01."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return (np.asarray(pd.to_datetime(arr)).astype("datetime64[D]") - _EPOCH).astype(np.int64)


def _iso(day: int) -> str:
    return str(_EPOCH + np.timedelta64(int(day), "D"))


def _from_iso(text: str) -> int:
    return int((np.datetime64(text, "D") - _EPOCH).astype(np.int64))


@dataclass
class _Partition:
    """What the manifest knows about one year file."""

    year: int
    file: str
    bytes: int
    sha256: str
    dates: np.ndarray  # int64 days, sorted, unique
    row_groups: list[tuple[str, str, int]]  # (first symbol, last symbol, rows)
    symbols: list[str]  # symbols present, sorted
    sym_rows: np.ndarray  # rows per symbol
    sym_first: np.ndarray  # first day per symbol
    sym_last: np.ndarray  # last day per symbol

    @property
    def rows(self) -> int:
        return int(self.sym_rows.sum())

    def to_json(self) -> dict:
        return {
            "file": self.file, "bytes": self.bytes, "sha256": self.sha256, "rows": self.rows,
            "dates": [_iso(d) for d in self.dates],
            "row_groups": [list(rg) for rg in self.row_groups],
            "symbols": self.symbols,
            "sym_rows": self.sym_rows.tolist(),
            "sym_first": self.sym_first.tolist(),
            "sym_last": self.sym_last.tolist(),
        }

    @classmethod
    def from_json(cls, year: int, d: dict) -> "_Partition":
        return cls(
            year=year, file=d["file"], bytes=int(d["bytes"]), sha256=d["sha256"],
            dates=np.array([_from_iso(x) for x in d["dates"]], dtype=np.int64),
            row_groups=[(a, b, int(n)) for a, b, n in d["row_groups"]],
            symbols=list(d["symbols"]),
            sym_rows=np.asarray(d["sym_rows"], dtype=np.int64),
            sym_first=np.asarray(d["sym_first"], dtype=np.int64),
            sym_last=np.asarray(d["sym_last"], dtype=np.int64),
        )


@dataclass
class SymbolInfo:
    """Per-symbol summary over the whole store."""

    symbol: str
    kind: str  # "equity" or "index"
    rows: int
    first_day: int  # days since 1970-01-01, as the manifest keeps them
    last_day: int
    meta: dict = field(default_factory=dict)

    @property
    def first(self) -> pd.Timestamp:
        return pd.Timestamp(_iso(self.first_day))

    @property
    def last(self) -> pd.Timestamp:
        return pd.Timestamp(_iso(self.last_day))


def _kind_of(symbol: str) -> str:
    # Yahoo's convention: index tickers start with '^' (^GSPC, ^VIX). They are kept out
    # of the default trading universe but load like any other series.
    return "index" if symbol.startswith("^") else "equity"


class Store:
    """A bar store on disk. Open with :meth:`open` (must exist) or :meth:`create`.

    Example
    -------
    >>> store = Store.open("data/store")          # doctest: +SKIP
    >>> store.symbols()[:3], store.first_date, store.last_date   # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike, manifest: dict):
        self.root = Path(root)
        self._manifest = manifest
        self.calendar: str = manifest.get("calendar", "XNYS")
        self.partitions: dict[int, _Partition] = {
            int(y): _Partition.from_json(int(y), d) for y, d in manifest.get("partitions", {}).items()
        }
        self.meta: dict[str, dict] = dict(manifest.get("symbol_meta", {}))
        self.info: dict = dict(manifest.get("info", {}))  # store-level facts (source, demo settings)
        self.retired: list[str] = list(manifest.get("retired", []))  # dropped last commit, deleted next
        self._infos: dict[str, SymbolInfo] | None = None

    # -- opening -------------------------------------------------------------------------
    @staticmethod
    def exists(root: str | os.PathLike) -> bool:
        """True when `root` holds a store: a manifest, or data files (then :meth:`open` says
        whether it is damaged)."""
        root = Path(root)
        return os.path.lexists(root / MANIFEST) or bool(_data_files(root))

    @classmethod
    def open(cls, root: str | os.PathLike) -> "Store":
        """Open the committed store at `root`; :class:`NoStoreError` when there is none,
        :class:`DamagedStoreError` when its manifest is missing, unreadable or malformed."""
        path = Path(root) / MANIFEST
        repair_hint = f"Run `pitools store repair --store {root}` to rebuild it from the data files."
        if not os.path.lexists(path):
            files = _data_files(Path(root))
            if files:
                raise DamagedStoreError(
                    f"the store at {str(root)!r} has {len(files)} data file(s) but no {MANIFEST}: it is "
                    f"damaged and nothing will write into it. {repair_hint}")
            raise NoStoreError(
                f"no bar store at {str(root)!r} (no {MANIFEST}). Build the demo universe with "
                "`pitools demo-data` or import bars with `pitools ingest FILES --store DIR`."
            )
        if not path.is_file():
            raise DamagedStoreError(f"{str(path)!r} is not a file: the store is damaged. "
                                    f"Move it aside, then: {repair_hint}")
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DamagedStoreError(f"{str(path)!r} cannot be read ({exc}); the store is damaged. "
                                    f"{repair_hint}") from None
        problem = _manifest_problem(manifest)
        if problem:
            raise DamagedStoreError(f"{str(path)!r} is not a {FORMAT} v{VERSION} manifest ({problem}): the store is damaged. "
                                    f"{repair_hint}")
        return cls(root, manifest)

    @classmethod
    def create(cls, root: str | os.PathLike, calendar: str = "XNYS") -> "Store":
        """An empty store object at `root` (nothing is written until a writer commits)."""
        if cls.exists(root):
            return cls.open(root)
        return cls(root, {"format": FORMAT, "version": VERSION, "calendar": calendar, "partitions": {}})

    # -- what is in it -------------------------------------------------------------------
    def _symbol_infos(self) -> dict[str, SymbolInfo]:
        if self._infos is None:
            rows: dict[str, int] = {}
            first: dict[str, int] = {}
            last: dict[str, int] = {}
            for part in self.partitions.values():
                for i, s in enumerate(part.symbols):
                    rows[s] = rows.get(s, 0) + int(part.sym_rows[i])
                    first[s] = min(first.get(s, 1 << 40), int(part.sym_first[i]))
                    last[s] = max(last.get(s, -(1 << 40)), int(part.sym_last[i]))
            self._infos = {
                s: SymbolInfo(s, _kind_of(s), rows[s], first[s], last[s], dict(self.meta.get(s, {})))
                for s in sorted(rows)
            }
        return self._infos

    def symbols(self, kind: str | None = "equity") -> list[str]:
        """Sorted symbols of `kind` (``"equity"``, ``"index"``, or ``None`` for all)."""
        if kind not in (None, "equity", "index"):
            raise DataError(f"`kind` = {kind!r} must be 'equity', 'index' or None")
        infos = self._symbol_infos()
        return list(infos) if kind is None else [s for s, i in infos.items() if i.kind == kind]

    def symbol_info(self, symbol: str) -> SymbolInfo:
        """Rows, first and last date of `symbol`."""
        infos = self._symbol_infos()
        if symbol not in infos:
            from pitools.errors import did_you_mean

            raise DataError(f"symbol {symbol!r} is not in the store at {str(self.root)!r}."
                            f"{did_you_mean(symbol, infos)}")
        return infos[symbol]

    def summary(self) -> pd.DataFrame:
        """One row per symbol: kind, rows, first, last (and any metadata such as sector)."""
        infos = self._symbol_infos().values()
        df = pd.DataFrame([{"symbol": i.symbol, "kind": i.kind, "rows": i.rows, "first": i.first,
                            "last": i.last, **i.meta} for i in infos])
        return df.set_index("symbol") if len(df) else df

    @property
    def n_rows(self) -> int:
        return sum(p.rows for p in self.partitions.values())

    def dates(self) -> pd.DatetimeIndex:
        """Every session that has at least one bar, sorted."""
        days = self.session_days()
        return pd.DatetimeIndex((_EPOCH + days.astype("timedelta64[D]")).astype("datetime64[ns]"), name="date")

    def session_days(self) -> np.ndarray:
        if not self.partitions:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([p.dates for p in self.partitions.values()]))

    @property
    def first_date(self) -> pd.Timestamp | None:
        days = self.session_days()
        return pd.Timestamp(_iso(days[0])) if len(days) else None

    @property
    def last_date(self) -> pd.Timestamp | None:
        days = self.session_days()
        return pd.Timestamp(_iso(days[-1])) if len(days) else None

    # -- reading -------------------------------------------------------------------------
    def _path(self, part: _Partition) -> Path:
        path = self.root / part.file
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise StoreError(f"{str(path)!r} is listed in the manifest but missing: the store changed while "
                             "it was read (open it again) or is damaged (restore it from a backup or "
                             "rebuild it).") from None
        if size != part.bytes:
            raise StoreError(f"{str(path)!r} has {size} bytes but the manifest says {part.bytes}: "
                             "the store is damaged. Restore it from a backup or rebuild it.")
        return path

    def row_groups_for(self, year: int, symbols: set[str] | None) -> list[int]:
        """Indices of the row groups of `year` that may hold any of `symbols`."""
        part = self.partitions[year]
        if symbols is None:
            return list(range(len(part.row_groups)))
        ordered = sorted(symbols)
        out = []
        for i, (lo, hi, _n) in enumerate(part.row_groups):
            k = bisect.bisect_left(ordered, lo)
            if k < len(ordered) and ordered[k] <= hi:
                out.append(i)
        return out

    def iter_row_groups(self, year: int, symbols: set[str] | None = None,
                        columns: Iterable[str] = FIELDS) -> Iterator[pa.Table]:
        """Yield the row groups of `year` that may hold `symbols`, one table each.

        The file is checked against the manifest first (size, sha256, row groups):
        :class:`StoreError` names the file when it does not match.
        """
        part = self.partitions[year]
        groups = self.row_groups_for(year, symbols)
        if not groups:
            return
        path = self._checked_path(part)
        cols = ["symbol", "date", *columns]
        try:
            with pq.ParquetFile(path, read_dictionary=["symbol"], memory_map=False,
                                page_checksum_verification=True) as pf:
                _check_row_groups(path, part, pf.metadata)
                for i in groups:
                    yield pf.read_row_group(i, columns=cols, use_threads=False)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{str(path)!r} cannot be read ({type(exc).__name__}: {str(exc)[:160]}): the store "
                             f"is damaged. Run `pitools store repair --store {self.root}`.") from None

    def _checked_path(self, part: _Partition) -> Path:
        """The file of `part`, after its size and (once per process) its sha256 matched."""
        path = self._path(part)
        st = path.stat()
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if _VERIFIED.get(key) != part.sha256:
            if _sha256(path) != part.sha256:
                raise StoreError(f"{str(path)!r} does not match the sha256 the manifest recorded: the file is "
                                 f"damaged. Run `pitools store repair --store {self.root}` and re-import "
                                 f"year {part.year}.")
            _VERIFIED[key] = part.sha256
        return path

    def read_year(self, year: int, symbols: set[str] | None = None,
                  columns: Iterable[str] = FIELDS) -> pa.Table:
        """All bars of `year` (optionally only `symbols`) as one table."""
        tables = list(self.iter_row_groups(year, symbols, columns))
        if not tables:
            return bars_schema().empty_table().select(["symbol", "date", *columns])
        table = pa.concat_tables(tables).unify_dictionaries() if len(tables) > 1 else tables[0]
        if symbols is not None:
            import pyarrow.compute as pc

            table = table.filter(pc.is_in(table["symbol"].cast(pa.string()), pa.array(sorted(symbols))))
        return table

    def read_frame(self, symbols: Iterable[str] | None = None, columns: Iterable[str] = FIELDS) -> pd.DataFrame:
        """Bars as a long DataFrame (symbol, date, fields) — for small reads and tests."""
        wanted = set(symbols) if symbols is not None else None
        frames = [self.read_year(y, wanted, columns).to_pandas() for y in sorted(self.partitions)]
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame(columns=["symbol", "date", *columns])
        df = pd.concat(frames, ignore_index=True)
        df["symbol"] = df["symbol"].astype(str)
        df["date"] = pd.to_datetime(df["date"])
        return df.sort_values(["symbol", "date"], ignore_index=True)

    def verify(self) -> list[str]:
        """Check every listed file against its size, sha256 and row groups; return the problems."""
        problems = []
        for year, part in sorted(self.partitions.items()):
            try:
                path = self._path(part)
                if _sha256(path) != part.sha256:
                    problems.append(f"{str(path)!r}: content does not match the manifest's sha256")
                    continue
                _check_row_groups(path, part, pq.ParquetFile(path).metadata)
            except StoreError as exc:
                problems.append(str(exc))
            except (OSError, pa.ArrowException) as exc:
                problems.append(f"{str(path)!r} cannot be read ({type(exc).__name__}: {str(exc)[:160]})")
        return problems

    # -- writing -------------------------------------------------------------------------
    def writer(self) -> "StoreWriter":
        """A writer that holds the store's lock; use as a context manager."""
        return StoreWriter(self)


_VERIFIED: dict[tuple, str] = {}  # (path, inode, size, mtime) -> sha256 already checked here


def _data_files(root: Path) -> list[Path]:
    """The year files under `root` (listed or not)."""
    bars = root / "bars"
    return sorted(p for p in bars.glob("*/*.parquet") if not p.name.startswith(TMP_PREFIX)) if bars.is_dir() else []


def _manifest_problem(manifest) -> str | None:
    """What is wrong with the shape of a parsed manifest, or None."""
    if not isinstance(manifest, dict):
        return f"it holds a {type(manifest).__name__}, not an object"
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        return f"format={manifest.get('format')!r}, version={manifest.get('version')!r}"
    parts = manifest.get("partitions", {})
    if not isinstance(parts, dict):
        return f"`partitions` is a {type(parts).__name__}, not an object"
    for year, d in parts.items():
        try:
            part = _Partition.from_json(int(year), d)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return f"partition {year!r} is malformed ({type(exc).__name__}: {str(exc)[:80]})"
        n = len(part.symbols)
        if not (len(part.sym_rows) == len(part.sym_first) == len(part.sym_last) == n) or \
                sum(rg[2] for rg in part.row_groups) != part.rows or Path(part.file).is_absolute() or \
                ".." in Path(part.file).parts:
            return f"partition {year!r} is inconsistent (symbols, row counts or file name)"
    for key in ("symbol_meta", "info", "retired"):
        if not isinstance(manifest.get(key, {} if key != "retired" else []), dict if key != "retired" else list):
            return f"`{key}` has the wrong type"
    return None


def _check_row_groups(path: Path, part: _Partition, metadata) -> None:
    rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    if rows != [rg[2] for rg in part.row_groups]:
        raise StoreError(f"{str(path)!r} has row groups of {rows[:5]} rows but the manifest says "
                         f"{[rg[2] for rg in part.row_groups][:5]}: the store is damaged.")


def lock_store(root: Path) -> contextlib.ExitStack:
    """Create `root` if needed and take its writer lock; ``close()`` the result to release it."""
    held = contextlib.ExitStack()
    try:
        held.enter_context(exclusive_lock(root / ".lock", {}, f"another process is writing the store at "
                                          f"{str(root)!r}: it", error=StoreError))
    except OSError as exc:
        raise StoreError(f"the store folder {str(root)!r} is not writable ({exc.strerror}); "
                         "check its permissions and free space, or choose another with --store") from None
    return held


def write_manifest(root: Path, calendar: str, partitions: dict, meta: dict, info: dict, retired) -> None:
    """Replace the manifest atomically: the commit point of every change to the store."""
    manifest = {
        "format": FORMAT, "version": VERSION, "calendar": calendar,
        "partitions": {str(y): p.to_json() for y, p in sorted(partitions.items())},
        "symbol_meta": {s: meta[s] for s in sorted(meta)},
        "info": info,
        "retired": sorted(retired),
    }
    write_text_atomic(root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _PartitionBuilder:
    """Streams symbol-sorted row groups of one year into a temp parquet file."""

    def __init__(self, tmp_path: Path, year: int):
        self.tmp_path = tmp_path
        self.year = year
        self._writer = pq.ParquetWriter(
            tmp_path, bars_schema(), compression="zstd", compression_level=1,
            use_dictionary=["symbol"], write_statistics=["symbol", "date"], store_schema=False,
            write_page_checksum=True,
        )
        self.row_groups: list[tuple[str, str, int]] = []
        self.dates: list[np.ndarray] = []
        self.symbols: list[str] = []
        self.sym_rows: list[int] = []
        self.sym_first: list[int] = []
        self.sym_last: list[int] = []

    def add(self, symbols: np.ndarray, days: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Append bars already sorted by (symbol, date); symbols must follow earlier ones."""
        n = len(symbols)
        if n == 0:
            return
        if self.symbols and symbols[0] <= self.symbols[-1]:
            raise StoreError(f"row groups of {self.year} must arrive in symbol order "
                             f"({symbols[0]!r} after {self.symbols[-1]!r})")
        # Per-symbol stats from the boundaries of the sorted symbol column.
        change = np.flatnonzero(symbols[1:] != symbols[:-1]) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [n]])
        self.symbols.extend(str(s) for s in symbols[starts])
        self.sym_rows.extend((ends - starts).tolist())
        self.sym_first.extend(days[starts].tolist())
        self.sym_last.extend(days[ends - 1].tolist())
        self.dates.append(np.unique(days))
        for lo in range(0, n, ROW_GROUP_ROWS):
            hi = min(n, lo + ROW_GROUP_ROWS)
            sym = pa.array(symbols[lo:hi], type=pa.string()).dictionary_encode()
            arrays = [sym, pa.array(days[lo:hi].astype(np.int32), type=pa.int32()).cast(pa.date32())]
            arrays += [pa.array(np.asarray(values[f][lo:hi], dtype=np.float64)) for f in FIELDS]
            self._writer.write_table(pa.Table.from_arrays(arrays, schema=bars_schema()), row_group_size=hi - lo)
            self.row_groups.append((str(symbols[lo]), str(symbols[hi - 1]), hi - lo))

    def finish(self, root: Path) -> _Partition:
        self._writer.close()
        digest = _sha256(self.tmp_path)
        with open(self.tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        rel = Path("bars") / str(self.year) / f"{digest[:16]}.parquet"
        final = root / rel
        if not final.parent.exists():
            final.parent.mkdir(parents=True)
            fsync_dir(final.parent.parent)  # the new year folder itself must survive a power cut
        os.replace(self.tmp_path, final)
        fsync_dir(final.parent)
        return _Partition(
            year=self.year, file=str(rel), bytes=final.stat().st_size, sha256=digest,
            dates=np.unique(np.concatenate(self.dates)) if self.dates else np.zeros(0, np.int64),
            row_groups=self.row_groups, symbols=self.symbols,
            sym_rows=np.asarray(self.sym_rows, dtype=np.int64),
            sym_first=np.asarray(self.sym_first, dtype=np.int64),
            sym_last=np.asarray(self.sym_last, dtype=np.int64),
        )

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()


class StoreWriter:
    """Changes a store as one transaction: nothing is visible until :meth:`commit`.

    Holds an exclusive lock on ``store/.lock`` so two writers never interleave.

    Example
    -------
    >>> with Store.create("data/store").writer() as w:     # doctest: +SKIP
    ...     w.upsert(frame)          # long frame: symbol, date, open, high, low, close, volume
    ...     w.commit()
    """

    def __init__(self, store: Store):
        self.store = store
        self.root = store.root
        self._lock = lock_store(self.root)
        # Re-read under the lock: another writer may have committed since `store` was opened.
        try:
            base = Store.open(self.root) if Store.exists(self.root) else store
        except BaseException:
            self._release_lock()
            raise
        self.calendar = base.calendar
        self.partitions: dict[int, _Partition] = dict(base.partitions)
        self.meta: dict[str, dict] = dict(base.meta)
        self.info: dict = dict(base.info)
        self._base = base
        self._previous = dict(base.partitions)
        self._builders: dict[int, _PartitionBuilder] = {}
        self._closed = False
        try:
            (self.root / "bars").mkdir(exist_ok=True)
        except OSError as exc:
            self._release_lock()
            raise StoreError(f"the store folder {str(self.root)!r} is not writable ({exc.strerror})") from None
        self._clean_temp_files()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _clean_temp_files(self) -> None:
        # Leftovers of a writer that crashed: never listed, never read, safe to delete.
        # Only where a writer puts them, so a store folder nested in other data is harmless.
        for pattern in (TMP_PREFIX + "*", f"bars/{TMP_PREFIX}*", f"bars/*/{TMP_PREFIX}*"):
            for path in self.root.glob(pattern):
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- building ------------------------------------------------------------------------
    def clear(self) -> None:
        """Drop every partition and symbol (for a full rebuild in this transaction)."""
        self.partitions.clear()
        self.meta.clear()
        self.info.clear()

    def begin_year(self, year: int) -> _PartitionBuilder:
        """Start a fresh file for `year` that replaces the current one at commit."""
        if year in self._builders:
            raise StoreError(f"year {year} is already being written in this transaction")
        tmp = self.root / "bars" / f"{TMP_PREFIX}{year}-{os.getpid()}.parquet"
        builder = _PartitionBuilder(tmp, year)
        self._builders[year] = builder
        return builder

    def add_sorted(self, year: int, symbols: np.ndarray, days: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Append symbol/date-sorted bars of `year` to the file begun with :meth:`begin_year`."""
        builder = self._builders.get(year) or self.begin_year(year)
        builder.add(symbols, days, values)

    def upsert(self, frame: pd.DataFrame) -> dict[str, int]:
        """Merge a long frame of bars into the store; incoming bars replace same (symbol, date).

        Returns the number of new and replaced rows. Values must already be validated.
        """
        missing = [c for c in ("symbol", "date", *FIELDS) if c not in frame.columns]
        if missing:
            raise DataError(f"`frame` lacks the column(s) {missing}; expected symbol, date, {', '.join(FIELDS)}")
        incoming = frame[["symbol", "date", *FIELDS]].copy()
        incoming["symbol"] = incoming["symbol"].astype(str)
        dates = pd.to_datetime(incoming["date"])
        if isinstance(dates.dtype, pd.DatetimeTZDtype):  # a zoned stamp is its New York trading day
            dates = dates.dt.tz_convert("America/New_York").dt.tz_localize(None)
        dates = dates.dt.normalize()
        incoming["_day"] = _days(dates.to_numpy())
        incoming["_year"] = dates.dt.year.to_numpy()
        counts = {"new": 0, "replaced": 0}
        # Within the frame too, a later row for the same (symbol, date) replaces an earlier one.
        dup = incoming.duplicated(["symbol", "_day"], keep="last")
        if dup.any():
            counts["replaced"] += int(dup.sum())
            incoming = incoming[~dup]
        for year, chunk in incoming.groupby("_year", sort=True):
            year = int(year)
            if year in self._builders:
                raise StoreError(f"year {year} is already being written in this transaction")
            new = pd.DataFrame({"symbol": chunk["symbol"].to_numpy(), "_day": chunk["_day"].to_numpy(),
                                **{f: chunk[f].to_numpy(np.float64) for f in FIELDS}, "_new": True})
            if year in self.partitions:
                old = self._base.read_year(year) if year in self._base.partitions else None
                if old is not None and old.num_rows:
                    oldf = pd.DataFrame({
                        "symbol": old["symbol"].cast(pa.string()).to_numpy(zero_copy_only=False),
                        "_day": old["date"].cast(pa.int32()).to_numpy().astype(np.int64),
                        **{f: old[f].to_numpy() for f in FIELDS}, "_new": False})
                    both = pd.concat([oldf, new], ignore_index=True)
                    both = both.sort_values(["symbol", "_day", "_new"], kind="mergesort")
                    dup = both.duplicated(["symbol", "_day"], keep="last")
                    counts["replaced"] += int(dup.sum())
                    counts["new"] += int(len(new) - dup.sum())
                    new = both[~dup]
                else:
                    counts["new"] += len(new)
            else:
                counts["new"] += len(new)
            new = new.sort_values(["symbol", "_day"], kind="mergesort")
            self.add_sorted(year, new["symbol"].to_numpy(dtype=object), new["_day"].to_numpy(np.int64),
                            {f: new[f].to_numpy(np.float64) for f in FIELDS})
        return counts

    def set_meta(self, symbol: str, **meta) -> None:
        """Attach metadata (sector, name, source, …) to `symbol`."""
        self.meta.setdefault(symbol, {}).update(meta)

    # -- finishing -----------------------------------------------------------------------
    def commit(self) -> Store:
        """Make every change visible at once; remove the files the base manifest had retired.

        A failure to write (disk full, read-only folder) raises :class:`StoreError` naming the
        file and leaves the store exactly as it was: the files this commit made are removed.
        """
        if self._closed:
            raise StoreError("this writer is closed; open a new one with `store.writer()`")
        before = {p.file for p in self._previous.values()}
        try:
            for year, builder in sorted(self._builders.items()):
                self.partitions[year] = builder.finish(self.root)
            self._builders.clear()
            live = {p.file for p in self.partitions.values()}
            write_manifest(self.root, self.calendar, self.partitions, self.meta, self.info, before - live)
        except OSError as exc:
            self._undo(before)
            where = exc.filename or self.root
            raise StoreError(f"could not write the store at {str(self.root)!r}: {exc.strerror or exc} "
                             f"({where}); nothing was changed. Free some space or fix the folder's "
                             "permissions and run the command again.") from None
        self._collect_garbage(set(self._base.retired) - live - before)
        self._base = Store.open(self.root)
        return self._base

    def _undo(self, before: set[str]) -> None:
        """Remove what a failed commit wrote: its temp files and the year files no manifest lists."""
        for builder in self._builders.values():
            builder.abort()
        self._builders.clear()
        for part in self.partitions.values():
            if part.file not in before:
                with contextlib.suppress(OSError):
                    (self.root / part.file).unlink()
        self.partitions = dict(self._previous)

    def _collect_garbage(self, retired: set[str]) -> None:
        # Only files the base manifest retired: the previous generation stays one more commit
        # (a reader that opened it just before this commit can still read it), and a file no
        # manifest ever named (a user's, or one a crash left) is never deleted.
        bars = self.root / "bars"
        for rel in sorted(retired):
            path = self.root / rel
            if path.parent.parent == bars and path.suffix == ".parquet":
                with contextlib.suppress(OSError):
                    path.unlink()
        for folder in sorted(bars.iterdir()) if bars.exists() else []:
            if folder.is_dir() and not any(folder.iterdir()):
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def close(self) -> None:
        """Release the lock; uncommitted work is thrown away."""
        if self._closed:
            return
        for builder in self._builders.values():
            builder.abort()
        self._builders.clear()
        self._closed = True
        self._release_lock()

    def _release_lock(self) -> None:
        self._lock.close()


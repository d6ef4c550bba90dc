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
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pitools.data.store_format import (_EPOCH, FIELDS, FORMAT, MANIFEST, PRICE_FIELDS, ROW_GROUP_ROWS, VERSION,
                                       _data_files, _iso, _manifest_problem, _Partition, _sha256, bars_schema)
from pitools.data.store_writer import StoreWriter
from pitools.errors import DamagedStoreError, DataError, NoStoreError, StoreError, did_you_mean

__all__ = ["Store", "StoreWriter", "SymbolInfo", "FIELDS", "PRICE_FIELDS", "ROW_GROUP_ROWS", "bars_schema"]

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
    >>> store = Store.open("data/store")
    >>> len(store.symbols()), str(store.first_date.date()), str(store.last_date.date())
    (8, '2023-11-21', '2026-11-20')
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
            raise DamagedStoreError(f"{str(path)!r} is not a {FORMAT} v{VERSION} manifest ({problem}): the store is "
                                    f"damaged. {repair_hint}")
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
    def writer(self) -> StoreWriter:
        """A :class:`~pitools.data.store_writer.StoreWriter` that holds the store's lock; use
        as a context manager."""

        return StoreWriter(self)


_VERIFIED: dict[tuple, str] = {}  # (path, inode, size, mtime) -> sha256 already checked here


def _check_row_groups(path: Path, part: _Partition, metadata) -> None:
    rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    if rows != [rg[2] for rg in part.row_groups]:
        raise StoreError(f"{str(path)!r} has row groups of {rows[:5]} rows but the manifest says "
                         f"{[rg[2] for rg in part.row_groups][:5]}: the store is damaged.")

"""Writing the parquet bar store: the writer lock, year files built under temporary names, and
the manifest replaced atomically as the commit point (the layout and why a crash cannot
corrupt it are in :mod:`pitools.data.store`).

A :class:`StoreWriter` comes from :meth:`Store.writer() <pitools.data.store.Store.writer>`;
:func:`lock_store` and :func:`write_manifest` are also what :mod:`pitools.data.repair` uses.

>>> import tempfile, pandas as pd, pitools as pt
>>> root = tempfile.mkdtemp()
>>> with pt.Store.create(root).writer() as w:
...     added = w.upsert(pd.DataFrame({"symbol": ["ACME"] * 2, "date": ["2026-11-19", "2026-11-20"],
...                                    "open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5, "volume": 1e6}))
...     store = w.commit()
>>> added, store.symbols(), store.n_rows
({'new': 2, 'replaced': 0}, ['ACME'], 2)
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pitools.data.atomic import TMP_PREFIX, fsync_dir, write_text_atomic
from pitools.data.store_format import (FIELDS, FORMAT, MANIFEST, ROW_GROUP_ROWS, VERSION, _days, _Partition, _sha256,
                                       bars_schema)
from pitools.errors import DataError, StoreError
from pitools.locks import exclusive_lock

__all__ = ["StoreWriter", "lock_store", "write_manifest"]


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
    >>> import pandas as pd, pitools as pt
    >>> frame = pd.DataFrame({"symbol": "ACME", "date": ["2026-11-19", "2026-11-20"],  # long bars
    ...                       "open": 10.0, "high": 11.0, "low": 9.5, "close": 10.5, "volume": 1e6})
    >>> with pt.Store.create("new/store").writer() as w:
    ...     w.upsert(frame)
    ...     store = w.commit()
    {'new': 2, 'replaced': 0}
    >>> store.n_rows
    2
    """

    def __init__(self, store):
        self.store = store
        self.root = store.root
        self._lock = lock_store(self.root)
        # Re-read under the lock: another writer may have committed since `store` was opened.
        try:
            # the store's own class reopens it: this module is below pitools.data.store (whose
            # Store.writer() builds a StoreWriter) and does not import it
            base = type(store).open(self.root) if type(store).exists(self.root) else store
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
    def commit(self):
        """Make every change visible at once; remove the files the base manifest had retired;
        returns the store as committed (a :class:`~pitools.data.store.Store`).

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
        self._base = type(self._base).open(self.root)
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


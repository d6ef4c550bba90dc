"""``pitools store repair``: rebuild a damaged store's manifest from the files it can read.

A year file's name is the first 16 hex digits of its sha256, so a file proves its own
integrity without a manifest: one whose content no longer matches its name is damaged
(bit flips, truncation) and is not used. Of the sound files of a year the one the old
manifest listed wins, else the newest. Repair deletes nothing: the old manifest is kept
beside the new one as ``manifest.json.damaged-<time>``, and every file it does not use is
named in the report (with the reason) and left where it is.

>>> report = repair("data/store")     # doctest: +SKIP
>>> print(report.text())              # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pitools.errors import DamagedStoreError, NoStoreError
from pitools.data.store import Store
from pitools.data.store_format import FIELDS, MANIFEST, _data_files, _Partition, _sha256
from pitools.data.store_writer import lock_store, write_manifest

__all__ = ["repair", "RepairReport"]


@dataclass
class RepairReport:
    """What :func:`repair` did: the files it used, the ones it could not, the old manifest."""

    root: Path
    healthy: bool = False
    used: list[str] = field(default_factory=list)
    unusable: dict[str, str] = field(default_factory=dict)  # file -> why
    unused: dict[str, str] = field(default_factory=dict)    # sound file not listed -> why
    backup: Path | None = None
    rows: int = 0
    symbols: int = 0

    @property
    def complete(self) -> bool:
        """True when every data file could be read (nothing is missing from the store)."""
        return not self.unusable

    def text(self) -> str:
        if self.healthy:
            return f"store {self.root}: healthy (manifest and every file it lists check out); nothing to do"
        lines = [f"store {self.root}: manifest rebuilt from {len(self.used)} file(s): "
                 f"{self.symbols} symbols, {self.rows:,} rows"]
        lines += [f"  used        {f}" for f in self.used]
        lines += [f"  CANNOT READ {f}: {why}" for f, why in self.unusable.items()]
        lines += [f"  not listed  {f}: {why}" for f, why in self.unused.items()]
        if self.backup is not None:
            lines.append(f"the old manifest is kept as {self.backup}")
        if self.unusable:
            lines.append("the years of the files it cannot read are missing now: import them again "
                         "(`pitools ingest …`); those files were left where they are")
        return "\n".join(lines)


def repair(root: str | os.PathLike) -> RepairReport:
    """Rebuild the manifest of the store at `root` from its readable year files."""
    root = Path(root)
    report = RepairReport(root)
    files = _data_files(root)
    if not files and not os.path.lexists(root / MANIFEST):
        raise NoStoreError(f"no bar store at {str(root)!r}: nothing to repair (no {MANIFEST}, no data files)")
    lock = lock_store(root)
    try:
        old = _old_manifest(root)
        try:
            if not Store.open(root).verify():
                report.healthy = True
                return report
        except DamagedStoreError:
            pass
        listed = {d.get("file") for d in (old.get("partitions") or {}).values() if isinstance(d, dict)}
        by_year: dict[int, list[tuple[Path, _Partition]]] = {}
        for path in files:
            rel = str(path.relative_to(root))
            try:
                part = _read_partition(root, path)
            except (ValueError, OSError, pa.ArrowException) as exc:
                report.unusable[rel] = str(exc)[:200]
                continue
            by_year.setdefault(part.year, []).append((path, part))
        for rel in sorted(f for f in listed if isinstance(f, str)):
            if not (root / rel).exists():
                report.unusable[rel] = "listed in the old manifest but missing"
        partitions = {}
        for year, found in sorted(by_year.items()):
            found.sort(key=lambda fp: (fp[1].file in listed, fp[0].stat().st_mtime_ns), reverse=True)
            partitions[year] = found[0][1]
            report.used.append(found[0][1].file)
            for _path, part in found[1:]:
                report.unused[part.file] = f"an older file of {year}"
        report.backup = _keep_old_manifest(root)
        meta = old.get("symbol_meta") if isinstance(old.get("symbol_meta"), dict) else {}
        info = old.get("info") if isinstance(old.get("info"), dict) else {}
        calendar = old.get("calendar") if isinstance(old.get("calendar"), str) else "XNYS"
        write_manifest(root, calendar, partitions, meta, {**info, "repaired": time.strftime("%Y-%m-%dT%H:%M:%S")}, [])
        store = Store.open(root)
        report.rows, report.symbols = store.n_rows, len(store.symbols(kind=None))
        return report
    finally:
        lock.close()


def _old_manifest(root: Path) -> dict:
    """What can be salvaged of the old manifest (symbol metadata, calendar), or {}."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((root / MANIFEST).read_text())
        if isinstance(data, dict):
            return data
    return {}


def _keep_old_manifest(root: Path) -> Path | None:
    path = root / MANIFEST
    if not os.path.lexists(path):
        return None
    backup = path.with_name(f"{MANIFEST}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    n = 0
    while os.path.lexists(backup):
        n += 1
        backup = path.with_name(f"{MANIFEST}.damaged-{time.strftime('%Y%m%dT%H%M%S')}.{n}")
    os.replace(path, backup)
    return backup


def _read_partition(root: Path, path: Path) -> _Partition:
    """The manifest entry of one year file, from its content; ValueError says why it is unusable."""
    digest = _sha256(path)
    if not path.name == f"{digest[:16]}.parquet":
        raise ValueError("its content does not match its name (the file is damaged)")
    year = int(path.parent.name)
    pf = pq.ParquetFile(path, page_checksum_verification=True)
    table = pf.read(columns=["symbol", "date", *FIELDS], use_threads=False)
    symbols = table["symbol"].cast(pa.string()).to_numpy(zero_copy_only=False).astype(object)
    days = table["date"].cast(pa.int32()).to_numpy().astype(np.int64)
    if len(symbols) and (symbols[1:] < symbols[:-1]).any():
        raise ValueError("its rows are not sorted by symbol: not a pitools year file")
    years = (days.astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970) if len(days) else days
    if len(days) and (years != year).any():
        raise ValueError(f"it holds bars outside {year}: not the year file of its folder")
    change = np.flatnonzero(symbols[1:] != symbols[:-1]) + 1
    starts, ends = np.concatenate([[0], change]), np.concatenate([change, [len(symbols)]])
    row_groups, lo = [], 0
    for i in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        row_groups.append((str(symbols[lo]), str(symbols[lo + n - 1]), n))
        lo += n
    return _Partition(
        year=year, file=str(path.relative_to(root)), bytes=path.stat().st_size, sha256=digest,
        dates=np.unique(days), row_groups=row_groups, symbols=[str(s) for s in symbols[starts]],
        sym_rows=(ends - starts).astype(np.int64), sym_first=days[starts], sym_last=days[ends - 1],
    )

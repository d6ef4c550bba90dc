"""The bar store's on-disk format: the manifest's fields, the year files' schema, and what
the manifest knows about one year file (:class:`_Partition`). Shared by the reader
(:mod:`pitools.data.store`), the writer (:mod:`pitools.data.store_writer`) and the repair
(:mod:`pitools.data.repair`), so neither of the first two imports the other's module.

>>> bars_schema().names
['symbol', 'date', 'open', 'high', 'low', 'close', 'volume']
>>> _iso(_days(["2026-11-20"])[0])
'2026-11-20'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pitools.data.atomic import TMP_PREFIX

__all__ = ["FORMAT", "VERSION", "MANIFEST", "PRICE_FIELDS", "FIELDS", "ROW_GROUP_ROWS", "bars_schema"]

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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

"""Read one bar file (Yahoo or Stooq CSV, parquet) into raw columns, or refuse it with a reason.

:func:`expand` lists the files of the sources an import names; :func:`prepare` reads one of them
into text columns named ``date, open, high, low, close[, volume], symbol`` with its date format and
decimal mark, or raises ``_FileRejected`` saying why the whole file cannot be used. The dialect
rules are in :mod:`pitools.data.dialect`; validation row by row and the store are
:mod:`pitools.data.ingest`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from pitools.data.dialect import _cut_text, _date_format, _decimal_mark, _Dialect, _FileRejected, _not_text, _sniff
from pitools.data.validate import MISSING_TOKENS, cut
from pitools.errors import IngestError

__all__ = ["FORMATS", "CSV_SUFFIXES", "PARQUET_SUFFIXES", "expand", "prepare"]

FORMATS = ("auto", "yahoo", "stooq", "parquet")
CSV_SUFFIXES = {".csv", ".txt", ".gz"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
_SYMBOL_RE = re.compile(r"^[A-Z0-9^][A-Z0-9.\-_^=]{0,23}$")

# Header names (lower-case, without <>, spaces and underscores) → our column names.
_ALIASES = {
    "date": "date", "datetime": "date", "timestamp": "date", "day": "date",
    "open": "open", "high": "high", "low": "low", "close": "close",
    "adjclose": "adj_close", "volume": "volume", "vol": "volume",
    "ticker": "symbol", "symbol": "symbol", "per": "period",
}




def expand(sources: Iterable[str | os.PathLike], skip: Path) -> tuple[list[Path], list[str]]:
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


def _all_missing(frame: pd.DataFrame, columns: list[str]) -> bool:
    """True when every cell of `columns` is empty or a missing token (vectorised: a bulk
    file has millions of cells; the first column with a value ends the check)."""
    for c in columns:
        col = frame[c]
        missing = col.isna()
        if not pd.api.types.is_numeric_dtype(col):
            missing |= col.astype("string").str.strip().str.lower().isin(MISSING_TOKENS).fillna(True)
        if not bool(missing.all()):
            return False
    return True


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


# -- reading ---------------------------------------------------------------------------------
def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
        if isinstance(frame.index, pd.DatetimeIndex) or str(frame.index.name).lower() in ("date", "datetime"):
            frame = frame.reset_index()  # df.to_parquet() of a date-indexed frame
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise _FileRejected(f"unreadable parquet file ({type(exc).__name__}: {_cut_text(str(exc), 120)})") from None
    return frame


def _read_csv(path: Path, dialect: _Dialect) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, sep=dialect.sep,
                           compression="infer", encoding=dialect.encoding, encoding_errors="strict")
    except UnicodeDecodeError:
        raise _FileRejected(_not_text(dialect.encoding)) from None
    except pd.errors.EmptyDataError:
        raise _FileRejected("empty file") from None
    except (pd.errors.ParserError, OSError, EOFError, ValueError) as exc:
        raise _FileRejected(f"unreadable CSV, read as {dialect.sep_name} ({type(exc).__name__}: "
                            f"{_cut_text(str(exc), 120)})") from None


def _read(path: Path, fmt: str, sep: str | None) -> tuple[pd.DataFrame, _Dialect | None, str]:
    """Read one file as raw (mostly text) columns; returns frame, CSV dialect, detected format."""
    suffix = path.suffix.lower()
    if fmt == "parquet" or (fmt == "auto" and suffix in PARQUET_SUFFIXES):
        frame, dialect, detected = _read_parquet(path), None, "parquet"
    else:
        dialect = _sniff(path, sep)
        frame = _read_csv(path, dialect)
        headers = [re.sub(r"\s", "", str(c)).lower() for c in frame.columns]
        detected = "stooq" if any(h.startswith("<") for h in headers) else (
            "yahoo" if "adjclose" in headers else "csv")
        if fmt == "stooq":
            detected = "stooq"
    mapping = _canonical(frame.columns)
    found = list(map(str, frame.columns))
    frame = frame.rename(columns=mapping)[list(mapping.values())]
    frame.attrs["found"] = found
    return frame, dialect, detected


def _missing_columns(missing: list[str], found: list[str], dialect: _Dialect | None) -> str:
    shown = ", ".join(c if len(c) <= 30 else c[:30] + "…" for c in found[:12]) + ("…" if len(found) > 12 else "")
    text = f"missing column(s) {', '.join(missing)} (found: {shown or 'none'}"
    if dialect is not None:
        text += f"; read as {dialect.sep_name}"
        if len(found) == 1:
            text += ": is the separator one of , ; tab |? give `sep`"
    return text + "; need Date, Open, High, Low, Close[, Volume])"


def prepare(path: Path, fmt: str, sep: str | None = None, decimal: str | None = None,
             dayfirst: bool | None = None) -> tuple[pd.DataFrame, str | None, str, list[str]]:
    """The raw frame of one file, its date format and decimal mark, and notes; or refuse it."""
    frame, dialect, detected = _read(path, fmt, sep)
    required = ["date", "open", "high", "low", "close"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise _FileRejected(_missing_columns(missing, frame.attrs.get("found", []), dialect))
    if frame.empty:
        raise _FileRejected("no rows (header only)")
    if "period" in frame.columns:
        periods = sorted(set(frame["period"].astype(str).str.strip().str.upper()) - {"D"})
        if periods:
            raise _FileRejected(f"not daily bars: <PER> = {cut(periods[0])} (download the daily 'D' files)")
    if "symbol" in frame.columns:
        # A row without a symbol is rejected row by row in check_bars ("missing symbol").
        frame["symbol"] = frame["symbol"].map(lambda v: "" if _is_missing(v) else _normalise_symbol(v))
    else:
        frame["symbol"] = _symbol_from_name(path)
    bad_syms = sorted({s for s in frame["symbol"].unique() if s and not _SYMBOL_RE.match(s)})
    if bad_syms:
        raise _FileRejected(f"cannot use symbol(s) {', '.join(cut(s) for s in bad_syms[:3])} (from the file name "
                            "or ticker column): use letters, digits, '.', '-', '^' (e.g. AAPL.csv, ^GSPC.csv)")
    if _all_missing(frame, ["open", "high", "low", "close"]):
        raise _FileRejected("all prices are missing (all-NaN file)")
    dialect = dialect or _Dialect(sep=None)
    dialect.decimal = decimal or _decimal_mark(frame, dialect)
    dialect.date_format, dialect.date_note = _date_format(frame["date"], dayfirst)
    notes = ([f"read as {detected}"] if fmt == "auto" else []) + dialect.notes()
    return frame, dialect.date_format, dialect.decimal, notes

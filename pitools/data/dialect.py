"""The dialect of a CSV bar file: its encoding, separator, decimal mark and date order.

:mod:`pitools.data.ingest` reads each CSV file as decided here. A file is read exactly as
it meant, or it is refused (:class:`_FileRejected`) with a reason that names the column and
the value (never a guess):

* Encoding: UTF-8 (with or without a BOM), UTF-16 and UTF-32 (by their BOM; UTF-16 without
  a BOM when the text is ASCII). Anything else is refused as "not UTF-8 text".
* Separator: ``,`` ``;`` tab or ``|``, whichever the header line holds most of outside
  quotes (or ``sep``). A separator other than ``,`` is named in the notes and reasons.
* Decimal mark: decided for the whole file (or ``decimal``) from the numbers that can only
  be read one way: ``10,5`` and ``1.234,50`` have a decimal comma, ``10.25`` and
  ``1,234.50`` a decimal point; the other mark may only group thousands in threes. A
  file holding both kinds is refused. When every marked number reads both ways
  (``1,234``, ``10.125``), a comma-separated file has a decimal point (a decimal comma
  there would have to be quoted), any other file is refused.
* Dates: ``YYYY-MM-DD`` (ISO 8601, with an optional time and zone), ``YYYYMMDD`` and
  ``YYYY/MM/DD`` are read as written. Day/month/year dates (``20/10/2026``,
  ``20.10.2026``) are day-first when some first field is above 12, month-first when some
  second field is, and refused when both or neither occur (or ``dayfirst`` says which).
  Two-digit years are refused. Zoned stamps: see :mod:`pitools.data.validate` — exactly
  midnight in its own zone is that calendar date, any other time is dated in New York.
"""

from __future__ import annotations

import codecs
import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pitools.errors import DataError
from pitools.data.validate import MISSING_TOKENS, cut, number_patterns

__all__ = ["SEPARATORS", "DECIMALS"]

SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
DECIMALS = (".", ",")
_HEAD_BYTES = 8192  # what encoding and separator are judged from
_REASON_CHARS = 400  # a whole-file reason stays a line of a summary
_NUMBER_COLUMNS = ("open", "high", "low", "close", "adj_close", "volume")


class _FileRejected(Exception):
    """A whole file cannot be used; the message says why."""


@dataclass
class _Dialect:
    """How one CSV file is written (see the module docstring)."""

    encoding: str = "utf-8"
    sep: str | None = ","  # None: a parquet file
    decimal: str = "."
    date_format: str | None = None  # None: ISO 8601
    date_note: str = ""

    @property
    def sep_name(self) -> str:
        return f"{SEPARATORS[self.sep]}-separated ({self.sep!r})" if self.sep else "parquet"

    def notes(self) -> list[str]:
        out = []
        if self.encoding.startswith(("utf-16", "utf-32")):
            out.append(f"decoded as {self.encoding.upper()}")
        if self.sep not in (",", None):
            out.append(f"read as {self.sep_name}")
        if self.decimal == ",":
            out.append("decimal comma")
        if self.date_note:
            out.append(self.date_note)
        return out


def _cut_text(text: str, limit: int = _REASON_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# -- the file's dialect: encoding, separator ---------------------------------------------------
def _head(path: Path) -> bytes:
    try:
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        with opener(path, "rb") as fh:
            return fh.read(_HEAD_BYTES)
    except (OSError, EOFError) as exc:
        raise _FileRejected(f"unreadable ({type(exc).__name__}: {_cut_text(str(exc), 120)})") from None


def _is_ascii_text(data: bytes) -> bool:
    return bool(data) and all(b in (9, 10, 13) or 32 <= b < 127 for b in data)


def _encoding_of(head: bytes) -> str:
    """The codec of a file from its first bytes: a BOM says it; ASCII with every other byte
    NUL is UTF-16 without one; anything else is read as UTF-8 (and refused if it is not)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16: FF FE 00 00
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\0" in head and len(head) >= 4:
        even, odd = head[: len(head) // 2 * 2][0::2], head[: len(head) // 2 * 2][1::2]
        if not odd.strip(b"\0") and _is_ascii_text(even):
            return "utf-16-le"
        if not even.strip(b"\0") and _is_ascii_text(odd):
            return "utf-16-be"
    return "utf-8"


def _count_outside_quotes(line: str, sep: str) -> int:
    return sum(part.count(sep) for part in line.split('"')[0::2])


def _separator_of(line: str) -> str:
    """The candidate the header line holds most of (outside quotes); ',' on a tie or none."""
    counts = {s: _count_outside_quotes(line, s) for s in SEPARATORS}
    best = max(counts, key=counts.get)  # dict order: ',' wins a tie
    return best if counts[best] else ","


def _not_text(encoding: str) -> str:
    name = "UTF-16" if "16" in encoding else "UTF-32" if "32" in encoding else "UTF-8"
    return f"unreadable: not {name} text (binary data, or another encoding: save it as UTF-8)"


def _sniff(path: Path, sep: str | None) -> _Dialect:
    head = _head(path)
    encoding = _encoding_of(head)
    try:  # an incremental decoder: a character cut at the end of the head is no error
        text = codecs.getincrementaldecoder(encoding)().decode(head, final=False)
    except UnicodeDecodeError:
        raise _FileRejected(_not_text(encoding)) from None
    if "\0" in text:
        raise _FileRejected("unreadable: binary data, not a text CSV file")
    line = next((ln for ln in text.lstrip("\ufeff").splitlines() if ln.strip()), "")
    return _Dialect(encoding=encoding, sep=sep or _separator_of(line))


# -- the file's dialect: decimal mark ----------------------------------------------------------
def _reads_as(text: pd.Series, mark: str) -> pd.Series:
    plain, grouped = number_patterns(mark)
    return text.str.fullmatch(f"(?:{plain})|(?:{grouped})", na=False)


def _only_one_way(text: pd.Series, mark: str) -> str | None:
    """A value of `text` readable with decimal `mark` and not with the other, if any.

    The first rows usually tell (every price of a US file has a '.'), so they are tried
    before the whole column."""
    other = "," if mark == "." else "."
    rows = text[text.str.contains(mark, regex=False, na=False)]
    for part in (rows.head(2000), rows.iloc[2000:]):
        hit = part[_reads_as(part, mark) & ~_reads_as(part, other)]
        if len(hit):
            return str(hit.iloc[0])
    return None


def _text_number_columns(frame: pd.DataFrame) -> dict[str, pd.Series]:
    return {c: frame[c].astype("string").str.strip() for c in _NUMBER_COLUMNS
            if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c])}


def _decimal_mark(frame: pd.DataFrame, dialect: _Dialect) -> str:
    """The file's decimal mark, decided from all its numbers (see the module docstring)."""
    columns = _text_number_columns(frame)
    seen: dict[str, tuple[str, str]] = {}
    for mark in DECIMALS:
        for name, text in columns.items():
            value = _only_one_way(text, mark)
            if value is not None:
                seen[mark] = (name, value)
                break
    if len(seen) == 2:
        (cp, vp), (cc, vc) = seen["."], seen[","]
        raise _FileRejected(
            f"numbers mix decimal marks: column `{cc}` value {cut(vc)} uses a decimal comma but column "
            f"`{cp}` value {cut(vp)} a decimal point (file read as {dialect.sep_name}); write every number "
            "with '.' as the decimal mark and no thousands separators, or give `decimal`")
    if seen:
        return next(iter(seen))
    if dialect.sep in (",", None):  # a decimal comma would have to be quoted here: "1,234" is grouped
        return "."
    for name, text in columns.items():
        marked = text[text.str.contains(r"[.,]", regex=True, na=False)]
        both = marked[_reads_as(marked, ".") & _reads_as(marked, ",")]
        if len(both):
            value = str(both.iloc[0])
            mark = "," if "," in value else "."
            raise _FileRejected(
                f"column `{name}` value {cut(value)} is ambiguous: {mark!r} may be the decimal mark or a "
                f"thousands separator, and no number in this {dialect.sep_name} file tells which; write "
                "numbers with '.' as the decimal mark and no thousands separators, or give `decimal`")
    return "."


# -- the file's dialect: dates -------------------------------------------------------------------
_DATE_SHAPES = {  # shape → full-match regex (a date column has one dominant shape)
    "iso": r"\d{4}-\d{2}-\d{2}(?:[T ].*)?",
    "compact": r"\d{8}",
    "ymd": r"\d{4}([/.])\d{1,2}\1\d{1,2}",
    "dmy": r"\d{1,2}([/.\-])\d{1,2}\1\d{4}",
    "short-year": r"\d{1,2}([/.\-])\d{1,2}\1\d{2}",
    "dmy-time": r"\d{1,2}([/.\-])\d{1,2}\1\d{2,4}[T ].+",
}
_REFORMAT = "reformat the dates as YYYY-MM-DD"


def _date_shapes(values: pd.Series) -> pd.Series:
    shape = pd.Series("other", index=values.index, dtype=object)
    for name, pattern in reversed(_DATE_SHAPES.items()):
        shape[values.str.fullmatch(pattern, na=False)] = name
    return shape


def _date_format(col: pd.Series, dayfirst: bool | None) -> tuple[str | None, str]:
    """strptime format of a text date column (None: ISO 8601) and a note; or refuse the file."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return None, ""
    values = pd.Series(col.dropna().astype(str).str.strip().unique())
    values = values[~values.str.lower().isin(MISSING_TOKENS)].reset_index(drop=True)
    if values.empty:
        return None, ""
    shapes = _date_shapes(values)
    dominant = shapes.value_counts().idxmax()
    numeric_dm = values[shapes.isin(["dmy", "short-year", "dmy-time"])]
    if dominant == "short-year" or (dominant == "other" and len(numeric_dm)):
        example = numeric_dm.iloc[0]
        raise _FileRejected(f"column `date` value {cut(example)} has a day and month whose order or century "
                            f"cannot be known without guessing; {_REFORMAT}")
    if dominant == "dmy-time":
        raise _FileRejected(f"column `date` value {cut(numeric_dm.iloc[0])} is a day/month date with a time "
                            f"(not supported); {_REFORMAT}")
    if dominant == "compact":
        return "%Y%m%d", ""
    if dominant == "ymd":
        s = re.match(_DATE_SHAPES["ymd"], values[shapes == "ymd"].iloc[0]).group(1)
        return f"%Y{s}%m{s}%d", ""
    if dominant != "dmy":
        return None, ""
    dmy = values[shapes == "dmy"]
    s = re.match(_DATE_SHAPES["dmy"], dmy.iloc[0]).group(1)
    return _day_month_order(dmy, s, dayfirst)


def _day_month_order(dmy: pd.Series, s: str, dayfirst: bool | None) -> tuple[str, str]:
    """Day-first or month-first, from the whole column: a field above 12 is the day."""
    parts = dmy.str.extract(r"^(\d{1,2})\D(\d{1,2})\D").astype(int)
    day_first = dmy[parts[0] > 12]
    month_first = dmy[parts[1] > 12]
    if dayfirst is None:
        if len(day_first) and len(month_first):
            raise _FileRejected(f"column `date` mixes day-first {cut(day_first.iloc[0])} and month-first "
                                f"{cut(month_first.iloc[0])} dates; {_REFORMAT}")
        if not len(day_first) and not len(month_first):
            raise _FileRejected(f"column `date` value {cut(dmy.iloc[0])} can be read day-first or month-first, "
                                "and no date in the file has a day above 12 to tell which; "
                                f"{_REFORMAT}, or give `dayfirst`")
        dayfirst = bool(len(day_first))
    if dayfirst:
        return f"%d{s}%m{s}%Y", f"dates read day-first (DD{s}MM{s}YYYY)"
    return f"%m{s}%d{s}%Y", f"dates read month-first (MM{s}DD{s}YYYY)"


# -- the caller's dialect arguments -----------------------------------------------------------
def _check_dialect_args(sep, decimal, dayfirst) -> None:
    if sep is not None and sep not in SEPARATORS:
        raise DataError(f"`sep` = {cut(sep)} is not a supported separator. Allowed: "
                        + ", ".join(repr(s) for s in SEPARATORS) + ", or None to detect it")
    if decimal is not None and decimal not in DECIMALS:
        raise DataError(f"`decimal` = {cut(decimal)} is not a decimal mark. Allowed: '.', ',', or None to detect it")
    if dayfirst is not None and not isinstance(dayfirst, bool):
        raise DataError(f"`dayfirst` = {dayfirst!r} must be True, False, or None to decide from the dates")

"""Row checks for incoming bars: every rejected row gets a reason a person can act on.

:func:`check_bars` takes a frame of raw text or numbers with the columns ``symbol, date,
open, high, low, close[, volume]`` and returns the usable rows as numbers plus the
rejected rows (the original values) with a ``reason`` column. Nothing is dropped silently:
every input row ends up in exactly one of the two.

Numbers (text): ``decimal`` is the file's decimal mark ('.' or ','; the reader detects it,
see :mod:`pitools.data.ingest`). The other mark may only group thousands in threes
("1,234.50" with '.', "1.234,50" with ','); anything else ("10,5" in a '.' file) is a
non-numeric value, never a guess. Prices must lie in :data:`PRICE_RANGE` and volumes in
:data:`VOLUME_RANGE` (or be 0): the panel holds prices as float32, and 1e308 (inf there)
or 1e-300 (0 there) is no price a file meant.

Dates: naive stamps give their calendar date. A stamp with a zone ('Z', '+02:00') that is
exactly midnight in its own zone is a date (vendors stamp daily bars at midnight UTC, and
yfinance at midnight New York): its own calendar date is the session. A stamp with a time
of day is an instant: converted to the exchange's zone (America/New_York), its date there
is the session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pitools.errors import DataError
from pitools.data.calendar import is_session
from pitools.data.store import FIELDS, PRICE_FIELDS

__all__ = ["CheckResult", "check_bars", "MISSING_TOKENS", "PRICE_RANGE", "VOLUME_RANGE", "EXCHANGE_TZ",
           "number_patterns", "cut"]

# What CSV producers write for "no value" (Yahoo writes 'null' on some holidays).
MISSING_TOKENS = {"", "null", "none", "nan", "na", "n/a", "-", "#n/a"}

# Bounds of a believable price: far outside any traded instrument, well inside what float32
# holds with its full precision (it turns 1e308 into inf and 1e-300 into 0).
PRICE_RANGE = (1e-6, 1e9)
# A volume is 0 or in this range (float32 would store 1e-300 as 0, 1e40 as inf).
VOLUME_RANGE = (1e-6, 1e15)
EXCHANGE_TZ = "America/New_York"
_CUT = 40  # characters of a value shown in a reason: a 1 MB garbage cell stays one short line


def cut(value, limit: int = _CUT) -> str:
    """``repr`` of `value`, at most `limit` characters of it (a reason stays one short line).

    >>> cut("x" * 100, 5)
    "'xxxxx'… (100 characters)"
    """
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


def number_patterns(decimal: str) -> tuple[str, str]:
    """Regexes (plain, grouped) of a number written with decimal mark `decimal`.

    Plain: ``-12``, ``10.5``, ``.5``, ``1.5e3``. Grouped: the other mark between groups of
    three digits after a first group of 1-3 digits not starting with 0 (``1,234,567.5``).
    """
    d, t = re.escape(decimal), re.escape("," if decimal == "." else ".")
    plain = rf"[+-]?(?:\d+{d}?\d*|{d}\d+)(?:[eE][+-]?\d+)?"
    grouped = rf"[+-]?[1-9]\d{{0,2}}(?:{t}\d{{3}})+(?:{d}\d*)?"
    return plain, grouped


@dataclass
class CheckResult:
    good: pd.DataFrame  # symbol, date (datetime64), open, high, low, close, volume (float64)
    rejected: pd.DataFrame  # the original rows + `reason`
    notes: list[str] = field(default_factory=list)

    def reason_counts(self) -> dict[str, int]:
        if self.rejected.empty:
            return {}
        return self.rejected["reason"].str.replace(r":.*", "", regex=True).value_counts().to_dict()


def _parse_numbers(text: pd.Series, decimal: str) -> pd.Series:
    """Text → float64 under the file's decimal mark; NaN where the text is no such number.

    The common case (a '.' file, no grouping) is one C-speed ``to_numeric``; only the few
    values it cannot read are matched against the grouped pattern.
    """
    if decimal == ",":
        # '.' may only group thousands here: a value with a '.' must be grouped correctly.
        has_point = text.str.contains(".", regex=False, na=False)
        grouped = has_point & text.str.fullmatch(number_patterns(",")[1], na=False)
        text = text.where(~has_point | grouped).str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        return pd.to_numeric(text, errors="coerce").astype("float64")
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    retry = values.isna() & text.str.contains(",", regex=False, na=False)
    if retry.any():
        ok = text[retry].str.fullmatch(number_patterns(".")[1], na=False)
        fixed = pd.to_numeric(text[retry][ok].str.replace(",", "", regex=False), errors="coerce")
        values.loc[fixed.index] = fixed.astype("float64")
    return values


def _numeric(col: pd.Series, name: str, reasons: pd.Series, decimal: str = ".") -> pd.Series:
    """Parse a column to float; record why a value failed where no earlier reason exists."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.astype("float64")
        _set(reasons, values.isna(), f"missing value in `{name}`")
        _set(reasons, values.notna() & ~np.isfinite(values), f"non-finite value in `{name}`")
        return values.where(np.isfinite(values))
    text = col.astype("string").str.strip()
    values = _parse_numbers(text, decimal)
    missing = text.isna() | text.str.lower().isin(MISSING_TOKENS)
    _set(reasons, missing, f"missing value in `{name}`")
    bad = values.isna() & ~missing
    if bad.any():
        reasons.loc[bad & reasons.isna()] = text[bad].map(lambda v: _non_numeric(name, v, decimal))
    inf = ~np.isfinite(values) & values.notna()
    _set(reasons, inf, f"non-finite value in `{name}`")
    return values.where(np.isfinite(values))


def _non_numeric(name: str, value: str, decimal: str) -> str:
    """The reason for a value that is no number, with a hint when it is the other dialect's."""
    other = "," if decimal == "." else "."
    hint = ""
    if re.fullmatch(number_patterns(other)[0], value) or re.fullmatch(number_patterns(other)[1], value):
        mark = "a decimal comma" if other == "," else "a decimal point"
        hint = f" (written with {mark}, but this file's decimal mark is {decimal!r})"
    return f"non-numeric value in `{name}`: {cut(value)}{hint}"


def _set(reasons: pd.Series, mask, text: str) -> None:
    mask = pd.Series(mask, index=reasons.index).fillna(False).astype(bool)
    reasons.loc[mask & reasons.isna()] = text


def _set_each(reasons: pd.Series, mask, values: pd.Series, text) -> None:
    """Like :func:`_set`, with a reason built from each row's value (``text(value)``)."""
    mask = pd.Series(mask, index=reasons.index).fillna(False).astype(bool) & reasons.isna()
    if mask.any():
        reasons.loc[mask] = values[mask].map(text)


def _range_checks(reasons: pd.Series, values: pd.Series, name: str, low: float, high: float,
                  zero_ok: bool = False, label: str = "") -> None:
    """Reject values outside ``low..high`` (0 allowed with `zero_ok`), naming the bounds."""
    outside = (values < low) | (values > high)
    if zero_ok:
        outside &= values != 0
    allowed = f"{'0 or ' if zero_ok else ''}{low:g}..{high:g}"
    _set_each(reasons, outside, values,
              lambda v: f"{label}`{name}` out of range: {v:g} (allowed {allowed})")


_FIRST_DAY, _LAST_DAY = pd.Timestamp("1700-01-01"), pd.Timestamp("2261-12-31")  # inside datetime64[ns]
_ZONED = re.compile(r"(?P<local>\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*"
                    r"(?P<zone>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)", re.IGNORECASE)


def _session_days(local: pd.Series, offset_min: pd.Series) -> pd.Series:
    """Session dates of zoned stamps: `local` wall-clock times with their UTC offsets.

    Midnight in its own zone is a date (vendors' daily stamps: 2026-10-20T00:00:00Z is the
    bar of the 20th, though New York's clock read the 19th); any other time is an instant,
    dated in the exchange's zone (a 2026-10-21T01:00Z trade was on the 20th in New York).
    """
    midnight = local == local.dt.normalize()
    instant = (local - pd.to_timedelta(offset_min, unit="min")).dt.tz_localize("UTC")
    exchange = instant.dt.tz_convert(EXCHANGE_TZ).dt.tz_localize(None)
    return local.where(midnight, exchange).dt.normalize()


def _zoned_text(text: pd.Series) -> pd.Series:
    """Dates of ISO stamps with a zone (NaT where unparseable); see :func:`_session_days`."""
    parts = text.str.extract(_ZONED.pattern, flags=re.IGNORECASE)
    local = pd.to_datetime(parts["local"], format="ISO8601", errors="coerce")
    zone = parts["zone"].str.upper()
    sign = np.where(zone.str.startswith("-"), -1, 1)
    hours = pd.to_numeric(zone.str.slice(1, 3), errors="coerce").fillna(0)
    minutes = pd.to_numeric(zone.str.replace(":", "", regex=False).str.slice(3, 5), errors="coerce").fillna(0)
    offset = pd.Series(sign * (hours * 60 + minutes), index=text.index).where(~zone.isin(["Z", "UTC", "GMT"]), 0)
    return _session_days(local, offset)


def _dates(col: pd.Series, date_format: str | None, reasons: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = pd.Series(col, index=col.index)
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):  # parquet: the same rule as zoned text
            local = parsed.dt.tz_localize(None)
            offset = (local - parsed.dt.tz_convert("UTC").dt.tz_localize(None)).dt.total_seconds() / 60
            parsed = _session_days(local, offset)
        return parsed.dt.normalize().astype("datetime64[ns]")
    text = col.astype("string").str.strip()
    zoned = text.str.fullmatch(_ZONED.pattern, case=False, na=False) if date_format is None else \
        pd.Series(False, index=text.index)
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    if zoned.any():
        parsed[zoned] = _zoned_text(text[zoned]).astype("datetime64[ns]")
    naive = text[~zoned]
    if len(naive):
        values = pd.to_datetime(naive, format=date_format or "ISO8601", errors="coerce")
        if values.isna().all() and date_format is None:
            values = pd.to_datetime(naive, format="mixed", errors="coerce")
        values = pd.Series(values, index=naive.index)
        # pandas may parse year 3000 at a coarser resolution; the store's nanoseconds cannot.
        far = (values < _FIRST_DAY) | (values > _LAST_DAY)
        _set_each(reasons, far.reindex(text.index, fill_value=False), text,
                  lambda v: f"date out of range: {cut(v)} (allowed {_FIRST_DAY.date()}..{_LAST_DAY.date()})")
        parsed[~zoned] = values.where(~far).astype("datetime64[ns]")
    bad = parsed.isna()
    if bad.any():
        reasons.loc[bad & reasons.isna()] = text[bad].map(lambda v: f"unparseable date: {cut(v)}")
    return parsed.dt.normalize().astype("datetime64[ns]")


def check_bars(raw: pd.DataFrame, calendar: str = "XNYS", date_format: str | None = None,
               adjust: bool = True, decimal: str = ".") -> CheckResult:
    """Split `raw` bars into usable rows and rejected rows with reasons.

    Parameters
    ----------
    raw : DataFrame
        Columns ``symbol, date, open, high, low, close`` and optionally ``volume`` and
        ``adj_close``; values may be text (as read from CSV) or numbers.
    calendar : str
        Bars on dates that are not sessions of this calendar are rejected.
    date_format : str, optional
        strptime format of the date column (default ISO 8601, zoned stamps as the module
        docstring says).
    adjust : bool
        With an ``adj_close`` column, scale open/high/low/close by ``adj_close / close``
        (splits and dividends) and volume by the inverse, as adjusted data sources do.
    decimal : {".", ","}
        The decimal mark of text numbers; the other mark may only group thousands.

    Example
    -------
    >>> raw = pd.DataFrame({"symbol": ["X", "X"], "date": ["2024-01-02", "2024-01-03"],
    ...                     "open": ["10,5", "1.234,5"], "high": ["11", "1.300"], "low": ["10", "1.200"],
    ...                     "close": ["10,75", "1.250,25"]})
    >>> check_bars(raw, decimal=",").good["close"].tolist()
    [10.75, 1250.25]
    """
    if decimal not in (".", ","):
        raise DataError(f"`decimal` = {decimal!r} is not a decimal mark: use '.' or ','")
    raw = raw.reset_index(drop=True)
    notes: list[str] = []
    reasons = pd.Series(pd.NA, index=raw.index, dtype="object")
    dates = _dates(raw["date"], date_format, reasons)
    prices = {f: _numeric(raw[f], f, reasons, decimal) for f in PRICE_FIELDS}
    if "volume" in raw.columns:
        # A missing volume is allowed (index series have none); a wrong one is not.
        vol_reasons = pd.Series(pd.NA, index=raw.index, dtype="object")
        volume = _numeric(raw["volume"], "volume", vol_reasons, decimal)
        wrong = vol_reasons.notna() & ~vol_reasons.astype(str).str.startswith("missing")
        reasons.loc[wrong & reasons.isna()] = vol_reasons[wrong & reasons.isna()]
        _set(reasons, volume < 0, "negative `volume`")
        _range_checks(reasons, volume, "volume", *VOLUME_RANGE, zero_ok=True)
    else:
        volume = pd.Series(np.nan, index=raw.index)
        notes.append("no volume column: volume left empty")
    for f in PRICE_FIELDS:  # the file's own values first: the reason shows what it holds
        _set(reasons, prices[f] <= 0, f"non-positive price in `{f}`")
        _range_checks(reasons, prices[f], f, *PRICE_RANGE)
    if "adj_close" in raw.columns and adjust:
        adj = _numeric(raw["adj_close"], "adj_close", reasons, decimal)
        _set(reasons, adj <= 0, "non-positive `adj_close`")
        _range_checks(reasons, adj, "adj_close", *PRICE_RANGE)
        factor = (adj / prices["close"]).where(lambda x: np.isfinite(x) & (x > 0), 1.0)
        if ((factor - 1.0).abs() > 1e-9).any():
            notes.append("scaled prices by adj_close/close (split- and dividend-adjusted)")
        prices = {f: v * factor for f, v in prices.items()}
        volume = volume / factor
        for f in PRICE_FIELDS:  # a wild factor can push a sane price out of range
            _range_checks(reasons, prices[f], f, *PRICE_RANGE, label="adjusted ")
        _range_checks(reasons, volume, "volume", *VOLUME_RANGE, zero_ok=True, label="adjusted ")
    lo, hi = prices["low"], prices["high"]
    tol = 1e-9 * hi.abs()
    _set(reasons, hi < lo, "high < low")
    for f in ("open", "close"):
        _set(reasons, (prices[f] > hi + tol) | (prices[f] < lo - tol), f"`{f}` outside [low, high]")
    _set(reasons, raw["symbol"].astype(str).str.len() == 0, "missing symbol")
    today = pd.Timestamp.now(tz=EXCHANGE_TZ).tz_localize(None).normalize()
    _set(reasons, dates > today, f"date in the future: after {today.date()}")
    ok = reasons.isna()
    if ok.any():
        off = ~pd.Series(is_session(dates[ok].to_numpy(), calendar), index=dates[ok].index)
        _set(reasons, off.reindex(raw.index, fill_value=False), f"not a session of the {calendar} calendar (weekend or holiday)")

    frame = pd.DataFrame({"symbol": raw["symbol"].astype(str), "date": dates, **prices, "volume": volume})
    # Duplicates among otherwise good rows: identical copies keep the first, conflicting
    # copies are all rejected (which one is right cannot be known).
    ok = reasons.isna()
    key = ["symbol", "date"]
    dup_any = frame[ok].duplicated(key, keep=False)
    if dup_any.any():
        group = frame[ok][dup_any]
        conflicting = group.groupby(key)[list(FIELDS)].transform(lambda c: c.nunique(dropna=False) > 1).any(axis=1)
        _set(reasons, conflicting.reindex(raw.index, fill_value=False),
             "conflicting duplicate rows for this date")
        extra = group[~conflicting].duplicated(key, keep="first")
        _set(reasons, extra.reindex(raw.index, fill_value=False), "duplicate of an earlier identical row")
    ok = reasons.isna()
    good = frame[ok]
    if len(good) > 1:
        order = good.sort_values(key, kind="mergesort")
        moved = int((order.index.to_numpy() != good.index.to_numpy()).sum())
        if moved:
            notes.append(f"{moved} rows were out of date order; sorted")
        good = order
    rejected = raw[~ok].copy()
    rejected["reason"] = reasons[~ok].astype(str)
    return CheckResult(good.reset_index(drop=True), rejected, notes)

"""Row checks for incoming bars: every rejected row gets a reason a person can act on.

:func:`check_bars` takes a frame of raw text or numbers with the columns ``symbol, date,
open, high, low, close[, volume]`` and returns the usable rows as numbers plus the
rejected rows (the original values) with a ``reason`` column. Nothing is dropped silently:
every input row ends up in exactly one of the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .calendar import is_session
from .store import FIELDS, PRICE_FIELDS

__all__ = ["CheckResult", "check_bars", "MISSING_TOKENS"]

# What CSV producers write for "no value" (Yahoo writes 'null' on some holidays).
MISSING_TOKENS = {"", "null", "none", "nan", "na", "n/a", "-", "#n/a"}


@dataclass
class CheckResult:
    good: pd.DataFrame  # symbol, date (datetime64), open, high, low, close, volume (float64)
    rejected: pd.DataFrame  # the original rows + `reason`
    notes: list[str] = field(default_factory=list)

    def reason_counts(self) -> dict[str, int]:
        if self.rejected.empty:
            return {}
        return self.rejected["reason"].str.replace(r":.*", "", regex=True).value_counts().to_dict()


def _numeric(col: pd.Series, name: str, reasons: pd.Series) -> pd.Series:
    """Parse a column to float; record why a value failed where no earlier reason exists."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.astype("float64")
        _set(reasons, values.isna(), f"missing value in `{name}`")
        _set(reasons, values.notna() & ~np.isfinite(values), f"non-finite value in `{name}`")
        return values.where(np.isfinite(values))
    text = col.astype("string").str.strip()
    values = pd.to_numeric(text.str.replace(",", "", regex=False), errors="coerce").astype("float64")
    missing = text.isna() | text.str.lower().isin(MISSING_TOKENS)
    _set(reasons, missing, f"missing value in `{name}`")
    bad = values.isna() & ~missing
    if bad.any():
        reasons.loc[bad & reasons.isna()] = text[bad].map(lambda v: f"non-numeric value in `{name}`: {v!r}")
    inf = ~np.isfinite(values) & values.notna()
    _set(reasons, inf, f"non-finite value in `{name}`")
    return values.where(np.isfinite(values))


def _set(reasons: pd.Series, mask, text: str) -> None:
    mask = pd.Series(mask, index=reasons.index).fillna(False).astype(bool)
    reasons.loc[mask & reasons.isna()] = text


def _dates(col: pd.Series, date_format: str | None, reasons: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = col
    else:
        text = col.astype("string").str.strip()
        # Stamps with UTC offsets (yfinance: '-05:00' in winter, '-04:00' in summer) are
        # parsed as instants and read back as New York trading days below.
        zoned = bool(text.str.contains(r"(?:[+-]\d\d:?\d\d|Z)$", regex=True, na=False).any())
        parsed = pd.to_datetime(text, format=date_format or "ISO8601", errors="coerce", utc=zoned)
        if parsed.isna().all() and date_format is None:
            parsed = pd.to_datetime(text, format="mixed", errors="coerce", utc=zoned)
        bad = parsed.isna()
        if bad.any():
            reasons.loc[bad & reasons.isna()] = text[bad].map(lambda v: f"unparseable date: {v!r}")
    parsed = pd.Series(parsed, index=col.index)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        # A time-zone-aware stamp is read as the New York trading day it falls on.
        parsed = parsed.dt.tz_convert("America/New_York").dt.tz_localize(None)
    return parsed.dt.normalize().astype("datetime64[ns]")


def check_bars(raw: pd.DataFrame, calendar: str = "XNYS", date_format: str | None = None,
               adjust: bool = True) -> CheckResult:
    """Split `raw` bars into usable rows and rejected rows with reasons.

    Parameters
    ----------
    raw : DataFrame
        Columns ``symbol, date, open, high, low, close`` and optionally ``volume`` and
        ``adj_close``; values may be text (as read from CSV) or numbers.
    calendar : str
        Bars on dates that are not sessions of this calendar are rejected.
    date_format : str, optional
        strptime format of the date column (default ISO 8601).
    adjust : bool
        With an ``adj_close`` column, scale open/high/low/close by ``adj_close / close``
        (splits and dividends) and volume by the inverse, as adjusted data sources do.
    """
    raw = raw.reset_index(drop=True)
    notes: list[str] = []
    reasons = pd.Series(pd.NA, index=raw.index, dtype="object")
    dates = _dates(raw["date"], date_format, reasons)
    prices = {f: _numeric(raw[f], f, reasons) for f in PRICE_FIELDS}
    if "volume" in raw.columns:
        # A missing volume is allowed (index series have none); a wrong one is not.
        vol_reasons = pd.Series(pd.NA, index=raw.index, dtype="object")
        volume = _numeric(raw["volume"], "volume", vol_reasons)
        wrong = vol_reasons.notna() & ~vol_reasons.astype(str).str.startswith("missing")
        reasons.loc[wrong & reasons.isna()] = vol_reasons[wrong & reasons.isna()]
        _set(reasons, volume < 0, "negative `volume`")
    else:
        volume = pd.Series(np.nan, index=raw.index)
        notes.append("no volume column: volume left empty")
    if "adj_close" in raw.columns and adjust:
        adj = _numeric(raw["adj_close"], "adj_close", reasons)
        _set(reasons, adj <= 0, "non-positive `adj_close`")
        factor = (adj / prices["close"]).where(lambda x: np.isfinite(x) & (x > 0), 1.0)
        if ((factor - 1.0).abs() > 1e-9).any():
            notes.append("scaled prices by adj_close/close (split- and dividend-adjusted)")
        prices = {f: v * factor for f, v in prices.items()}
        volume = volume / factor
    for f in PRICE_FIELDS:
        _set(reasons, prices[f] <= 0, f"non-positive price in `{f}`")
    lo, hi = prices["low"], prices["high"]
    tol = 1e-9 * hi.abs()
    _set(reasons, hi < lo, "high < low")
    for f in ("open", "close"):
        _set(reasons, (prices[f] > hi + tol) | (prices[f] < lo - tol), f"`{f}` outside [low, high]")
    _set(reasons, raw["symbol"].astype(str).str.len() == 0, "missing symbol")
    today = pd.Timestamp.now(tz="America/New_York").tz_localize(None).normalize()
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

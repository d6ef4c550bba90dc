"""Trading sessions from a maintained calendar (exchange_calendars), cached.

pitools only ever asks for daily sessions: which dates the exchange was open, and the
last session that has closed by a given moment (for "is the data stale?" checks).
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from pitools.errors import DataError

__all__ = ["DEFAULT_CALENDAR", "sessions", "last_closed_session", "is_session"]

DEFAULT_CALENDAR = "XNYS"
_FIRST_YEAR = 1885  # exchange_calendars' XNYS knows sessions back to 1885


@functools.lru_cache(maxsize=8)
def _calendar(name: str, first_year: int, last_year: int):
    import exchange_calendars as xcals  # a heavy import, paid only when sessions are needed

    try:
        return xcals.get_calendar(name, start=f"{first_year}-01-01", end=f"{last_year}-12-31")
    except xcals.errors.InvalidCalendarName:
        raise DataError(f"`calendar` = {name!r} is not a known exchange calendar "
                        "(use an exchange_calendars code such as 'XNYS')") from None


def _cal_for(name: str, start: pd.Timestamp, end: pd.Timestamp):
    # Round the span out to decades so a handful of cached calendars serve every request.
    first = max(_FIRST_YEAR, (start.year // 10) * 10)
    last = max((end.year // 10) * 10 + 9, pd.Timestamp.now().year + 1)
    return _calendar(name, first, last)


def sessions(start, end, calendar: str = DEFAULT_CALENDAR) -> pd.DatetimeIndex:
    """The sessions of `calendar` from `start` to `end`, both included, as naive dates.

    Example
    -------
    >>> len(sessions("2024-12-23", "2024-12-27"))   # Christmas Day is closed
    4
    """
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if end < start:
        return pd.DatetimeIndex([], name="date")
    cal = _cal_for(calendar, start, end)
    lo = max(start, cal.first_session)
    hi = min(end, cal.last_session)
    if hi < lo:
        return pd.DatetimeIndex([], name="date")
    out = cal.sessions_in_range(lo, hi)
    return pd.DatetimeIndex(np.asarray(out.values, dtype="datetime64[ns]"), name="date")


def is_session(dates, calendar: str = DEFAULT_CALENDAR) -> np.ndarray:
    """Boolean array: which of `dates` are sessions of `calendar`."""
    idx = pd.DatetimeIndex(pd.to_datetime(dates)).normalize()
    if len(idx) == 0:
        return np.zeros(0, dtype=bool)
    known = sessions(idx.min(), idx.max(), calendar)
    return np.asarray(idx.isin(known))


def last_closed_session(now: datetime | None = None, calendar: str = DEFAULT_CALENDAR) -> pd.Timestamp:
    """The most recent session whose close is at or before `now` (default: the current time)."""
    now_ts = pd.Timestamp(now or datetime.now(timezone.utc))
    if now_ts.tzinfo is None:
        now_ts = now_ts.tz_localize("UTC")
    day = now_ts.tz_convert("UTC").tz_localize(None).normalize()
    cal = _cal_for(calendar, day - pd.Timedelta(days=30), day)
    for session in reversed(sessions(day - pd.Timedelta(days=30), day, calendar)):
        if cal.session_close(session) <= now_ts:
            return session
    raise DataError(f"no closed {calendar} session in the 30 days before {now_ts!s}")

"""Which session a run is for, and whether the data is fresh enough to publish signals from.

A signal is a promise about tomorrow, so the night's session and the data's age are decided
in one place, for every command that has a night (``pitools nightly``, ``pitools evolve``,
``pitools check``) and for the notebooks:

* :func:`resolve_night` — the session a run is for. Default: the last NYSE session that has
  closed (exchange time). A date in the future, one whose session has not closed yet, or a
  day the exchange is closed is bad input (:class:`~pitools.errors.NightError`, exit 2): the
  message names the date and the nearest valid session.
* :func:`freshness` — the store against the night: the sessions the store misses before the
  night (more than the profile's ``max_stale_sessions`` and the signals are refused) and the
  symbols without a bar on the night's session (they get no signal).

>>> resolve_night("2024-12-24", now="2025-01-06 12:00").date()   # Christmas Eve trades (a half day)
datetime.date(2024, 12, 24)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date as _date
from datetime import datetime

import pandas as pd

from pitools.errors import NightError, StaleDataError
from pitools.data.calendar import last_closed_session, sessions
from pitools.data.store import Store

__all__ = ["Freshness", "freshness", "resolve_night", "sessions_missed"]

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day(ts: pd.Timestamp) -> str:
    return f"{ts.date()} ({ts.day_name()[:3]})"


def resolve_night(night=None, now: datetime | str | None = None, what: str = "--date") -> pd.Timestamp:
    """The session a run is for: `night` checked, or the last closed NYSE session.

    `now` (default: the current time) decides which sessions have closed; `what` names the
    argument in the message.
    """
    now_ts = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    if now_ts.tzinfo is None:
        now_ts = now_ts.tz_localize("UTC")
    last = last_closed_session(now_ts.to_pydatetime())
    if night is None:
        return last
    day = None
    if isinstance(night, (datetime, pd.Timestamp)):
        day = pd.Timestamp(night)
    elif isinstance(night, _date) or (isinstance(night, str) and _ISO.fullmatch(night.strip())):
        try:
            day = pd.Timestamp(_date.fromisoformat(str(night).strip()))
        except ValueError:
            day = None
    if day is None or day is pd.NaT:
        raise NightError(f"`{what}` = {str(night)!r} is not a date; use YYYY-MM-DD, e.g. {last.date()}")
    day = day.tz_localize(None).normalize() if day.tzinfo is not None else day.normalize()
    today = now_ts.tz_convert("America/New_York").tz_localize(None).normalize()
    if day > today:
        raise NightError(f"`{what}` = {str(day.date())!r} is in the future: a night is a session that has closed. "
                         f"The last closed NYSE session is {_day(last)}; use `{what} {last.date()}` or leave it out")
    around = sessions(day - pd.Timedelta(days=10), day + pd.Timedelta(days=10))
    if day not in around:
        before = [s for s in around if s < day]
        after = [s for s in around if day < s <= last]
        near = " or ".join(_day(s) for s in (before[-1:] + after[:1]))
        closed = f"a {day.day_name()}" if day.day_of_week >= 5 else f"an NYSE holiday ({day.day_name()})"
        raise NightError(f"`{what}` = {str(day.date())!r} is {closed}: not a session. The nearest closed "
                         f"session{'s are' if ' or ' in near else ' is'} {near}")
    if day > last:
        raise NightError(f"`{what}` = {str(day.date())!r} has not closed yet: a night is a session that has closed. "
                         f"The last closed NYSE session is {_day(last)}; use `{what} {last.date()}` or leave it out")
    return day


def sessions_missed(last_bar, night) -> int:
    """NYSE sessions after `last_bar` up to and including `night` (0 when the bar is the night's)."""
    last_bar, night = pd.Timestamp(last_bar).normalize(), pd.Timestamp(night).normalize()
    if last_bar >= night:
        return 0
    return len(sessions(last_bar + pd.Timedelta(days=1), night))


@dataclass(frozen=True)
class Freshness:
    """The store against the night: see :func:`freshness`."""

    night: pd.Timestamp
    last_bar: pd.Timestamp | None
    missed: int  # sessions after the store's last bar up to the night
    max_stale_sessions: int
    stale: dict[str, pd.Timestamp] = field(default_factory=dict)  # symbol -> its last bar, before the night
    n_symbols: int = 0

    @property
    def ok(self) -> bool:
        """Signals may be published (the store is at most `max_stale_sessions` behind)."""
        return self.last_bar is not None and self.missed <= self.max_stale_sessions

    def summary(self) -> str:
        """One line: the store's last bar against the night."""
        if self.last_bar is None:
            return f"the store has no bars: no signals for {self.night.date()}"
        return (f"last bar {_day(self.last_bar)}, night {_day(self.night)}: {self.missed} session"
                f"{'s' if self.missed != 1 else ''} missed (max_stale_sessions {self.max_stale_sessions})")

    def refusal(self) -> str:
        """Why no signals are published (only meaningful when not :attr:`ok`)."""
        return (f"NO SIGNALS for the night of {self.night.date()}: the data is stale — {self.summary()}. "
                "Bring the store up to date (the data source of 01_data, or `pitools ingest`), then run the "
                "night again; the research still ran on the history")

    def stale_text(self, limit: int = 10) -> str:
        """The symbols without a bar on the night's session, with their last bar."""
        if not self.stale:
            return f"every symbol has a bar on {self.night.date()}"
        items = sorted(self.stale.items(), key=lambda kv: (kv[1], kv[0]))
        shown = ", ".join(f"{s} (last {d.date()})" for s, d in items[:limit])
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        return (f"{len(items)} of {self.n_symbols} symbols have no bar on {self.night.date()} and get no signal: "
                f"{shown}{more}")

    def stale_table(self) -> pd.DataFrame:
        """symbol, last bar, sessions missed — one row per stale symbol, oldest first."""
        rows = [{"symbol": s, "last bar": str(d.date()), "sessions missed": sessions_missed(d, self.night)}
                for s, d in sorted(self.stale.items(), key=lambda kv: (kv[1], kv[0]))]
        return pd.DataFrame(rows, columns=["symbol", "last bar", "sessions missed"])

    def raise_if_stale(self) -> None:
        """:class:`~pitools.errors.StaleDataError` (exit 1) unless :attr:`ok`."""
        if not self.ok:
            raise StaleDataError(self.refusal())


def freshness(store, night, max_stale_sessions: int = 1, symbols=None) -> Freshness:
    """How fresh `store` (a :class:`~pitools.data.Store` or its folder) is for `night`.

    The last bar of `symbols` (default: every equity; index series such as ``^VIX`` are not
    traded and do not count) is compared with the night's session, and each of them without
    a bar on that session is stale.
    """

    st = store if isinstance(store, Store) else Store.open(store)
    night = pd.Timestamp(night).normalize()
    info = st.summary()
    if len(info) == 0:
        info = pd.DataFrame(columns=["kind", "first", "last"])
    # the traded universe decides (an index series such as ^VIX may run a few days longer)
    traded = info[info["kind"] == "equity"]
    if symbols is not None:
        traded = traded.loc[[s for s in symbols if s in traded.index]]
    ends = [min(pd.Timestamp(d).normalize(), night) for d in traded["last"]] if len(traded) else []
    last_bar = max(ends) if ends else None
    # a bar after the night is the future for this night: the night's own bar is what counts
    missed = 0 if last_bar is None else sessions_missed(last_bar, night)
    info = traded
    stale = {}
    for symbol, row in info.iterrows():
        first, last_sym = pd.Timestamp(row["first"]).normalize(), pd.Timestamp(row["last"]).normalize()
        if last_sym < night or first > night:
            stale[str(symbol)] = min(last_sym, night) if first <= night else first
    return Freshness(night=night, last_bar=last_bar, missed=missed, max_stale_sessions=int(max_stale_sessions),
                     stale=stale, n_symbols=len(info))

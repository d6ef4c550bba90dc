"""Sessions come from the NYSE calendar: holidays, early closes and weekends are right."""

from __future__ import annotations

import pandas as pd
import pytest

from pitools.data.calendar import is_session, last_closed_session, sessions
from pitools.errors import DataError


def test_known_holidays_are_not_sessions():
    # Independently known NYSE closures.
    closed = ["2024-01-01", "2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27", "2024-06-19",
              "2024-07-04", "2024-09-02", "2024-11-28", "2024-12-25", "2025-01-09",  # national day of mourning
              "2012-10-29", "2012-10-30", "2001-09-11"]  # hurricane Sandy, 9/11
    assert not is_session(closed).any()
    open_days = ["2024-01-02", "2024-03-28", "2024-07-03", "2024-11-29", "2024-12-24", "2001-09-17"]
    assert is_session(open_days).all()


def test_session_counts_match_the_exchange():
    assert len(sessions("2024-01-01", "2024-12-31")) == 252
    assert len(sessions("2023-01-01", "2023-12-31")) == 250
    s = sessions("2024-12-20", "2024-12-31")
    assert list(s.strftime("%m-%d")) == ["12-20", "12-23", "12-24", "12-26", "12-27", "12-30", "12-31"]
    assert s.day_of_week.max() <= 4


def test_last_closed_session_around_a_weekend_and_the_close():
    # Saturday → Friday; Monday before the 16:00 New York close → Friday; after → Monday.
    assert last_closed_session(pd.Timestamp("2024-06-08 12:00", tz="America/New_York")) == pd.Timestamp("2024-06-07")
    assert last_closed_session(pd.Timestamp("2024-06-10 15:59", tz="America/New_York")) == pd.Timestamp("2024-06-07")
    assert last_closed_session(pd.Timestamp("2024-06-10 16:01", tz="America/New_York")) == pd.Timestamp("2024-06-10")
    # The day after Thanksgiving closes at 13:00.
    assert last_closed_session(pd.Timestamp("2024-11-29 13:30", tz="America/New_York")) == pd.Timestamp("2024-11-29")


def test_unknown_calendar_is_named():
    with pytest.raises(DataError, match="'XNOPE'"):
        sessions("2024-01-01", "2024-02-01", calendar="XNOPE")

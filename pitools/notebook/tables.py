"""Tables as the reports show them: every row, no bare row counter, a dash where a value is missing.

pandas shows a long DataFrame as its first and last 5 rows (``display.max_rows``) and prints its
0..n row counter as a first column; a report read in the morning wants neither (the signals of
05_report were cut to 10 of 119 rows). :func:`table` wraps a DataFrame in an object that Jupyter,
and so the nightly HTML export, shows whole: as HTML (``text/html``, what the reports draw) and as
text (``text/plain``, what a terminal and the tests read). The index is shown only when it means
something (a named index, or labels such as strategy names), never as a bare 0..n counter. A table
capped on purpose says so above its rows: "first 50 of 312 flips".

>>> from IPython.display import display
>>> from pitools.market.signals import next_session_signals
>>> signals = pd.DataFrame(next_session_signals(panel, "sma_cross"))    # index 0..7: not shown
>>> table(signals[["strategy", "symbol", "side"]])          # the last line of a cell: all 8 rows
 strategy symbol side
sma_cross    BMZ flat
sma_cross    CYE long
sma_cross    FNA flat
sma_cross    IBW flat
sma_cross    RFP long
sma_cross    TUL flat
sma_cross    WJH flat
sma_cross    YYD long
>>> trades = pt.backtest("sma_cross", panel).trades
>>> display(table(trades[["symbol", "entry_time", "exit_time"]], limit=3, what="trades"))
first 3 of 97 trades:
symbol entry_time  exit_time
   BMZ 2024-01-05 2024-02-13
   BMZ 2024-03-19 2024-04-19
   BMZ 2024-06-06 2024-07-23
"""

from __future__ import annotations

import html

import pandas as pd

from pitools.errors import DataError, check_int

__all__ = ["Table", "table", "shows_index"]

MISSING = "—"


def shows_index(frame: pd.DataFrame) -> bool:
    """False for a bare row counter (an unnamed ``RangeIndex``, what ``reset_index`` leaves), True
    for an index that labels the rows (a name such as ``rank``, strategy names, dates)."""
    idx = frame.index
    return not (isinstance(idx, pd.RangeIndex) and idx.name is None)


class Table:
    """A DataFrame as a report shows it (see the module doc); ``.frame`` is the rows shown."""

    def __init__(self, frame: pd.DataFrame, limit: int | None = None, what: str = "rows", missing: str = MISSING):
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"`frame` = {type(frame).__name__} must be a pandas DataFrame")
        if limit is not None:
            limit = check_int("limit", limit, 1, allowed="a whole number of rows >= 1, or None for every row",
                              error=DataError)
        self.total = len(frame)
        self.frame = frame if limit is None else frame.head(limit)
        self.what, self.missing = what, missing
        self.index = shows_index(frame)

    @property
    def note(self) -> str:
        """"first 50 of 312 flips" for a capped table, else ""."""
        return f"first {len(self.frame)} of {self.total} {self.what}" if len(self.frame) < self.total else ""

    def __repr__(self) -> str:
        if self.frame.empty:
            body = f"(no {self.what})"
        else:
            body = self.frame.to_string(index=self.index, na_rep=self.missing)
        return f"{self.note}:\n{body}" if self.note else body

    def _repr_html_(self) -> str:
        body = (f"<p><i>(no {html.escape(self.what)})</i></p>" if self.frame.empty
                else self.frame.to_html(index=self.index, na_rep=self.missing, border=0, escape=True))
        return (f"<p><small>{html.escape(self.note)}</small></p>\n" if self.note else "") + body


def table(frame: pd.DataFrame, limit: int | None = None, what: str = "rows") -> Table:
    """`frame` to display in a report: every row (or the first `limit`, saying so), no 0..n counter.

    Parameters
    ----------
    frame : pandas.DataFrame
    limit : int, optional
        Show only the first `limit` rows, with a line "first N of M <what>" above them.
    what : str
        What a row is, for that line and for an empty table ("no signals").

    Example
    -------
    >>> t = table(pd.DataFrame({"strategy": ["macd", "sma_cross"], "side": ["long", "flat"]}))
    >>> print(repr(t))
     strategy side
         macd long
    sma_cross flat
    >>> print(repr(table(pd.DataFrame({"n": range(5)}), limit=2, what="flips")))
    first 2 of 5 flips:
     n
     0
     1
    """
    return Table(frame, limit=limit, what=what)

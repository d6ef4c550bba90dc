"""A profile's universe: which symbols and which years of the store a run works on.

Every command and notebook that loads "the profile's universe" goes through here, so the
nightly, ``pitools evolve``, ``pitools summary``, ``pitools doctor``, the tune notebook and the
research notebooks always see the same symbols:

>>> import pitools as pt
>>> from pitools.config import load_profile
>>> store = pt.make_demo_store(getfixture("tmp_path") / "store", n_symbols=6, years=2, seed=1)
>>> universe = profile_universe(load_profile("ci"), store, max_symbols=4, max_years=1)
>>> len(universe.symbols), universe.symbols == sorted(universe.symbols)
(4, True)
>>> panel = universe.load(fields=("close",))
>>> panel.n_symbols, panel.dates[0] >= universe.start, 240 <= panel.n_bars <= 260
(4, True, True)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pitools.data.panel import Panel, PanelEstimate, _to_day, _year_start, estimate_panel, load_panel
from pitools.data.store import FIELDS, Store
from pitools.errors import DataError

__all__ = ["Universe", "profile_universe", "select_universe"]


@dataclass(frozen=True)
class Universe:
    """The symbols and first date a profile selects in an open store, and its memory budget."""

    store: Store
    symbols: list[str]
    start: pd.Timestamp
    memory_budget_mb: float | None = None

    def estimate(self, end=None, fields: Sequence[str] = FIELDS) -> PanelEstimate:
        """What :meth:`load` would take, from the store's metadata only."""
        return estimate_panel(self.store, symbols=self.symbols, start=self.start, end=end, fields=fields)

    def load(self, end=None, fields: Sequence[str] = FIELDS) -> Panel:
        """The universe's bars up to `end` (a night reads only its past) as a :class:`Panel`,
        refused before loading when it would not fit the memory budget."""
        return load_panel(self.store, symbols=self.symbols, start=self.start, end=end, fields=fields,
                          memory_budget_mb=self.memory_budget_mb)


def profile_universe(profile, store: str | os.PathLike | Store | None = None, max_symbols: int | None = None,
                     max_years: int | None = None) -> Universe:
    """The universe of `profile` (its ``max_symbols``, ``max_years`` and ``memory_budget_mb``) in
    `store` (default: the profile's store); `max_symbols` / `max_years` override the profile's."""
    store = store if isinstance(store, Store) else Store.open(store if store is not None else profile.store_dir)
    symbols, start = select_universe(store, max_symbols or profile.max_symbols, max_years or profile.max_years)
    return Universe(store, symbols, start, profile.memory_budget_mb)


def select_universe(path: str | os.PathLike | Store, max_symbols: int,
                    max_years: int) -> tuple[list[str], pd.Timestamp]:
    """The symbols and start date a profile's ``max_symbols`` / ``max_years`` select.

    The window is the last `max_years` years of the store; the symbols are the equities
    with the most bars in it (ties by ticker), so a capped universe prefers long, liquid
    histories and is the same on every run.
    """
    store = path if isinstance(path, Store) else Store.open(path)
    last = store.last_date
    if last is None:
        raise DataError(f"the store at {str(store.root)!r} is empty")
    start = last - pd.DateOffset(years=max_years) + pd.Timedelta(days=1)
    lo = _to_day(start, "start")
    counts: dict[str, int] = {}
    for year, part in store.partitions.items():
        if _year_start(year + 1) <= lo:
            continue
        # Rows per symbol in the window, pro rata for the year that straddles its start.
        share = 1.0 if _year_start(year) >= lo else float(np.mean(part.dates >= lo)) if len(part.dates) else 0.0
        for sym, rows, last_day in zip(part.symbols, part.sym_rows, part.sym_last):
            if last_day >= lo:
                counts[sym] = counts.get(sym, 0) + rows * share
    equities = [s for s in store.symbols("equity") if s in counts]
    if not equities:
        raise DataError(f"no equity in the store at {str(store.root)!r} has bars since {start.date()}")
    ranked = sorted(equities, key=lambda s: (-round(counts[s], 6), s))[:max_symbols]
    return sorted(ranked), start

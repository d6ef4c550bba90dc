"""Aligned panels against an independent pandas reference; memory budget before allocation."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import pitools as pt
from pitools.data.universe import select_universe
from pitools.data.store import Store
from pitools.errors import DataError, MemoryBudgetError

FIELDS = ("open", "high", "low", "close", "volume")


def reference_frame(root) -> pd.DataFrame:
    """Every bar of the store, read with plain pyarrow from the files the manifest lists."""
    store = Store.open(root)
    frames = [pq.read_table(root / p.file).to_pandas() for p in store.partitions.values()]
    df = pd.concat(frames, ignore_index=True)
    df["symbol"] = df["symbol"].astype(str)
    df["date"] = pd.to_datetime(df["date"])
    return df


def reference_panel(root, symbols, start=None, end=None, field="close") -> pd.DataFrame:
    """The naive pivot: union of the store's dates within the symbols' life and [start, end]."""
    df = reference_frame(root)
    mine = df[df.symbol.isin(symbols)]
    lo, hi = mine.date.min(), mine.date.max()
    if start is not None:
        lo = max(lo, pd.Timestamp(start))
    if end is not None:
        hi = min(hi, pd.Timestamp(end))
    dates = pd.DatetimeIndex(sorted(df.date[(df.date >= lo) & (df.date <= hi)].unique()))
    wide = mine.pivot(index="date", columns="symbol", values=field)
    return wide.reindex(index=dates, columns=list(symbols))


def test_full_panel_equals_the_naive_pivot(long_store):
    panel = pt.load_panel(long_store)
    store = Store.open(long_store)
    assert panel.symbols == store.symbols("equity")  # indexes are not part of the universe
    for field in FIELDS:
        ref = reference_panel(long_store, panel.symbols, field=field)
        got = panel.field(field)
        assert got.dtype == np.float32 and got.flags.f_contiguous
        assert panel.dates.equals(ref.index)
        np.testing.assert_array_equal(np.isnan(got), ref.isna().to_numpy())
        np.testing.assert_allclose(got, ref.to_numpy(np.float32), rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("start,end", [(None, None), ("2010-03-01", "2012-06-30"), ("2020-01-01", None)])
def test_subset_range_and_order(long_store, start, end):
    syms = Store.open(long_store).symbols()
    pick = [syms[7], syms[2], "^VIX", syms[40]]  # any order, an index series included on request
    panel = pt.load_panel(long_store, symbols=pick, start=start, end=end, fields=("close", "volume"),
                          dtype=np.float64)
    assert panel.symbols == pick and panel.fields == ("close", "volume")
    for field in ("close", "volume"):
        ref = reference_panel(long_store, pick, start, end, field)
        assert panel.dates.equals(ref.index)
        np.testing.assert_array_equal(panel.field(field), ref.to_numpy(), strict=False)
    with pytest.raises(DataError, match="'open' is not in this panel.*fields="):
        panel.open


def test_nan_where_a_symbol_has_no_bar(long_store):
    store = Store.open(long_store)
    late = [s for s in store.symbols() if store.symbol_info(s).first > store.first_date]
    assert late, "the fixture has late listings"
    panel = pt.load_panel(long_store, symbols=late[:3], fields=("close",))
    for j, s in enumerate(late[:3]):
        first = store.symbol_info(s).first
        col = panel.close[:, j]
        assert np.isnan(col[panel.dates < first]).all()
        assert np.isfinite(col[panel.dates == first]).all()


def test_estimate_is_known_before_loading_and_exact(long_store):
    est = pt.estimate_panel(long_store, fields=("close", "high"), start="2015-01-01")
    panel = pt.load_panel(long_store, fields=("close", "high"), start="2015-01-01")
    assert est.panel_bytes == panel.nbytes == panel.n_bars * panel.n_symbols * 2 * 4
    assert est.n_bars == panel.n_bars and est.peak_bytes > est.panel_bytes


def test_memory_budget_refuses_before_allocating(long_store):
    est = pt.estimate_panel(long_store)
    budget = est.panel_bytes / 2**20 / 4
    tracemalloc.start()
    try:
        with pytest.raises(MemoryBudgetError) as err:
            pt.load_panel(long_store, memory_budget_mb=budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < est.panel_bytes / 4, f"allocated {peak} bytes before refusing"
    msg = str(err.value)
    assert f"{est.panel_bytes / 2**20:.1f} MB" in msg and repr(budget) in msg
    assert "fewer symbols" in msg and "shorter" in msg and "fields=" in msg
    assert isinstance(err.value, MemoryError) and isinstance(err.value, pt.PitoolsError)
    # Within the budget it loads.
    assert pt.load_panel(long_store, memory_budget_mb=est.peak_bytes / 2**20 + 1).nbytes == est.panel_bytes


@pytest.mark.parametrize("kwargs,fragment", [
    ({"symbols": ["AAPLX"]}, "`symbols`: 'AAPLX' is not in the store"),
    ({"symbols": []}, "`symbols` is empty"),
    ({"fields": ("close", "adj")}, "'adj' is not a bar field"),
    ({"fields": ("clsoe",)}, "Did you mean 'close'"),
    ({"start": "2020-01-01", "end": "2019-01-01"}, "before `start`"),
    ({"start": "yesterday-ish"}, "`start` = 'yesterday-ish' is not a date"),
    ({"memory_budget_mb": -5}, "`memory_budget_mb` = -5"),
    ({"dtype": np.int32}, "`dtype`"),
])
def test_bad_requests_are_named(demo_store, kwargs, fragment):
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        pt.load_panel(demo_store, **kwargs)


def test_close_matches_are_suggested(demo_store):
    sym = Store.open(demo_store).symbols()[0]
    typo = sym[:-1] + ("A" if sym[-1] != "A" else "B")
    with pytest.raises(DataError, match="Did you mean"):
        pt.load_panel(demo_store, symbols=[typo])


def test_load_series_and_select_universe(long_store):
    vix = pt.load_series(long_store, "^VIX")
    assert vix.name == "^VIX" and vix.notna().all() and vix.index.is_monotonic_increasing
    syms, start = select_universe(long_store, max_symbols=10, max_years=5)
    store = Store.open(long_store)
    assert len(syms) == 10 and syms == sorted(syms)
    assert start == store.last_date - pd.DateOffset(years=5) + pd.Timedelta(days=1)
    # The chosen ones have at least as many bars in the window as any left out.
    df = reference_frame(long_store)
    counts = df[(df.date >= start) & ~df.symbol.str.startswith("^")].groupby("symbol").size()
    assert counts[syms].min() >= counts.drop(syms).max() - 1
    assert select_universe(long_store, 10, 5) == (syms, start)


def test_repr_and_frame(demo_store):
    panel = pt.load_panel(demo_store, fields=("close",))
    assert "bars" in repr(panel) and "MB" in repr(panel)
    frame = panel.to_frame("close")
    assert frame.shape == panel.shape and list(frame.columns) == panel.symbols

"""Aligned panels: the store's bars as (n_bars × n_symbols) arrays, one per field.

Arrays are Fortran-ordered, so each symbol's history is contiguous: the backtest kernels
walk one symbol over time. Prices are float32 by default (7 significant digits are far
below any tick size that matters here) which halves memory; kernels accumulate in float64.

The size of a panel is known from the store's manifest before anything is read or
allocated, so a request that would not fit the memory budget fails at once with
:class:`~pitools.errors.MemoryBudgetError` instead of swapping the box to death.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pitools.errors import DataError, MemoryBudgetError, StoreError, did_you_mean
from pitools.data.store import FIELDS, Store
from pitools.data.store_format import _EPOCH

__all__ = ["Panel", "PanelEstimate", "load_panel", "estimate_panel", "load_series"]

_MB = 1024 * 1024
_FIXED_OVERHEAD = 48 * _MB


class Panel:
    """Bars of many symbols aligned on one session index.

    Attributes
    ----------
    dates : pandas.DatetimeIndex
        The sessions (rows).
    symbols : list of str
        The symbols (columns).
    open, high, low, close, volume : numpy.ndarray
        ``(n_bars, n_symbols)`` arrays, NaN where a symbol has no bar (before it listed,
        after it stopped trading, or a missing day). Only the loaded `fields` exist.
    nbytes : int
        Bytes held by the arrays.
    """

    __slots__ = ("dates", "symbols", "_arrays", "meta", "_symbol_index")

    def __init__(self, dates: pd.DatetimeIndex, symbols: Sequence[str], arrays: dict[str, np.ndarray],
                 meta: dict | None = None):
        shape = (len(dates), len(symbols))
        for name, arr in arrays.items():
            if arr.shape != shape:
                raise DataError(f"field {name!r} has shape {arr.shape}, expected {shape} (dates × symbols)")
        self.dates = pd.DatetimeIndex(dates, name="date")
        self.symbols = list(symbols)
        self._arrays = dict(arrays)
        self.meta = dict(meta or {})
        self._symbol_index = None

    @property
    def symbol_index(self) -> pd.Index:
        """The symbols as a pandas Index named ``symbol`` (built once: results reuse it)."""
        if self._symbol_index is None:
            self._symbol_index = pd.Index(self.symbols, name="symbol")
        return self._symbol_index

    def field(self, name: str) -> np.ndarray:
        """The array of field `name`."""
        try:
            return self._arrays[name]
        except KeyError:
            raise DataError(f"field {name!r} is not in this panel (loaded: {', '.join(self._arrays)}). "
                            f"Load it with `load_panel(..., fields=(..., {name!r}))`.") from None

    open = property(lambda self: self.field("open"))
    high = property(lambda self: self.field("high"))
    low = property(lambda self: self.field("low"))
    close = property(lambda self: self.field("close"))
    volume = property(lambda self: self.field("volume"))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self._arrays)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.dates), len(self.symbols))

    @property
    def n_bars(self) -> int:
        return len(self.dates)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self._arrays.values()))

    def to_frame(self, field: str = "close") -> pd.DataFrame:
        """One field as a DataFrame (dates × symbols). Copies; for inspection, not kernels."""
        return pd.DataFrame(self.field(field), index=self.dates, columns=self.symbols)

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def __repr__(self) -> str:
        if not len(self.dates):
            return f"<Panel empty, fields={self.fields}>"
        return (f"<Panel {self.n_bars} bars × {self.n_symbols} symbols, {self.dates[0].date()}.."
                f"{self.dates[-1].date()}, fields={','.join(self.fields)}, {self.nbytes / _MB:.1f} MB>")


@dataclass(frozen=True)
class PanelEstimate:
    """What a :func:`load_panel` call will allocate, known from the manifest alone."""

    n_bars: int
    n_symbols: int
    fields: tuple[str, ...]
    itemsize: int
    read_buffer_bytes: int  # decode buffers of the loading threads + fixed overhead

    @property
    def panel_bytes(self) -> int:
        return self.n_bars * self.n_symbols * len(self.fields) * self.itemsize

    @property
    def peak_bytes(self) -> int:
        return self.panel_bytes + self.read_buffer_bytes

    def __str__(self) -> str:
        return (f"{self.n_symbols} symbols × {self.n_bars} bars × {len(self.fields)} fields × "
                f"{self.itemsize} B = {self.panel_bytes / _MB:.1f} MB "
                f"(+ {self.read_buffer_bytes / _MB:.1f} MB to read it)")


@dataclass(frozen=True)
class _Request:
    store: Store
    symbols: list[str]
    fields: tuple[str, ...]
    days: np.ndarray  # int64 days of the rows
    years: list[int]
    dtype: np.dtype
    estimate: PanelEstimate


def _resolve_symbols(store: Store, symbols) -> list[str]:
    available = store.symbols(kind=None)
    if symbols is None:
        out = store.symbols(kind="equity")
        if not out:
            raise DataError(f"the store at {str(store.root)!r} holds no equity symbols; "
                            "ingest some bars or build the demo universe")
        return out
    if isinstance(symbols, str):
        symbols = [symbols]
    out, seen = [], set()
    known = set(available)
    for s in symbols:
        if not isinstance(s, str):
            raise DataError(f"`symbols` must be strings, got {s!r}")
        if s not in known:
            raise DataError(f"`symbols`: {s!r} is not in the store at {str(store.root)!r}."
                            f"{did_you_mean(s, available)} It holds {len(available)} symbols; "
                            "see `Store.open(path).symbols()`.")
        if s not in seen:
            seen.add(s)
            out.append(s)
    if not out:
        raise DataError("`symbols` is empty; pass None for the whole universe or at least one symbol")
    return out


def _resolve_fields(fields) -> tuple[str, ...]:
    if isinstance(fields, str):
        fields = (fields,)
    out = tuple(dict.fromkeys(fields))
    for f in out:
        if f not in FIELDS:
            raise DataError(f"`fields`: {f!r} is not a bar field.{did_you_mean(f, FIELDS)} "
                            f"Allowed: {', '.join(FIELDS)}")
    if not out:
        raise DataError(f"`fields` is empty; choose from {', '.join(FIELDS)}")
    return out


def _to_day(value, name: str) -> int | None:
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataError(f"`{name}` = {value!r} is not a date (use 'YYYY-MM-DD')") from None
    if ts is pd.NaT:
        raise DataError(f"`{name}` = {value!r} is not a date (use 'YYYY-MM-DD')")
    return int((np.datetime64(ts.date(), "D") - _EPOCH).astype(np.int64))


def _plan(path, symbols, start, end, fields, dtype) -> _Request:
    store = path if isinstance(path, Store) else Store.open(path)
    syms = _resolve_symbols(store, symbols)
    flds = _resolve_fields(fields)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise DataError(f"`dtype` = {dtype!s} must be float32 or float64")
    lo, hi = _to_day(start, "start"), _to_day(end, "end")
    if lo is not None and hi is not None and hi < lo:
        raise DataError(f"`end` = {end!r} is before `start` = {start!r}")
    # Rows: the store's sessions between the selected symbols' first and last bar, within [start, end].
    infos = [store.symbol_info(s) for s in syms]
    first = min(i.first_day for i in infos)
    last = max(i.last_day for i in infos)
    lo = first if lo is None else max(lo, first)
    hi = last if hi is None else min(hi, last)
    years = [y for y in sorted(store.partitions) if _year_start(y) <= hi and _year_start(y + 1) > lo]
    wanted = set(syms)
    day_sets, read_rows = [], 0
    for y in years:
        part = store.partitions[y]
        d = part.dates
        day_sets.append(d[(d >= lo) & (d <= hi)])
        for i in store.row_groups_for(y, wanted):
            read_rows = max(read_rows, part.row_groups[i][2])
    days = np.unique(np.concatenate(day_sets)) if day_sets else np.zeros(0, np.int64)
    # Per loading thread, a decoded row group twice over (arrow buffers and numpy copies:
    # symbol codes, dates, float64 per field, index arrays), plus a fixed allowance for the
    # manifest objects and allocator slack (measured by benchmarks/bench_load.py).
    per_thread = 2 * read_rows * (4 + 4 + 8 * len(flds) + 24)
    read_buffer = _load_threads(len(years)) * per_thread + _FIXED_OVERHEAD
    est = PanelEstimate(len(days), len(syms), flds, dtype.itemsize, read_buffer)
    return _Request(store, syms, flds, days, years, dtype, est)


def _load_threads(n_years: int) -> int:
    return max(1, min(4, os.cpu_count() or 1, n_years))


def _year_start(year: int) -> int:
    return int((np.datetime64(f"{year:04d}-01-01", "D") - _EPOCH).astype(np.int64))


def estimate_panel(path, symbols=None, start=None, end=None, fields=FIELDS, dtype=np.float32) -> PanelEstimate:
    """The size of the panel :func:`load_panel` would build, from store metadata only.

    Example
    -------
    >>> est = estimate_panel("data/store", fields=("close",))
    >>> est.panel_bytes == 8 * 753 * 4    # 8 symbols x 753 sessions of float32 closes
    True
    """
    return _plan(path, symbols, start, end, fields, dtype).estimate


def load_panel(path: str | os.PathLike | Store, symbols: Iterable[str] | None = None, start=None, end=None,
               fields: Sequence[str] = FIELDS, memory_budget_mb: float | None = None,
               dtype=np.float32) -> Panel:
    """Load bars from the store at `path` as an aligned :class:`Panel`.

    Parameters
    ----------
    path : path or Store
        The bar store (``<data_dir>/store``).
    symbols : list of str, optional
        Symbols to load, in this column order; default all equities (index series such as
        ``^GSPC`` load only when named).
    start, end : date-like, optional
        Inclusive date range; default everything.
    fields : sequence of str
        Any of ``open, high, low, close, volume``.
    memory_budget_mb : float, optional
        Refuse (:class:`MemoryBudgetError`, before allocating) if the panel plus its read
        buffer would exceed this many MB.
    dtype : float32 or float64
        Array dtype; float32 halves memory.

    Returns
    -------
    Panel
        Rows are the store's sessions between the selected symbols' first and last bar;
        NaN where a symbol has no bar.

    Example
    -------
    >>> import pitools as pt
    >>> store = pt.make_demo_store("demo/store", n_symbols=5, years=1, seed=7, end="2026-11-20")
    >>> panel = pt.load_panel("demo/store", fields=("close",))
    >>> panel.close.shape
    (251, 5)
    """
    args = (path, symbols, start, end, fields, memory_budget_mb, dtype)
    try:
        return _load(*args)
    except StoreError:
        if isinstance(path, Store):
            raise
    # A writer may have committed between reading the manifest and the files: read it
    # again, once (outside the except block, so the first attempt's arrays are freed).
    return _load(*args)


def _load(path, symbols, start, end, fields, memory_budget_mb, dtype) -> Panel:
    req = _plan(path, symbols, start, end, fields, dtype)
    est = req.estimate
    if est.n_bars == 0:
        raise DataError(f"no bars for {', '.join(req.symbols[:5])}{'…' if len(req.symbols) > 5 else ''} "
                        f"between `start` = {start!r} and `end` = {end!r}; the store holds "
                        f"{req.store.first_date.date()}..{req.store.last_date.date()}")
    if memory_budget_mb is not None:
        if not (isinstance(memory_budget_mb, (int, float)) and memory_budget_mb > 0):
            raise DataError(f"`memory_budget_mb` = {memory_budget_mb!r} must be a positive number of MB")
        if est.peak_bytes > memory_budget_mb * _MB:
            raise MemoryBudgetError(
                f"loading {est} needs ≈ {est.peak_bytes / _MB:.1f} MB, over `memory_budget_mb` = "
                f"{memory_budget_mb!r}. Load fewer symbols (`symbols=` / --set max_symbols=N), a shorter "
                f"range (`start=`/`end=` / --set max_years=N), fewer fields (`fields=('close',)`), "
                "or raise the budget."
            )
    n_bars, n_syms = est.n_bars, est.n_symbols
    arrays = {f: np.full((n_bars, n_syms), np.nan, dtype=req.dtype, order="F") for f in req.fields}
    _fill(req, arrays)
    dates = pd.DatetimeIndex((_EPOCH + req.days.astype("timedelta64[D]")).astype("datetime64[ns]"))
    meta = {s: req.store.meta[s] for s in req.symbols if s in req.store.meta}
    return Panel(dates, req.symbols, arrays, meta={"symbols": meta, "store": str(req.store.root),
                                                   "estimate": est})


def _fill(req: _Request, arrays: dict[str, np.ndarray]) -> None:
    """Scatter the row groups that hold the request into the preallocated arrays.

    Row groups decode in a few threads (pyarrow releases the GIL while decoding); each
    (symbol, date) cell is written by exactly one row group, so threads never collide.
    """
    col_of = {s: j for j, s in enumerate(req.symbols)}
    wanted = None if len(req.symbols) == len(req.store.symbols(kind=None)) else set(req.symbols)
    lo, hi = int(req.days[0]), int(req.days[-1])
    n_bars = len(req.days)
    row_of_day = np.full(hi - lo + 1, -1, dtype=np.int64)  # O(1) date → row lookup
    row_of_day[req.days - lo] = np.arange(n_bars)
    flat = {f: a.reshape(-1, order="F") for f, a in arrays.items()}  # views: index = col * n_bars + row

    def scatter(table: pa.Table) -> None:
        sym = table.column("symbol").combine_chunks()
        code_to_col = np.array([col_of.get(s, -1) for s in sym.dictionary.to_pylist()], dtype=np.int64)
        cols = code_to_col[sym.indices.to_numpy(zero_copy_only=False)]
        days = table.column("date").combine_chunks().cast(pa.int32()).to_numpy().astype(np.int64)
        keep = (cols >= 0) & (days >= lo) & (days <= hi)
        everything = bool(keep.all())
        if not everything:
            cols, days = cols[keep], days[keep]
        index = cols * n_bars + row_of_day[days - lo]
        for f in req.fields:
            values = table.column(f).combine_chunks().to_numpy()
            flat[f][index] = values if everything else values[keep]

    arrow_pool = pa.default_memory_pool()

    def load_year(year: int) -> None:
        for table in req.store.iter_row_groups(year, wanted, req.fields):
            scatter(table)
            del table
        # mimalloc keeps freed pages per thread; hand them back so RSS tracks the panel.
        arrow_pool.release_unused()

    n_threads = _load_threads(len(req.years))
    if n_threads == 1:
        for year in req.years:
            load_year(year)
        return
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="pitools-load") as pool:
        for future in [pool.submit(load_year, y) for y in req.years]:
            future.result()


def load_series(path: str | os.PathLike | Store, symbol: str, field: str = "close", start=None, end=None) -> pd.Series:
    """One symbol's field as a Series over its own bars — for index series like ``^GSPC``, ``^VIX``.

    Example
    -------
    >>> vix = load_series("data/store", "^VIX")
    """
    panel = load_panel(path, symbols=[symbol], start=start, end=end, fields=(field,), dtype=np.float64)
    s = pd.Series(panel.field(field)[:, 0], index=panel.dates, name=symbol)
    return s.dropna()

"""A deterministic synthetic equity universe that behaves like the real thing.

What makes it look real:

* real NYSE sessions (holidays and closures included) from the trading calendar;
* a market factor with regimes (calm, volatile, crisis), GARCH(1,1) volatility clustering
  and fat-tailed shocks; 11 sector factors; per-symbol beta, sector loading, idiosyncratic
  volatility and drift;
* OHLC consistent with close (low <= open, close <= high), prices in cents, volume that
  rises with the size of the move;
* ragged histories: symbols list late, some stop trading, a few days go missing (halts);
* an S&P 500-like index (``^GSPC``) and a VIX-like volatility index (``^VIX``) driven by
  the same market factor, for the regime model.

Determinism: every symbol has its own random streams keyed by (seed, symbol number), and
every path is drawn forward from a fixed epoch (1980-01-02). So the same seed gives the
same bytes, and a bar on a given date is the same whatever ``years``, ``end`` or
``n_symbols`` were asked for — a longer or later demo extends a shorter one.

Provenance: the store's manifest says ``"source": "demo"``, so real files are not imported
into it by mistake, and the demo is not written over imported bars without ``force``
(:mod:`pitools.data.provenance`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pitools.errors import DataError, StoreExistsError
from pitools.data.calendar import last_closed_session, sessions
from pitools.data.provenance import DEMO, REAL, check_demo_over, source_of
from pitools.data.store import FIELDS, Store
from pitools.data.store_format import _EPOCH

__all__ = ["make_demo_store", "SECTORS", "demo_ticker", "INDEX_SYMBOLS"]

log = logging.getLogger(__name__)

EPOCH = pd.Timestamp("1980-01-02")
MAX_YEARS = 45
SECTORS = ("Technology", "Financials", "Health Care", "Consumer Discretionary", "Industrials",
           "Communication Services", "Consumer Staples", "Energy", "Utilities", "Real Estate", "Materials")
INDEX_SYMBOLS = ("^GSPC", "^VIX")
_CHUNK = 128  # symbols generated at once: bounds memory to ~100 MB at 45 years

# Market regimes: daily drift, long-run daily volatility, and the daily transition matrix.
_REGIME_MU = np.array([0.0006, 0.0000, -0.0025])
_REGIME_VOL = np.array([0.0070, 0.0130, 0.0300])
_REGIME_P = np.array([[0.995, 0.005, 0.000],
                      [0.010, 0.985, 0.005],
                      [0.000, 0.030, 0.970]])
_GARCH_A, _GARCH_B = 0.08, 0.88
_SIGMA_REF = 0.0105  # typical daily market vol; a constant, so a bar never depends on the window
_REVERT = np.log(2) / (3 * 252)  # a half-life of three years of sessions


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def demo_ticker(i: int) -> str:
    """The ticker of demo symbol number `i`: a fixed bijection onto 3- (then 4-) letter names."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    width, space, offset = 3, 26**3, i
    if i >= space:
        width, offset, space = 4, i - space, 26**4
    code = (offset * 7919 + 1013) % space  # 7919 is prime, coprime with 26**k: a bijection
    out = []
    for _ in range(width):
        code, r = divmod(code, 26)
        out.append(letters[r])
    return "".join(reversed(out))


@dataclass(frozen=True)
class _Market:
    regime: np.ndarray  # int per session
    sigma: np.ndarray  # conditional daily vol
    ret: np.ndarray  # market log return
    sectors: np.ndarray  # (T, 11) sector log returns


def _market(seed: int, n: int) -> _Market:
    rng = _stream(seed, 0)
    z = rng.standard_normal((n, 2))  # shock, fat-tail selector
    jump = z[:, 1] > 1.75  # ≈ 4% of days draw a larger shock: fat tails
    shock = z[:, 0] * np.where(jump, 2.2, 1.0)
    trans = _stream(seed, 1).random(n)
    regime = np.empty(n, dtype=np.int64)
    sigma = np.empty(n)
    ret = np.empty(n)
    cum_p = np.cumsum(_REGIME_P, axis=1)
    omega = _REGIME_VOL**2 * (1 - _GARCH_A - _GARCH_B)
    state, var, eps = 0, _REGIME_VOL[0] ** 2, 0.0
    for t in range(n):
        state = int(np.searchsorted(cum_p[state], trans[t], side="right"))
        state = min(state, 2)
        var = omega[state] + _GARCH_A * eps * eps + _GARCH_B * var
        s = np.sqrt(var)
        eps = s * shock[t]
        regime[t], sigma[t], ret[t] = state, s, _REGIME_MU[state] + eps
    level = sigma / _SIGMA_REF
    sectors = _stream(seed, 2).standard_normal((n, len(SECTORS))) * 0.005 * np.sqrt(level)[:, None]
    return _Market(regime, sigma, ret, sectors)


@dataclass(frozen=True)
class _Symbol:
    number: int
    ticker: str
    sector: int
    beta: float
    loading: float
    idio: float  # daily idiosyncratic vol
    alpha: float
    price0: float
    volume0: float
    listed: int  # session index of the first bar
    delisted: int  # session index after the last bar (n if still trading)


def _symbol(seed: int, i: int, all_days: np.ndarray) -> _Symbol:
    rng = _stream(seed, 3, i)
    a = rng.random(12)
    n = len(all_days)
    epoch_day = all_days[0]
    list_day = epoch_day if a[0] < 0.55 else epoch_day + int(a[1] * 55 * 365.25)
    listed = int(np.searchsorted(all_days, list_day))
    delisted = n
    if a[2] < 0.15:
        stop_day = list_day + int((1 + a[3] * 24) * 365.25)
        delisted = int(np.searchsorted(all_days, stop_day))
    return _Symbol(
        number=i, ticker=demo_ticker(i), sector=int(a[4] * len(SECTORS)),
        beta=0.5 + 1.2 * a[5], loading=0.5 + 0.7 * a[6], idio=(0.12 + 0.28 * a[7]) / np.sqrt(252),
        alpha=(a[8] - 0.45) * 0.0006, price0=float(np.exp(np.log(3) + a[9] * np.log(27))),
        volume0=float(np.exp(np.log(2e5) + a[10] * np.log(100))), listed=listed, delisted=delisted,
    )


def _round_prices(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 1.0, np.round(x, 2), np.round(x, 4))


def _paths(seed: int, syms: list[_Symbol], mkt: _Market, w0: int) -> dict[str, np.ndarray]:
    """OHLCV of `syms` from session `w0` on, NaN outside each symbol's life; shape (T - w0, k)."""
    n, k = len(mkt.ret), len(syms)
    z = np.zeros((n, k, 6))
    alive = np.zeros((n, k), dtype=bool)
    for j, s in enumerate(syms):
        # Drawn forward from the listing session: a later `end` only appends draws.
        z[s.listed:, j, :] = _stream(seed, 4, s.number).standard_normal((n - s.listed, 6))
        alive[s.listed:s.delisted, j] = True
    beta = np.array([s.beta for s in syms])
    idio = np.array([s.idio for s in syms])
    level = np.sqrt(mkt.sigma / _SIGMA_REF)[:, None]
    ret = (np.array([s.alpha for s in syms])[None, :] + beta[None, :] * mkt.ret[:, None]
           + np.array([s.loading for s in syms])[None, :] * mkt.sectors[:, [s.sector for s in syms]]
           + idio[None, :] * level * z[:, :, 0])
    ret[~alive] = 0.0
    # Log price reverts to the symbol's own level with a ~3-year half-life: drift and beta
    # compound over 45 years into $1M shares otherwise. Too slow to be worth trading.
    dev = np.empty_like(ret)
    prev = np.zeros(k)
    keep = 1.0 - _REVERT
    for t in range(n):
        prev = prev * keep + ret[t]
        dev[t] = prev
    ret = np.diff(dev, axis=0, prepend=0.0)
    close = np.array([s.price0 for s in syms])[None, :] * np.exp(dev)
    day_vol = np.sqrt((beta[None, :] * mkt.sigma[:, None]) ** 2 + (idio[None, :] * level) ** 2)
    # The open is the previous close moved by 30 % of the day's return (the overnight gap).
    open_ = close * np.exp(-ret + 0.3 * ret + 0.2 * day_vol * z[:, :, 1])
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = top * np.exp(np.abs(z[:, :, 2]) * 0.45 * day_vol)
    low = bottom * np.exp(-np.abs(z[:, :, 3]) * 0.45 * day_vol)
    volume = np.round(np.array([s.volume0 for s in syms])[None, :] * np.exp(0.35 * z[:, :, 4])
                      * (1.0 + 1.5 * np.abs(ret) / day_vol))
    halted = z[:, :, 5] > 3.35  # ≈ 0.04% of days missing: trading halts, bad prints
    missing = ~alive | halted
    out = {}
    close_r = _round_prices(close)
    open_r = _round_prices(open_)
    out["open"] = open_r
    out["close"] = close_r
    out["high"] = np.maximum(np.maximum(np.ceil(high * 100) / 100, open_r), close_r)
    out["low"] = np.maximum(np.minimum(np.minimum(np.floor(low * 100) / 100, open_r), close_r), 0.0001)
    out["volume"] = volume
    for f in FIELDS:
        out[f] = np.where(missing, np.nan, out[f])[w0:]
    return out


def _indexes(seed: int, mkt: _Market, w0: int) -> dict[str, dict[str, np.ndarray]]:
    rng = _stream(seed, 5)
    n = len(mkt.ret)
    z = rng.standard_normal((n, 6))
    close = 107.0 * np.exp(np.cumsum(mkt.ret))
    open_ = close * np.exp(-mkt.ret + 0.2 * mkt.ret + 0.1 * mkt.sigma * z[:, 0])
    high = np.maximum(open_, close) * np.exp(np.abs(z[:, 1]) * 0.4 * mkt.sigma)
    low = np.minimum(open_, close) * np.exp(-np.abs(z[:, 2]) * 0.4 * mkt.sigma)
    spx = {"open": np.round(open_, 2), "close": np.round(close, 2), "high": np.ceil(high * 100) / 100,
           "low": np.floor(low * 100) / 100,
           "volume": np.round(1.5e9 * np.exp(0.25 * z[:, 3]) * (1 + np.abs(mkt.ret) / mkt.sigma))}
    # Implied vol runs above realized (a risk premium) and reacts to the regime.
    vix_close = np.clip(100 * np.sqrt(252) * mkt.sigma * 1.15 * np.exp(0.06 * z[:, 4]) + 1.5, 9.0, 95.0)
    vix_open = np.clip(np.concatenate([[vix_close[0]], vix_close[:-1]]) * np.exp(0.03 * z[:, 5]), 9.0, 95.0)
    vix = {"open": np.round(vix_open, 2), "close": np.round(vix_close, 2),
           "high": np.round(np.maximum(vix_open, vix_close) * (1 + 0.04 * np.abs(z[:, 1])), 2),
           "low": np.round(np.minimum(vix_open, vix_close) * (1 - 0.04 * np.abs(z[:, 2])), 2),
           "volume": np.zeros(n)}
    for series in (spx, vix):
        series["high"] = np.maximum(series["high"], np.maximum(series["open"], series["close"]))
        series["low"] = np.minimum(series["low"], np.minimum(series["open"], series["close"]))
    return {"^GSPC": {f: v[w0:] for f, v in spx.items()}, "^VIX": {f: v[w0:] for f, v in vix.items()}}


def _check_args(n_symbols, years, seed) -> None:
    if isinstance(n_symbols, bool) or not isinstance(n_symbols, (int, np.integer)) or not 1 <= n_symbols <= 100_000:
        raise DataError(f"`n_symbols` = {n_symbols!r} must be an integer from 1 to 100000")
    if isinstance(years, bool) or not isinstance(years, (int, np.integer)) or not 1 <= years <= MAX_YEARS:
        raise DataError(f"`years` = {years!r} must be an integer from 1 to {MAX_YEARS}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise DataError(f"`seed` = {seed!r} must be a non-negative integer")


def make_demo_store(path: str | os.PathLike, n_symbols: int = 100, years: int = 3, seed: int = 7,
                    end=None, force: bool = False, progress=None) -> Store:
    """Write a deterministic synthetic universe of `n_symbols` × `years` into a store at `path`.

    Parameters
    ----------
    path : path
        The store folder. An existing store is refused unless ``force=True`` (it is then
        replaced in one transaction: a crash leaves the old store intact); one that holds
        imported bars is refused with :class:`~pitools.errors.MixedDataError`, saying so.
    n_symbols : int
        Equity symbols with at least 20 bars in the window (plus ``^GSPC`` and ``^VIX``).
    years : int
        Calendar years of history ending at `end`.
    seed : int
        Same seed (and `end`), same bytes.
    end : date-like, optional
        Last session; default the last NYSE session that has closed.
    progress : callable, optional
        Called with (symbols done, symbols total).

    Example
    -------
    >>> import pitools as pt
    >>> store = pt.make_demo_store("demo/store", n_symbols=20, years=2, seed=7, end="2026-11-20")
    >>> len(store.symbols()), store.symbols("index"), str(store.last_date.date())
    (20, ['^GSPC', '^VIX'], '2026-11-20')
    """
    _check_args(n_symbols, years, seed)
    root = os.fspath(path)
    if Store.exists(root) and not force:
        have = Store.open(root)
        check_demo_over(have)
        raise StoreExistsError(f"a store already exists at {root!r} ({len(have.symbols())} symbols); "
                         "pass force=True (--force) to replace it, or choose another folder")
    latest = last_closed_session()
    if end is None:
        end_ts = latest
    else:
        try:
            end_ts = pd.Timestamp(end).normalize()
        except (ValueError, TypeError):
            raise DataError(f"`end` = {end!r} is not a date (use 'YYYY-MM-DD')") from None
        if end_ts is pd.NaT or end_ts > latest:
            raise DataError(f"`end` = {end!r} must be a date up to the last closed NYSE session "
                            f"({latest.date()}); the demo never invents future bars")
    start_ts = end_ts - pd.DateOffset(years=years) + pd.Timedelta(days=1)
    if start_ts < EPOCH:
        raise DataError(f"`years` = {years!r} with `end` = {str(end_ts.date())!r} starts before the demo "
                        f"epoch {EPOCH.date()}")
    all_sessions = sessions(EPOCH, end_ts)
    all_days = (all_sessions.values.astype("datetime64[D]") - _EPOCH).astype(np.int64)
    w0 = int(np.searchsorted(all_sessions, start_ts))
    if w0 >= len(all_sessions):
        raise DataError(f"no NYSE session between {start_ts.date()} and {end_ts.date()}")
    window_days = all_days[w0:]
    mkt = _market(seed, len(all_days))

    # Pick the first symbol numbers that have at least 20 bars in the window.
    chosen: list[_Symbol] = []
    i = 0
    while len(chosen) < n_symbols:
        s = _symbol(seed, i, all_days)
        if min(s.delisted, len(all_days)) - max(s.listed, w0) >= 20:
            chosen.append(s)
        i += 1
    chosen.sort(key=lambda s: s.ticker)  # files are sorted by symbol

    years_in = sorted(set(pd.DatetimeIndex(all_sessions[w0:]).year))
    year_of = pd.DatetimeIndex(all_sessions[w0:]).year.to_numpy()
    bounds = {y: (int(np.searchsorted(year_of, y)), int(np.searchsorted(year_of, y, side="right")))
              for y in years_in}
    store = Store.create(root)
    if source_of(store) in REAL:  # forced: the rebuild drops them (the source files stay where they are)
        log.warning('replacing the store %s, which held imported bars ("source": "%s"), with the demo',
                    root, source_of(store))
    with store.writer() as w:
        w.clear()
        for y in years_in:
            w.begin_year(y)

        def emit(tickers: list[str], data: dict[str, np.ndarray]) -> None:
            for y, (a, b) in bounds.items():
                block = {f: data[f][a:b] for f in FIELDS}
                present = ~np.isnan(block["close"])  # (rows, k)
                cols, rows = np.nonzero(present.T)  # symbol-major order: sorted by (symbol, date)
                if not len(cols):
                    continue
                w.add_sorted(y, np.asarray(tickers, dtype=object)[cols], window_days[a:b][rows],
                             {f: block[f].T[present.T] for f in FIELDS})

        for lo in range(0, len(chosen), _CHUNK):
            batch = chosen[lo:lo + _CHUNK]
            emit([s.ticker for s in batch], _paths(seed, batch, mkt, w0))
            if progress is not None:
                progress(min(lo + _CHUNK, len(chosen)), len(chosen))
        idx = _indexes(seed, mkt, w0)
        for name in INDEX_SYMBOLS:  # '^' sorts after letters: they come last, as the files need
            emit([name], {f: idx[name][f][:, None] for f in FIELDS})
        for s in chosen:
            w.set_meta(s.ticker, sector=SECTORS[s.sector], beta=round(s.beta, 3))
        w.set_meta("^GSPC", name="S&P 500-like index (synthetic)")
        w.set_meta("^VIX", name="VIX-like volatility index (synthetic)")
        w.info.update({"source": DEMO, "seed": int(seed), "n_symbols": int(n_symbols), "years": int(years),
                       "end": str(end_ts.date())})
        if end is None:  # built to the last closed session: `demo-data --if-missing` keeps it there
            w.info["follows_calendar"] = True
        result = w.commit()
    log.info("demo store %s: %d symbols, %d rows", root, len(chosen), result.n_rows)
    return result

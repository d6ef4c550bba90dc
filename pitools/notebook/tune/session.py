"""Tune a strategy by hand, the computing side: the logic behind ``notebooks/tune.ipynb``,
testable without a browser (the figure and widgets are in :mod:`pitools.notebook.tune.app`).

A :class:`TuneSession` holds one loaded panel (the profile's universe, loaded once), a
strategy and its current parameters. :meth:`TuneSession.update` takes what the widgets
say (parameters, symbols, date range), checks it, re-runs :func:`pitools.engine.backtest` on the
selection (sliced from the panel in memory, never reloaded) with the research's fills and
fees, and returns a :class:`TuneResult` holding the figure data and a stats table. Bad
input never raises: the result carries ``.error`` (naming the parameter, the value and
what is allowed) and the last good figure data. :func:`~pitools.notebook.tune.app.make_figure`
/ :func:`~pitools.notebook.tune.app.apply` draw the data into one plotly ``FigureWidget``
updated in place; :class:`~pitools.notebook.tune.app.TuneApp` wires it all to ipywidgets.

>>> s = TuneSession(pt.load_panel(store), "sma_cross")
>>> r = s.update({"fast": 20, "slow": 80}); r.error, round(float(r.stats.loc["portfolio", "sharpe"]), 2)
(None, 0.94)
>>> bad = s.update({"slow": 10}); bad.error
'sma_cross: `fast` must be < `slow` (got fast=20, slow=10)'
>>> s.params, bad.figure_data is r.figure_data          # the session and the figure keep the last good ones
({'fast': 20, 'slow': 80}, True)
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import yaml

from pitools.config import load_profile
from pitools.data import Store, load_panel
from pitools.data.atomic import write_text_atomic
from pitools.data.panel import Panel
from pitools.data.universe import profile_universe
from pitools.engine import strategies as _strategies
from pitools.engine.backtest import STAT_COLUMNS, backtest
from pitools.errors import ConfigError, DataError, PitoolsError, did_you_mean
from pitools.market.signals import best_params
from pitools.notebook.tune.parameter_sets import tuned_path, read_parameter_sets
from pitools.search.search_config import SearchConfig, load_search_config

__all__ = ["TuneSession", "TuneResult", "FigureData", "SliderSpec", "read_parameter_sets", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_FIELDS = ("open", "high", "low", "close")
_TUNED_HEADER = ("# Parameter sets saved from notebooks/tune.ipynb: strategy -> name -> parameters.\n"
                 "# Written by pitools.notebook.tune (read, changed, replaced atomically); edit by hand with care.\n")


class SliderSpec(NamedTuple):
    """One parameter's slider: bounds from params/strategies.yaml, widened to hold `value`."""

    name: str
    low: float
    high: float
    step: float
    kind: str  # "int" or "float"
    value: float


@dataclass(frozen=True)
class FigureData:
    """What the figure shows: the focus symbol's close and trades, the equal-weight
    portfolio's equity against buy & hold of the same symbols, its drawdown."""

    title: str
    focus: str
    dates: pd.DatetimeIndex
    x: np.ndarray          # the dates as 'YYYY-MM-DD' strings: what the figure is sent
    close: np.ndarray      # focus symbol, float64
    trades: pd.DataFrame   # focus symbol's trades (pt.backtest's columns)
    equity: np.ndarray     # strategy portfolio, starts at `cash`
    buy_hold: np.ndarray   # equal cash in each symbol at its first bar, held
    drawdown: np.ndarray   # of `equity`, <= 0


@dataclass
class TuneResult:
    """The answer to one :meth:`TuneSession.update`.

    On bad input ``error`` is a message and ``figure_data`` / ``stats`` are the last good
    ones (None before any succeeded); ``params`` etc. are the session's, unchanged.
    """

    strategy: str
    params: dict
    symbols: list
    error: str | None = None
    figure_data: FigureData | None = None
    stats: pd.DataFrame | None = None
    backtest: object = None
    elapsed_ms: float = 0.0
    timings: dict = field(default_factory=dict)  # ms: backtest, figure_data
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def _typed(spec, checked: dict) -> dict:
    return spec.typed(checked)  # ints as ints (the sliders' kinds), reals exact


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _step(low: float, high: float) -> float:
    return 10.0 ** math.floor(math.log10((high - low) / 100.0)) if high > low else 0.01


class TuneSession:
    """One strategy tuned by hand on a panel loaded once.

    Parameters
    ----------
    panel_or_store : Panel, Store or path
        A loaded panel, or a bar store: the profile's universe (``max_symbols`` /
        ``max_years``, within its memory budget) is loaded once; without a profile, all
        equities.
    strategy : str
        A registered strategy.
    symbols : list of str, optional
        The selection shown (default: every symbol of the panel).
    start, end : date-like, optional
        Inclusive date range (default: the whole panel).
    profile : str or Profile, optional
        Where the universe, memory budget and tonight's parameters (``data_dir``) come from.
    backtest_kwargs : dict, optional
        For :func:`pitools.engine.backtest`; default the research's fills and fees
        (``scoring:`` of params/strategies.yaml).
    params : dict, optional
        Starting parameters (default: the strategy's defaults).

    Example
    -------
    >>> s = TuneSession("data/store", profile="demo"); s      # the demo profile's universe of the store
    <TuneSession sma_cross {'fast': 10, 'slow': 30} on 8 of 8 symbols>
    >>> [sp.name for sp in s.slider_specs()]
    ['fast', 'slow']
    """

    def __init__(self, panel_or_store, strategy: str = "sma_cross", symbols=None, start=None, end=None,
                 profile=None, backtest_kwargs: dict | None = None, params: dict | None = None):

        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.panel = self._load(panel_or_store, self.profile)
        try:
            self.search = load_search_config()
        except ConfigError as exc:
            self.search, self.warning = SearchConfig(), f"{exc}; using the strategies' own ranges"
        else:
            self.warning = None
        self.backtest_kwargs = dict(self.search.scoring.backtest_kwargs() if backtest_kwargs is None
                                    else backtest_kwargs)
        spec = _strategies.get(strategy)
        self.strategy = spec.name
        self.params = _typed(spec, spec.validate(params))
        self._kept = {self.strategy: self.params}  # the last good parameters of each strategy tuned
        self.symbols = list(self.panel.symbols) if symbols is None else list(symbols)
        self.start, self.end = start, end
        self.focus = None
        self.last: TuneResult | None = None
        self._sub_key, self._sub, self._sub_x = None, None, None

    @staticmethod
    def _load(source, prof) -> Panel:
        if isinstance(source, Panel):
            return source
        store = source if isinstance(source, Store) else Store.open(source)
        if prof is None:
            return load_panel(store, fields=_FIELDS)
        return profile_universe(prof, store).load(fields=_FIELDS)

    def __repr__(self) -> str:
        return (f"<TuneSession {self.strategy} {self.params} on {len(self.symbols)} of "
                f"{self.panel.n_symbols} symbols>")

    # ------------------------------------------------------------ sliders and parameters

    def params_of(self, strategy: str) -> dict:
        """The last good parameters of `strategy` in this session, else its defaults."""
        spec = _strategies.get(strategy)
        return dict(self._kept.get(spec.name) or _typed(spec, spec.defaults))

    def slider_specs(self, strategy: str | None = None, params: dict | None = None) -> list[SliderSpec]:
        """One :class:`SliderSpec` per parameter of `strategy` (default the current one):
        bounds of its search space in params/strategies.yaml (the strategy's own range
        where the file has none; a count of symbols no larger than the loaded universe),
        values `params` or the current / default ones.

        Example
        -------
        >>> session = TuneSession(panel, "sma_cross")
        >>> session.slider_specs()[0]                     # sma_cross's `fast`: a whole number
        SliderSpec(name='fast', low=3, high=60, step=1, kind='int', value=10)
        >>> session.slider_specs("rsi_reversion")[1]
        SliderSpec(name='lower', low=10.0, high=45.0, step=0.1, kind='float', value=30.0)
        """
        spec = _strategies.get(strategy or self.strategy)
        values = {**self.params_of(spec.name), **(params or {})}
        out = []
        # bounded by the loaded universe like the nightly search (xs_momentum's top_k)
        for name, (low, high, kind) in self.search.space(spec.name, self.panel.n_symbols).items():
            v = values[name]
            low, high = min(low, v), max(high, v)
            if kind == "int":
                out.append(SliderSpec(name, int(low), int(high), 1, kind, int(v)))
            else:
                out.append(SliderSpec(name, float(low), float(high), _step(low, high), kind, float(v)))
        return out

    def evolved_params(self, data_dir=None, strategy: str | None = None) -> tuple[dict, str]:
        """(params, where from): tonight's best evolved parameters of `strategy`
        (:func:`pitools.market.signals.best_params`; its defaults if never evolved), checked and
        typed as the sliders want them."""

        if data_dir is None:
            if self.profile is None:
                raise DataError("no `data_dir` to read tonight's parameters from: pass data_dir or build the "
                                "session with a profile")
            data_dir = self.profile.data_dir
        spec = _strategies.get(strategy or self.strategy)
        params, source = best_params(data_dir, spec.name)
        return _typed(spec, spec.validate(params)), source

    def load_evolved(self, data_dir=None) -> TuneResult:
        """:meth:`update` with tonight's parameters; ``.note`` says where they come from.

        Example
        -------
        >>> from pitools.search.evolution_log import append_evaluations
        >>> import pathlib
        >>> log = pathlib.Path("data/evolve/sma_cross/evaluations.jsonl"); log.parent.mkdir(parents=True)
        >>> append_evaluations(log, [{"night": "2026-11-20", "params": {"fast": 12, "slow": 80}, "fitness": 1.234},
        ...                          {"night": "2026-11-20", "params": {"fast": 5, "slow": 20}, "fitness": 0.2}])
        >>> session = TuneSession(panel, "sma_cross")
        >>> r = session.load_evolved(data_dir="data"); r.note, r.params
        ('evolved, night 2026-11-20, fitness 1.234', {'fast': 12, 'slow': 80})
        >>> session.load_evolved().error                  # no profile, no data_dir: nowhere to look
        "no `data_dir` to read tonight's parameters from: pass data_dir or build the session with a profile"
        """
        try:
            params, source = self.evolved_params(data_dir)
        except PitoolsError as exc:
            return self._failed(str(exc), time.perf_counter())
        res = self.update(params)
        res.note = source
        return res

    def save_parameter_set(self, name: str, params: dict | None = None, strategy: str | None = None,
                           params_dir=None) -> Path:
        """Save `params` (default: the current ones) of `strategy` as `name` in
        ``params/tuned.yaml`` (``strategy -> name -> params``), keeping the other entries.

        The name must match ``[A-Za-z0-9_-]{1,64}`` and the parameters pass the strategy's
        checks; a malformed existing file is refused (ConfigError), never overwritten. The
        file is replaced atomically. Returns its path.

        Example
        -------
        >>> s = TuneSession(panel, "sma_cross", params={"fast": 12, "slow": 80})
        >>> tmp = getfixture("tmp_path")
        >>> s.save_parameter_set("calm_2026", params_dir=tmp)
        PosixPath('/tmp/.../tuned.yaml')
        >>> _ = s.save_parameter_set("quick", {"fast": 5}, params_dir=tmp)  # changes to the current ones
        >>> print((tmp / "tuned.yaml").read_text())
        # Parameter sets saved from notebooks/tune.ipynb: strategy -> name -> parameters.
        # Written by pitools.notebook.tune (read, changed, replaced atomically); edit by hand with care.
        sma_cross:
          calm_2026: {fast: 12, slow: 80}
          quick: {fast: 5, slow: 80}
        <BLANKLINE>
        >>> s.save_parameter_set("calm 2026", params_dir=tmp)
        Traceback (most recent call last):
        ...
        pitools.errors.ConfigError: `name` = 'calm 2026' is not allowed: use 1 to 64 letters, digits, '_' or '-'
        (for example 'calm_2026')
        """
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ConfigError(f"`name` = {name!r} is not allowed: use 1 to 64 letters, digits, '_' or '-' "
                              "(for example 'calm_2026')")
        spec = _strategies.get(strategy or self.strategy)
        base = self.params_of(spec.name)
        checked = _typed(spec, spec.validate({**base, **{k: _plain(v) for k, v in (params or {}).items()}}))
        sets = read_parameter_sets(params_dir)
        sets.setdefault(spec.name, {})[name] = checked
        path = tuned_path(params_dir)
        write_text_atomic(path, _TUNED_HEADER + yaml.safe_dump(sets, sort_keys=False, default_flow_style=None))
        return path

    # ------------------------------------------------------------ update

    def update(self, params: dict | None = None, symbols=None, start=None, end=None, strategy: str | None = None,
               focus: str | None = None) -> TuneResult:
        """Check the input, backtest the selection, build the figure data and the stats.

        Parameters
        ----------
        params : dict, optional
            Changes to the current parameters (for another `strategy`: to its last ones in
            this session, else its defaults).
        symbols : list of str, optional
            The selection; None keeps the current one.
        start, end : date-like, optional
            The range; None keeps the current bound.
        strategy : str, optional
            Switch strategy.
        focus : str, optional
            The symbol whose price and trades are drawn (default: the current one if still
            selected, else the first selected).

        Returns
        -------
        TuneResult
            Never raises for bad input: ``.error`` names the parameter, value and what is
            allowed, and the figure data stay the last good ones.

        Example
        -------
        >>> session = TuneSession(panel, "sma_cross")
        >>> r = session.update({"fast": 15}, symbols=["BMZ", "CYE"])
        >>> r.ok, r.params, r.figure_data.focus
        (True, {'fast': 15, 'slow': 30}, 'BMZ')
        >>> r.stats.loc[:, ["total_return", "sharpe", "n_trades"]].round(2)   # the portfolio, then each symbol
                   total_return  sharpe  n_trades
        symbol
        portfolio          0.41    0.54      29.0
        BMZ                0.56    0.62      14.0
        CYE                0.09    0.28      15.0
        >>> session.update(symbols=["BMX"]).error
        "`symbols`: 'BMX' is not in the loaded universe. Did you mean 'BMZ'? It holds 8 symbols"
        """
        t0 = time.perf_counter()
        try:
            spec = _strategies.get(strategy or self.strategy)
            base = self.params_of(spec.name)
            checked = _typed(spec, spec.validate({**base, **{k: _plain(v) for k, v in (params or {}).items()}}))
            syms = self._symbols(symbols)
            lo, hi = self._range(self.start if start is None else start, self.end if end is None else end)
            focus = focus if focus is not None else self.focus if self.focus in syms else syms[0]
            if focus not in syms:
                raise DataError(f"`focus` = {focus!r} is not among the selected symbols; select it first")
            sub = self._subpanel(syms, lo, hi)
            t1 = time.perf_counter()
            res = backtest(spec.name, sub, checked, **self.backtest_kwargs)
            stats = self._stats(res)
            t2 = time.perf_counter()
            data = self._figure_data(spec, checked, sub, res, focus)
        except PitoolsError as exc:
            return self._failed(str(exc), t0)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. int(inf), a tz-aware date: still input
            return self._failed(f"not usable: {exc} (params {params!r}, start {start!r}, end {end!r})", t0)
        t3 = time.perf_counter()
        self.strategy, self.params, self.symbols, self.focus = spec.name, checked, syms, focus
        self._kept[spec.name] = checked
        self.start, self.end = sub.dates[0], sub.dates[-1]
        self.last = TuneResult(spec.name, dict(checked), list(syms), None, data, stats, res, (t3 - t0) * 1e3,
                               {"backtest": (t2 - t1) * 1e3, "figure_data": (t3 - t2) * 1e3})
        return self.last

    def _failed(self, message: str, t0: float) -> TuneResult:
        last = self.last
        return TuneResult(self.strategy, dict(self.params), list(self.symbols), message,
                          last.figure_data if last else None, last.stats if last else None,
                          last.backtest if last else None, (time.perf_counter() - t0) * 1e3)

    def _symbols(self, symbols) -> list[str]:
        symbols = self.symbols if symbols is None else symbols  # the constructor's are checked here too
        syms = [symbols] if isinstance(symbols, str) else list(dict.fromkeys(symbols))
        if not syms:
            raise DataError("`symbols` is empty: select at least one symbol")
        known = set(self.panel.symbols)
        for s in syms:
            if s not in known:
                raise DataError(f"`symbols`: {s!r} is not in the loaded universe.{did_you_mean(str(s), known)} "
                                f"It holds {len(known)} symbols")
        return syms

    def _range(self, start, end) -> tuple[int, int]:
        dates = self.panel.dates
        bounds = []
        for name, value, default in (("start", start, dates[0]), ("end", end, dates[-1])):
            try:
                ts = pd.Timestamp(default if value is None else value)
            except (TypeError, ValueError):
                ts = pd.NaT
            if ts is pd.NaT:
                raise DataError(f"`{name}` = {value!r} is not a date (use 'YYYY-MM-DD')")
            bounds.append(ts)
        if bounds[0] >= bounds[1]:
            raise DataError(f"`start` = {bounds[0].date()} must be before `end` = {bounds[1].date()}")
        lo, hi = dates.searchsorted(bounds[0], "left"), dates.searchsorted(bounds[1], "right")
        if hi - lo < 2:
            raise DataError(f"{bounds[0].date()}..{bounds[1].date()} holds {hi - lo} sessions of the loaded "
                            f"{dates[0].date()}..{dates[-1].date()}; choose a range with at least 2")
        return int(lo), int(hi)

    def _subpanel(self, syms: list[str], lo: int, hi: int) -> Panel:
        """The selection, sliced in memory (Fortran order, the kernels' layout); cached."""
        p = self.panel
        key = (tuple(syms), lo, hi)
        if key == self._sub_key:
            return self._sub
        if syms == p.symbols and (lo, hi) == (0, p.n_bars):
            sub = p
        else:
            cols = [p.symbols.index(s) for s in syms]
            sub = Panel(p.dates[lo:hi], syms, {f: np.asfortranarray(p.field(f)[lo:hi][:, cols]) for f in p.fields},
                        p.meta)
        # date strings, made once per selection: a FigureWidget sends datetime64 as numbers
        self._sub_key, self._sub, self._sub_x = key, sub, np.asarray(sub.dates.strftime("%Y-%m-%d"), dtype=str)
        return sub

    def _stats(self, res) -> pd.DataFrame:
        port = res.portfolio.reindex(STAT_COLUMNS)
        head = pd.DataFrame([port.to_numpy()], index=pd.Index(["portfolio"], name="symbol"), columns=STAT_COLUMNS)
        return pd.concat([head, res.stats.astype({"n_trades": float})])

    def _figure_data(self, spec, params, sub: Panel, res, focus: str) -> FigureData:
        j = sub.symbols.index(focus)
        if spec.portfolio_level:  # the focus symbol's trades depend on the whole selection
            trades = res.trades
            trades = trades[trades["symbol"] == focus].reset_index(drop=True)
        else:  # one symbol's backtest gives the same trades without rebuilding everyone's
            one = Panel(sub.dates, [focus], {f: sub.field(f)[:, j:j + 1] for f in sub.fields})
            trades = backtest(spec.name, one, params, **self.backtest_kwargs).trades
        cash = float(self.backtest_kwargs.get("cash", 10_000.0))
        equity = res.portfolio_equity  # as res.portfolio compounds it (pitools.engine.backtest)
        bh = _buy_and_hold(sub.close, cash)
        peak = np.fmax.accumulate(equity)
        with np.errstate(invalid="ignore", divide="ignore"):
            drawdown = equity / peak - 1.0
        shown = _strategies.format_params(params, spec.name)
        title = (f"{spec.name} ({shown}): {focus} with trades · equal-weight portfolio of {sub.n_symbols} "
                 f"symbol{'s' * (sub.n_symbols != 1)} vs buy & hold · drawdown")
        return FigureData(title, focus, sub.dates, self._sub_x, sub.close[:, j].astype(np.float64), trades, equity, bh, drawdown)


def _buy_and_hold(close: np.ndarray, cash: float) -> np.ndarray:
    """Equal cash in each symbol that has bars, bought at its first close and held: cash *
    mean over those symbols of close / first close (1 before its first bar, last close carried
    over gaps); NaN before any symbol has a bar."""
    c = np.asarray(close, dtype=np.float64)
    valid = np.isfinite(c)
    has = valid.any(axis=0)
    c, valid = c[:, has], valid[:, has]
    if not c.shape[1]:
        return np.full(close.shape[0], np.nan)
    rows = np.maximum.accumulate(np.where(valid, np.arange(len(c))[:, None], 0), axis=0)
    filled = np.take_along_axis(c, rows, axis=0)
    first = c[valid.argmax(axis=0), np.arange(c.shape[1])]
    ratio = np.where(np.isfinite(filled), filled / first, 1.0)
    out = cash * ratio.mean(axis=1)
    out[: valid.any(axis=1).argmax()] = np.nan
    return out


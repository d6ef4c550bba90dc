"""Bias checks of a strategy's targets: no peeking at later bars, no memory of where the data starts.

Two checks, each on the targets a strategy computes from a panel (``-1``, ``0``, ``+1`` or
NaN per bar and symbol), as :func:`pitools.engine.backtest` would trade them:

* **truncation** — the targets up to bar ``t`` must be the same when every bar after ``t``
  is removed, at `cuts` cut points spread over the history. A strategy that reads
  ``close[t + 1]``, centres a window, or normalises by the whole series' mean fails here.
* **warm-up** — after `warmup` bars, the targets must not depend on where the data starts:
  the same history started `starts` different bars later must give the same targets once
  both have warmed up. A recursive indicator seeded from its first value (an EMA, Wilder's
  RSI) that has not forgotten its seed fails here — the trap freqtrade's
  ``recursive-analysis`` looks for. The default warm-up is 20 × the strategy's longest
  integer parameter (an EMA of span n has then forgotten its seed to ~1e-8).

A target is the same when both are NaN or both are equal. :func:`check_lookahead` returns a
:class:`LookaheadReport`; ``pitools lookahead STRATEGY`` prints it and exits 1 when either
check fails, naming the first offending bar, symbol and both values.

>>> report = check_lookahead("sma_cross", panel)
>>> report.ok, report.cuts_checked, report.starts_checked
(True, 12, 3)
>>> print(report.text().splitlines()[0])
sma_cross {'fast': 10, 'slow': 30}: no lookahead (12 cut points, 3 later starts after 251 bars of warm-up)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pitools.data.panel import Panel
from pitools.engine import strategies as _strategies
from pitools.engine.backtest import symbol_signals
from pitools.errors import DataError, check_int

__all__ = ["check_lookahead", "LookaheadReport", "Offence", "strategy_targets"]

WARMUP_PER_PARAMETER = 20  # bars of warm-up per unit of the longest integer parameter


def strategy_targets(strategy, panel: Panel, params: dict | None = None, start: int = 0,
                     stop: int | None = None) -> np.ndarray:
    """The targets (bars × symbols) `strategy` computes from bars ``start:stop`` of `panel`.

    `strategy` is a registered name, or a function ``f(panel, params) -> targets`` (the easy
    form of a strategy: numpy or pandas over the whole panel), called on that window only.
    """
    window = slice(start, stop)
    part = Panel(panel.dates[window], panel.symbols, {f: panel.field(f)[window] for f in panel.fields})
    if callable(strategy):
        out = np.asarray(strategy(part, dict(params or {})), dtype=np.float64)
        if out.shape != part.shape:
            raise DataError(f"strategy {_name(strategy)!r} returned targets of shape {out.shape}, expected "
                            f"{part.shape} (bars × symbols)")
        return out
    spec = _strategies.get(strategy)
    values = np.array(list(spec.validate(params).values()), dtype=np.float64)
    out = np.empty(part.shape, dtype=np.float64)
    for j, _, target, _ in symbol_signals(spec, part, values):  # the targets the backtest trades
        out[:, j] = target
    return out


def _name(strategy) -> str:
    return strategy if isinstance(strategy, str) else getattr(strategy, "__name__", repr(strategy))


@dataclass(frozen=True)
class Offence:
    """The first bar where two computations of the same target disagree."""

    check: str  # "truncation" or "warm-up"
    date: str
    symbol: str
    full: float  # the target from the whole history
    other: float  # from the truncated history, or the one that starts later
    detail: str  # which cut or start

    def text(self) -> str:
        other = "with the later bars removed" if self.check == "truncation" else "with the data starting later"
        return (f"{self.check}: {self.symbol} on {self.date}: target {_show(self.full)} from the whole history, "
                f"{_show(self.other)} {other} ({self.detail})")


@dataclass
class LookaheadReport:
    """What :func:`check_lookahead` found: ``ok`` when neither check found an offence."""

    strategy: str
    params: dict
    warmup: int
    cuts_checked: int
    starts_checked: int
    offences: list[Offence] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.offences

    def text(self) -> str:
        head = f"{self.strategy} {self.params}: "
        scope = (f"{self.cuts_checked} cut points, {self.starts_checked} later starts after {self.warmup} bars "
                 "of warm-up")
        if self.ok:
            return head + f"no lookahead ({scope})"
        lines = [head + f"BIASED ({scope})"] + ["  " + o.text() for o in self.offences]
        return "\n".join(lines)


def check_lookahead(strategy, panel: Panel, params: dict | None = None, cuts: int = 12, starts: int = 3,
                    warmup: int | None = None) -> LookaheadReport:
    """Run both bias checks of `strategy` (with `params`, default its defaults) on `panel`.

    `strategy` is a registered name or a function ``f(panel, params) -> targets`` (see
    :func:`strategy_targets`).

    Parameters
    ----------
    cuts : int
        Cut points of the truncation check, spread evenly from the first bar after the
        warm-up to the second-to-last bar.
    starts : int
        Later starts of the warm-up check, spread over the first half of the history.
    warmup : int, optional
        Bars a strategy may take to forget where its data starts (default
        ``WARMUP_PER_PARAMETER`` × its longest integer parameter, at most a third of the
        panel).

    Raises
    ------
    DataError
        An unknown strategy, parameters outside its space, targets of the wrong shape, or a
        panel too short for the checks.
    """
    if callable(strategy):
        checked = dict(params or {})
        ints = [v for v in checked.values() if isinstance(v, int) and not isinstance(v, bool)]
    else:
        spec = _strategies.get(strategy)
        checked = spec.typed(spec.validate(params))
        ints = [v for k, v in checked.items() if spec.space[k].kind == "int"]
    cuts = check_int("cuts", cuts, 1, 10_000, error=DataError)
    starts = check_int("starts", starts, 0, 10_000, error=DataError)
    n = panel.n_bars
    if warmup is None:
        warmup = min(WARMUP_PER_PARAMETER * int(max(ints or [1])), n // 3)
    warmup = check_int("warmup", warmup, 0, max(n - 2, 0), error=DataError)
    if n < warmup + 3:
        raise DataError(f"`panel` has {n} bars: the checks need at least warmup + 3 = {warmup + 3}")
    full = strategy_targets(strategy, panel, checked)
    report = LookaheadReport(_name(strategy), checked, warmup, 0, 0)
    for cut in np.unique(np.linspace(warmup, n - 2, cuts).round().astype(int)):
        report.cuts_checked += 1
        part = strategy_targets(strategy, panel, checked, stop=cut + 1)
        found = _first_difference(full[:cut + 1], part, 0)
        if found is not None:
            report.offences.append(_offence("truncation", panel, found, f"cut after {panel.dates[cut].date()}"))
            break
    if starts:
        for start in np.unique(np.linspace(1, max(1, (n - warmup) // 2), starts).round().astype(int)):
            report.starts_checked += 1
            part = strategy_targets(strategy, panel, checked, start=start)
            found = _first_difference(full[start + warmup:], part[warmup:], start + warmup)
            if found is not None:
                report.offences.append(_offence("warm-up", panel, found,
                                                f"data from {panel.dates[start].date()}, {warmup} bars of warm-up"))
                break
    return report


def _first_difference(a: np.ndarray, b: np.ndarray, offset: int):
    """(bar, symbol, a value, b value) of the first differing target (by bar), or None."""
    differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    if not differ.any():
        return None
    bar, sym = np.argwhere(differ)[0]
    return int(bar) + offset, int(sym), float(a[bar, sym]), float(b[bar, sym])


def _offence(check: str, panel: Panel, found, detail: str) -> Offence:
    bar, sym, full, other = found
    return Offence(check, str(panel.dates[bar].date()), panel.symbols[sym], full, other, detail)


def _show(value: float) -> str:
    return "NaN" if value != value else f"{value:+g}"

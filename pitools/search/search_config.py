"""``params/strategies.yaml``: what the search explores and how a candidate is scored.

:func:`load_search_config` reads and checks the file (every error names the strategy and the
key); :class:`SearchConfig` answers the space searched for a strategy, bounded by the
universe where a parameter counts symbols. The night itself is :mod:`pitools.search.evolve`.

>>> config = load_search_config()
>>> config.space("sma_cross")["fast"]
(3.0, 60.0, 'int')
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from pitools.config import project_root
from pitools.engine import strategies as _strategies
from pitools.engine.backtest import DIRECTIONS, FILLS
from pitools.errors import ConfigError, PitoolsError, did_you_mean
from pitools.params_yaml import load_params_yaml, short_repr
from pitools.search.scoring import WALK_FORWARD, Scoring

__all__ = ["SearchConfig", "load_search_config"]


@dataclass(frozen=True)
class SearchConfig:
    """``params/strategies.yaml``: optimizer, incumbents, scoring and bounds per strategy."""
    optimizer: str = "TwoPointsDE"
    incumbents: int = 3
    scoring: Scoring = field(default_factory=Scoring)
    bounds: dict = field(default_factory=dict)  # strategy -> {param: (low, high)}

    def space(self, strategy: str, n_symbols: int | None = None) -> dict[str, tuple[float, float, str]]:
        """``{param: (low, high, kind)}`` searched for `strategy`.

        With `n_symbols` (the universe's size), a parameter that counts symbols (the
        strategy's ``counts_symbols``: xs_momentum's ``top_k``) is bounded by it: above it no
        bar ever has that many symbols to rank and nothing trades. Its high bound is clipped
        to `n_symbols`; when the low bound then leaves no value below `n_symbols` (every
        candidate would hold the whole universe: no ranking at all), the low bound falls back
        to the strategy's own (1). :meth:`universe_note` says what was bounded.
        """
        spec = _strategies.get(strategy)
        mine = self.bounds.get(strategy, {})
        out = {k: (*mine.get(k, (p.low, p.high)), p.kind) for k, p in spec.space.items()}
        if n_symbols is not None and n_symbols >= 1:
            for k in spec.counts_symbols:
                lo, hi, kind = out[k]
                if hi <= n_symbols:
                    continue
                hi = float(n_symbols)
                out[k] = (lo if lo < hi else min(spec.space[k].low, hi), hi, kind)
        return out

    def universe_note(self, strategy: str, n_symbols: int) -> str | None:
        """A sentence for the report when `n_symbols` bounds what `strategy` searches, else None."""
        wide, bounded = self.space(strategy), self.space(strategy, n_symbols)
        clipped = [f"`{k}` {lo:g}–{hi:g} instead of {wide[k][0]:g}–{wide[k][1]:g}" if lo < hi
                   else f"`{k}` fixed at {hi:g} instead of {wide[k][0]:g}–{wide[k][1]:g}"
                   for k, (lo, hi, _) in bounded.items() if (lo, hi) != wide[k][:2]]
        if not clipped:
            return None
        return (f"{strategy}: searching {', '.join(clipped)}: the universe has {n_symbols} symbol"
                f"{'s' * (n_symbols != 1)} (a larger value never ranks a bar; params/strategies.yaml)")


def _number(where: str, value, kind: str = "float") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} = {short_repr(value)} must be a number")
    try:
        number = float(value)
    except OverflowError:  # an int of 400 digits has no float
        raise ConfigError(f"{where} = {short_repr(value)} is too large") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where} = {short_repr(value)} must be a finite number")
    if kind == "int" and not number.is_integer():
        raise ConfigError(f"{where} = {short_repr(value)} must be an integer")
    return number


def _mapping(file: str, key: str, value, what: str) -> dict:
    """`value` of top-level `key` as a dict (absent or empty: {}), or a ConfigError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{file}: `{key}` = {short_repr(value)} must be a mapping of {what}")
    return value


def load_search_config(path: str | Path | None = None) -> SearchConfig:
    """Read and check ``params/strategies.yaml`` (or `path`); errors name the strategy and key.

    Bounds in which no candidate passes the strategy's constraints are refused here: the
    optimizer could only ask inadmissible candidates and the night would score nothing.
    """
    path = Path(path) if path is not None else project_root() / "params" / "strategies.yaml"
    if not path.is_file():
        raise ConfigError(f"search config {str(path)!r} does not exist")
    raw = load_params_yaml(path)
    raw = {} if raw is None else raw
    file = path.name
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} must be a mapping with optimizer, incumbents, scoring and strategies, "
                          f"got {short_repr(raw)}")
    known = ("optimizer", "incumbents", "scoring", "strategies")
    for key in raw:
        if key not in known:
            raise ConfigError(f"{file}: unknown key {short_repr(key)}.{did_you_mean(str(key), known)} "
                              f"Keys: {', '.join(known)}")
    incumbents = _number(f"{file}: incumbents", raw.get("incumbents", 3), "int")
    if incumbents < 0:
        raise ConfigError(f"{file}: incumbents = {int(incumbents)} must be >= 0")
    scoring = _scoring(file, _mapping(file, "scoring", raw.get("scoring"), "setting: value (see pitools.search.scoring)"))
    strategies = _mapping(file, "strategies", raw.get("strategies"),
                          "strategy: {parameter: [low, high]}, e.g. sma_cross: {fast: [3, 60]}")
    bounds = {name: _bounds(file, name, params) for name, params in strategies.items()}
    for name in bounds:
        _check_admissible(file, name, SearchConfig(bounds=bounds).space(name))
    # nevergrad last: importing it takes seconds, a mistake above is reported without it
    import nevergrad as ng

    optimizer = raw.get("optimizer", "TwoPointsDE")
    if not isinstance(optimizer, str) or optimizer not in ng.optimizers.registry:
        raise ConfigError(f"{file}: optimizer = {short_repr(optimizer)} is not a nevergrad optimizer "
                          "(a name of nevergrad.optimizers.registry, e.g. 'TwoPointsDE')."
                          f"{did_you_mean(str(optimizer), list(ng.optimizers.registry))}")
    return SearchConfig(optimizer, int(incumbents), scoring, bounds)


def _bounds(file: str, name, params) -> dict[str, tuple[float, float]]:
    """``{param: (low, high)}`` of strategy `name` under ``strategies:``, checked."""
    spec = _strategies.get(name) if name in _strategies.REGISTRY else None
    if spec is None:
        raise ConfigError(f"{file}: strategies: unknown strategy {short_repr(name)}."
                          f"{did_you_mean(str(name), _strategies.REGISTRY)} Strategies: {', '.join(_strategies.names())}")
    if not isinstance(params, dict):
        raise ConfigError(f"{file}: strategies.{name} = {short_repr(params)} must map parameters to [low, high], "
                          f"e.g. {{{next(iter(spec.space))}: [low, high]}}")
    out = {}
    for key, pair in params.items():
        where = f"{file}: strategies.{name}.{_label(key)}"
        if key not in spec.space:
            raise ConfigError(f"{where}: unknown parameter.{did_you_mean(str(key), spec.space)} "
                              f"Parameters of {name}: {', '.join(spec.space)}")
        p = spec.space[key]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"{where} = {short_repr(pair)} must be [low, high]")
        lo, hi = (_number(where, v, p.kind) for v in pair)
        if not p.low <= lo < hi <= p.high:
            raise ConfigError(f"{where} = [{lo:g}, {hi:g}] must have low < high inside the strategy's range "
                              f"{p.low:g} to {p.high:g}")
        out[key] = (lo, hi)
    return out


def _label(key) -> str:
    """A key of the file for a message: as written when short, else cut."""
    return key if isinstance(key, str) and len(key) <= 40 else short_repr(key, 40)


_PROBES = 300  # random candidates tried per strategy beyond the corners and the centre


def _check_admissible(file: str, name: str, space: dict[str, tuple[float, float, str]]) -> None:
    """Refuse a search box in which no candidate passes the strategy's `validate()`.

    Tried: every corner and the centre of the box, then `_PROBES` seeded random points,
    integer parameters rounded as nevergrad's integer casting does. The constraints are
    comparisons between two parameters (fast < slow …), which a corner satisfies whenever
    any point does; a box whose admissible part is too thin for 300 draws to hit would
    starve the optimizer's own resampling just the same.
    """
    spec = _strategies.get(name)
    if not spec.constraints:
        return
    keys = list(space)

    def point(values):
        return {k: float(round(v)) if space[k][2] == "int" else float(v) for k, v in zip(keys, values)}

    corners = itertools.islice(itertools.product(*((lo, hi) for lo, hi, _ in space.values())), 1024)
    rng = random.Random(zlib.crc32(name.encode()))  # seeded: the same file, the same verdict
    draws = ([rng.uniform(lo, hi) for lo, hi, _ in space.values()] for _ in range(_PROBES))
    centre = [[(lo + hi) / 2 for lo, hi, _ in space.values()]]
    first = None
    for values in itertools.chain(corners, centre, draws):
        try:
            spec.validate(point(values))
            return
        except PitoolsError as exc:
            first = first or exc
    box = ", ".join(f"{k}: [{lo:g}, {hi:g}]" for k, (lo, hi, _) in space.items())
    raise ConfigError(f"{file}: strategies.{name}: no candidate inside the bounds {{{box}}} is admissible — {first}; "
                      "every candidate would fail and the night would score nothing. Move the bounds so that "
                      "some candidates satisfy the constraint (a parameter left out spans the strategy's range)")


@dataclass(frozen=True)
class _Range:
    """What a numeric setting allows: `kind` ("int" or "float") from `low` to `high`
    (both ends included unless `open`)."""

    kind: str
    low: float
    high: float
    open: bool = False

    def check(self, where: str, value) -> float | int:
        value = _number(where, value, self.kind)
        inside = self.low < value < self.high if self.open else self.low <= value <= self.high
        if not inside:
            raise ConfigError(f"{where} = {value:g} must be from {self.low:g} to {self.high:g}")
        return int(value) if self.kind == "int" else value


# What each `scoring:` setting allows: a tuple of choices or a _Range (Scoring holds the defaults).
SCORING_ALLOWED: dict[str, tuple[str, ...] | _Range] = {
    "walk_forward": WALK_FORWARD,
    "folds": _Range("int", 1, 20),
    "oos_fraction": _Range("float", 0.0, 1.0, open=True),
    "fill": FILLS,
    "direction": DIRECTIONS,
    "fees": _Range("float", 0.0, 1.0),
    "slippage": _Range("float", 0.0, 1.0),
    "min_trades_per_year": _Range("float", 0.0, math.inf),
    "trade_penalty": _Range("float", 0.0, math.inf),
    "max_drawdown": _Range("float", 0.0, 1.0),
    "drawdown_penalty": _Range("float", 0.0, math.inf),
}


def _scoring(file: str, raw: dict) -> Scoring:
    values = {}
    for key, value in raw.items():
        where = f"{file}: scoring.{_label(key)}"
        allowed = SCORING_ALLOWED.get(key)
        if allowed is None:
            raise ConfigError(f"{where}: unknown key.{did_you_mean(str(key), SCORING_ALLOWED)} "
                              f"Keys: {', '.join(SCORING_ALLOWED)}")
        if isinstance(allowed, _Range):
            value = allowed.check(where, value)
        elif not isinstance(value, str) or value not in allowed:
            raise ConfigError(f"{where} = {short_repr(value)} is not allowed.{did_you_mean(str(value), allowed)} "
                              f"Allowed: {', '.join(allowed)}")
        values[key] = value
    return dataclasses.replace(Scoring(), **values)

"""One night of evolution: nevergrad searches each strategy's parameters, persistently.

For every strategy, ``population_size`` candidates a generation are asked from a nevergrad
optimizer, scored walk-forward (:mod:`pitools.search.scoring`) through the fitness map, and told
back. After every generation the optimizer is pickled atomically and every evaluation is
appended to a JSON-lines log, both under ``<data_dir>/evolve/<strategy>/``:

* ``optimizer.pkl`` — tonight's state; tomorrow's run continues from it;
* ``evaluations.jsonl`` — params, fitness, in-/out-of-sample figures and the night of
  every evaluation; if the pickle cannot be loaded (corrupt, another nevergrad, a changed
  search space) the optimizer is rebuilt by telling it this log;
* ``state.json`` — versions and the search space the pickle belongs to, its night and
  how many logged evaluations it has been told.

Each night starts by re-scoring the best parameter sets of earlier nights (the
incumbents) on the new data. A night reads only its past: evaluations of later nights
are ignored, and a checkpoint of a later night, or one that missed logged evaluations
(a run killed between the two writes, an earlier night re-run), is rebuilt from the log.
A seed in the profile makes the candidates and the results reproducible.

One evolve run at a time per data folder: the whole run holds ``<data_dir>/evolve.lock``
(:func:`pitools.locks.exclusive_lock`; beside the nightly's ``nightly.lock``, a different
file, so the nightly's own evolution does not wait on itself, and outside ``evolve/``,
which holds only strategy folders); a second run is refused at once, naming the holder,
before it reads or writes anything (two runs would each overwrite the other's
``optimizer.pkl``). A full disk or a read-only data folder stops the run with a one-line
error naming the file; the state of the last whole generation stays as it was.

>>> report = evolve(load_profile("ci"), strategies=["sma_cross"])     # doctest: +SKIP
>>> print(report.to_text())                                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import pickle
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pitools.engine import strategies as _strategies
from pitools.engine.backtest import backtest
from pitools.config import Profile, project_root
from pitools.data.atomic import fsync_dir, write_bytes_atomic, write_text_atomic
from pitools.errors import ConfigError, DataFolderNotWritable, EvolveError, PitoolsError, did_you_mean
from pitools.search.evolution_log import LOG_NAME, append_evaluations, as_night, read_evaluations
from pitools.locks import NIGHTLY_PID_ENV, exclusive_lock
from pitools.search.scoring import Scoring, deflated_sharpe, score_candidate, walk_forward_windows

__all__ = ["SearchConfig", "load_search_config", "evolve", "EvolveReport", "evaluate_candidate", "EvalContext",
           "EvolveError", "DataFolderNotWritable"]

log = logging.getLogger("pitools")

_WORST_LOSS = 1e6  # told to nevergrad for a failed candidate (it minimises; inf upsets some optimizers)


# ---------------------------------------------------------------- params/strategies.yaml

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
    from pitools.params_yaml import short_repr

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
    from pitools.params_yaml import short_repr

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
    from pitools.params_yaml import load_params_yaml, short_repr

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
    from pitools.params_yaml import short_repr

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
    from pitools.params_yaml import short_repr

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
    import itertools
    import random

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


def _scoring(file: str, raw: dict) -> Scoring:
    import dataclasses

    from pitools.params_yaml import short_repr

    defaults = Scoring()
    names = [f.name for f in dataclasses.fields(Scoring)]  # not hasattr: `backtest_kwargs` is no setting
    values = {}
    for key, value in raw.items():
        where = f"{file}: scoring.{_label(key)}"
        if key not in names:
            raise ConfigError(f"{where}: unknown key.{did_you_mean(str(key), names)} "
                              f"Keys: {', '.join(names)}")
        choices = {"walk_forward": ("anchored", "rolling"), "fill": ("next_open", "close"),
                   "direction": ("long_only", "long_short")}.get(key)
        if choices:
            if not isinstance(value, str) or value not in choices:
                raise ConfigError(f"{where} = {short_repr(value)} is not allowed.{did_you_mean(str(value), choices)} "
                                  f"Allowed: {', '.join(choices)}")
        elif key == "folds":
            value = int(_number(where, value, "int"))
            if not 1 <= value <= 20:
                raise ConfigError(f"{where} = {value} must be from 1 to 20")
        else:
            value = _number(where, value)
            high = 1.0 if key in ("oos_fraction", "fees", "slippage", "max_drawdown") else math.inf
            if not 0.0 <= value <= high or (key == "oos_fraction" and not 0 < value < 1):
                raise ConfigError(f"{where} = {value:g} must be from 0 to {high:g}")
        values[key] = value
    return Scoring(**{**defaults.__dict__, **values})


# ---------------------------------------------------------------- evaluation (in the workers)

@dataclass(frozen=True)
class EvalContext:
    """What every evaluation shares (inherited by forked workers, never pickled per task)."""

    panel: object
    windows: tuple
    scoring: Scoring


def evaluate_candidate(candidate: dict, ctx: EvalContext) -> tuple[float, dict]:
    """The fitness-map function: ``{"strategy": name, "params": {…}}`` backtested once over
    the panel, scored walk-forward."""
    res = backtest(candidate["strategy"], ctx.panel, candidate["params"], per_symbol_stats=False,
                   **ctx.scoring.backtest_kwargs())
    return score_candidate(res.portfolio_returns, res.n_trades, ctx.panel.n_symbols, ctx.windows, ctx.scoring)


class _Admissible:
    """A picklable cheap constraint for nevergrad: the strategy's own checks (fast < slow …)."""

    def __init__(self, strategy: str):
        self.strategy = strategy

    def __call__(self, value: dict) -> bool:
        try:
            _strategies.get(self.strategy).validate(value)
        except PitoolsError:
            return False
        return True


# ---------------------------------------------------------------- persistent state

class _StrategyState:
    """The optimizer and the evaluation log of one strategy under ``<data_dir>/evolve/<name>``."""

    def __init__(self, root: Path, strategy: str, config: SearchConfig, seed: int, population: int, night: str,
                 n_symbols: int | None = None):
        self.dir = root / strategy
        with _saving(self.dir):
            self.dir.mkdir(parents=True, exist_ok=True)
        _check_writable(self.dir, *(self.dir / name for name in (LOG_NAME, "optimizer.pkl", "state.json")))
        self.strategy, self.config, self.population, self.night = strategy, config, population, night
        self.space = config.space(strategy, n_symbols)
        self.seed = (seed * 1_000_003 + zlib.crc32(strategy.encode())) % 2**32
        self.log_path = self.dir / LOG_NAME
        self.records = read_evaluations(self.log_path, night=night)  # a night reads only its past
        self.optimizer, self.origin = self._load_or_build()

    @property
    def signature(self) -> dict:
        import nevergrad as ng

        return {"nevergrad": ng.__version__, "optimizer": self.config.optimizer, "population": self.population,
                "space": {k: list(v) for k, v in self.space.items()}}

    def _fresh(self):
        import nevergrad as ng

        items = {}
        for name, (lo, hi, kind) in self.space.items():
            if lo == hi:  # bounded by a small universe to one value: a constant, not searched
                items[name] = int(lo) if kind == "int" else float(lo)
                continue
            scalar = ng.p.Scalar(lower=lo, upper=hi)
            items[name] = scalar.set_integer_casting() if kind == "int" else scalar
        param = ng.p.Dict(**items)
        param.random_state = np.random.RandomState(self.seed)
        param.register_cheap_constraint(_Admissible(self.strategy))
        opt = ng.optimizers.registry[self.config.optimizer](parametrization=param, budget=None,
                                                             num_workers=self.population)
        opt.enable_pickling()  # before the first ask, or some optimizers cannot be pickled
        return opt

    def _load_or_build(self):
        pkl, meta = self.dir / "optimizer.pkl", self.dir / "state.json"
        if pkl.exists():
            try:
                self._check_checkpoint(json.loads(meta.read_text()))
                return pickle.loads(pkl.read_bytes()), "checkpoint"
            except Exception as exc:  # noqa: BLE001 — any unreadable state is rebuilt from the log
                log.warning("%s: optimizer state not usable (%s: %s); rebuilding it from %d logged evaluations",
                            self.strategy, type(exc).__name__, exc, len(self.records))
        opt = self._fresh()
        told = 0
        for rec in self.records:
            if rec.get("fitness") is not None and self._inside(rec["params"]):
                opt.tell(opt.parametrization.spawn_child(new_value=rec["params"]), -rec["fitness"])
                told += 1
        return opt, ("rebuilt from log" if told else "new")

    def _check_checkpoint(self, state: dict) -> None:
        """Raise ValueError unless the pickle was told exactly the evaluations this night may read."""
        if state.get("signature") != self.signature:
            raise ValueError("the search space, optimizer or nevergrad version changed")
        if str(state.get("night")) > self.night:  # a run dated later: its knowledge is not this night's past
            raise ValueError(f"it is of night {state.get('night')}, after {self.night}")
        if state.get("evaluations") != len(self.records):  # killed between log and pickle, or another run's
            raise ValueError(f"it was told {state.get('evaluations')} evaluations, the log has {len(self.records)} "
                             f"up to {self.night}")

    def _inside(self, params: dict) -> bool:
        return set(params) == set(self.space) and all(lo <= params[k] <= hi for k, (lo, hi, _) in self.space.items())

    def incumbents(self, k: int) -> list[dict]:
        """The `k` best distinct parameter sets of earlier nights (latest score of each)."""
        latest = {}
        for rec in self.records:
            if rec.get("fitness") is not None:
                latest[json.dumps(rec["params"], sort_keys=True)] = rec
        ranked = sorted(latest.values(), key=lambda r: -r["fitness"])
        return [r["params"] for r in ranked if self._inside(r["params"])][:k]

    def append(self, records: list[dict]) -> None:
        with _saving(self.log_path):
            append_evaluations(self.log_path, records)
        self.records.extend(records)

    def checkpoint(self, generation: int, night: str) -> None:
        # The pickle first, then state.json: a failure between them leaves a state.json
        # whose count no longer matches the log, so the next night rebuilds from the log.
        with _saving(self.dir / "optimizer.pkl"):
            write_bytes_atomic(self.dir / "optimizer.pkl", pickle.dumps(self.optimizer))
        with _saving(self.dir / "state.json"):
            write_text_atomic(self.dir / "state.json", json.dumps(
                {"signature": self.signature, "night": night, "generation": generation,
                 "evaluations": len(self.records)}, indent=1))
            fsync_dir(self.dir)


@contextlib.contextmanager
def _saving(path: Path):
    """Turn an ``OSError`` while writing `path` (a file, or a folder being made) into a one-line
    error naming it, or its folder when that is what cannot be written."""
    try:
        yield
    except OSError as exc:
        raise _write_error(path, exc) from None


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _write_error(path: Path, exc: OSError) -> PitoolsError:
    why = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return EvolveError(f"no space left on the device to write {str(path)!r} ({why}); the state of the last "
                           "whole generation is kept. Free some space (or move `data_dir`) and run again")
    if exc.errno in _NOT_WRITABLE:
        return _not_writable(Path(exc.filename).parent if exc.filename else path.parent, why)  # a mkdir, a temp file
    return EvolveError(f"cannot write {str(path)!r}: {why}; the state of the last whole generation is kept")


def _check_writable(folder: Path, *files: Path) -> None:
    """Fail before the night's work, not after its first generation, when its state cannot be
    written (``os.access`` answers for a read-only mount too, and as root)."""
    if not os.access(folder, os.W_OK):
        raise _not_writable(folder, "no write permission, or a read-only file system")
    for path in files:
        if path.exists() and not os.access(path, os.W_OK):
            raise _not_writable(folder, f"{path.name} is read-only")


def _not_writable(folder: Path, why: str) -> DataFolderNotWritable:
    return DataFolderNotWritable(f"data folder {str(folder)!r} is not writable ({why}): fix its permissions, "
                                 "or choose another with --set data_dir=DIR")


def _clean(value):
    """JSON-safe: NaN/inf become None."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- the night

@dataclass
class EvolveReport:
    """What one night of evolution found: the leaderboard, convergence and resources."""

    night: str
    leaderboard: pd.DataFrame
    history: pd.DataFrame  # strategy, generation, best fitness so far tonight
    evaluations: int
    elapsed_s: float
    peak_pss_bytes: int
    notes: list = field(default_factory=list)  # what bounded the search tonight (a small universe …)

    def to_text(self) -> str:
        from pitools.memory import format_mb

        lb = self.leaderboard.copy()
        lb["params"] = [_strategies.format_params(p, name) for p, name in zip(lb["params"], lb["strategy"])]
        cols = ["strategy", "fitness", "is_sharpe", "oos_sharpe", "oos_max_drawdown", "trades_per_year",
                "deflated_sharpe", "trials", "params"]
        with pd.option_context("display.width", 200, "display.max_colwidth", 60):
            table = lb[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        notes = "".join(f"note: {n}\n" for n in self.notes)
        return (f"evolution, night {self.night}: {self.evaluations} evaluations in {self.elapsed_s:.2f} s, "
                f"pool peak PSS {format_mb(self.peak_pss_bytes)}\n{notes}{table}")


def evolve(profile: Profile, strategies=None, store=None, night: str | None = None, config: SearchConfig | None = None,
           backend: str = "process", scheduler=None, progress: bool = True, panel=None) -> EvolveReport:
    """Run one night of evolution for `strategies` (default: all eight) with `profile`.

    Loads the profile's universe (``max_symbols`` × ``max_years``, within
    ``memory_budget_mb``) from `store` (default: the profile's), unless a `panel` is given,
    and writes state under ``<data_dir>/evolve``, holding ``<data_dir>/evolve.lock``.
    `night` (default: the last closed NYSE session, as ``pitools nightly``) must be a closed
    session (:class:`~pitools.errors.NightError` otherwise); the store's bars and the
    evaluations of nights up to it are read, nothing later.

    Raises
    ------
    pitools.locks.LockHeld
        Another evolve run holds the data folder (exit code 1); nothing was read or written.
    EvolveError
        A write failed (a full disk: "no space left …"; exit code 1), naming the file; the
        log and the checkpoint of the last whole generation are kept.
    DataFolderNotWritable
        The data folder cannot be written (exit code 2), naming it.
    """
    from pitools.data import Store, load_panel
    from pitools.data.freshness import resolve_night
    from pitools.data.panel import select_universe

    names = list(strategies or _strategies.names())
    for name in names:
        _strategies.get(name)  # unknown names fail before any work
    # the same session as `pitools nightly`: a closed NYSE session, by default the last one
    night = as_night(resolve_night(night, what="night"))
    with contextlib.ExitStack() as held:
        _take_the_data_folder(held, profile, names)
        config = config or load_search_config()
        if panel is None:
            st = Store.open(store if store is not None else profile.store_dir)
            symbols, start = select_universe(st, profile.max_symbols, profile.max_years)
            panel = load_panel(st, symbols=symbols, start=start, end=night, fields=("open", "high", "low", "close"),
                               memory_budget_mb=profile.memory_budget_mb)  # the night's past only
        return _night(profile, names, panel, night, config, backend, scheduler, progress)


def _nightly_runner() -> dict:
    """``{"nightly": pid}`` when a nightly run started this process's kernel, else ``{}``."""
    pid = os.environ.get(NIGHTLY_PID_ENV, "")
    return {"nightly": int(pid)} if pid.isdigit() else {}


def _take_the_data_folder(held: contextlib.ExitStack, profile: Profile, names: list[str]) -> None:
    """Hold ``<data_dir>/evolve.lock`` until `held` closes and check ``<data_dir>/evolve`` can be
    written: first of all, so a second run or a read-only folder is refused in a moment, not
    after the imports and the panel."""
    lock, root = profile.data_dir / "evolve.lock", profile.data_dir / "evolve"
    with _saving(lock):  # only taking the lock: errors of the night itself are not the lock's
        held.enter_context(exclusive_lock(
            lock, {"profile": profile.name, "strategies": names, **_nightly_runner()}, "another evolve run",
            hint="wait for it to finish (a nightly run evolves too), or give this one another data folder "
                 "with --set data_dir=DIR"))
    with _saving(root):
        root.mkdir(exist_ok=True)
    _check_writable(root)


def _night(profile: Profile, names: list[str], panel, night: str, config: SearchConfig, backend: str, scheduler,
           progress: bool) -> EvolveReport:
    """The generations of one night, under the evolve lock."""
    from pitools.search.fitness import fitness_map

    windows = tuple(walk_forward_windows(panel.n_bars, config.scoring))
    root = profile.data_dir / "evolve"
    ctx = EvalContext(panel, windows, config.scoring)
    states = {name: _StrategyState(root, name, config, profile.seed, profile.population_size, night,
                                   n_symbols=panel.n_symbols)
              for name in names}
    notes = [n for n in (config.universe_note(name, panel.n_symbols) for name in names) if n]
    for note in notes:
        log.info("%s", note)
    incumbents = {name: st.incumbents(config.incumbents) for name, st in states.items()}
    tonight = {name: [] for name in names}
    best = dict.fromkeys(names, -math.inf)
    history, n_evals, peak = [], 0, 0
    t0 = time.perf_counter()
    for gen in range(1, profile.generations + 1):
        # One map per generation for all strategies: a pool forked 3 times a night, not 24,
        # and batches big enough to keep every worker busy.
        batch = []  # (strategy, params, asked candidate or None for a re-scored incumbent)
        for name, st in states.items():
            carried = incumbents[name] if gen == 1 else []
            batch += [(name, dict(p), None) for p in carried]
            for _ in range(max(profile.population_size - len(carried), 1)):
                cand = st.optimizer.ask()
                batch.append((name, _plain(cand.value), cand))
        res = fitness_map(evaluate_candidate, [{"strategy": n, "params": p} for n, p, _ in batch], ctx,
                          n_workers=profile.n_workers, backend=backend, sleep_between_evals=profile.sleep_between_evals,
                          progress=progress, desc=f"generation {gen}/{profile.generations}", scheduler=scheduler)
        peak = max(peak, res.peak_pss_bytes or 0)
        records = {name: [] for name in names}
        for i, (name, params, asked) in enumerate(batch):
            value = float(res.values[i])
            ok = math.isfinite(value)
            opt = states[name].optimizer
            opt.tell(asked if asked is not None else opt.parametrization.spawn_child(new_value=params),
                     -value if ok else _WORST_LOSS)
            records[name].append({"night": night, "generation": gen, "params": params,
                                  "fitness": value if ok else None, "incumbent": asked is None,
                                  **_clean(res.details[i] or {}), "error": res.errors.get(i)})
            if ok:
                best[name] = max(best[name], value)
        for name, st in states.items():
            st.append(records[name])
            st.checkpoint(gen, night)
            tonight[name].extend(records[name])
            history.append({"strategy": name, "generation": gen, "best_fitness": best[name]})
        n_evals += len(batch)
    elapsed = time.perf_counter() - t0
    rows = [_leader(name, tonight[name], states[name], ctx) for name in names]
    for name in names:
        log.info("%s: best fitness %.3f (optimizer %s)", name, best[name], states[name].origin)
    board = pd.DataFrame(rows).sort_values("fitness", ascending=False, na_position="last").reset_index(drop=True)
    return EvolveReport(night, board, pd.DataFrame(history), n_evals, elapsed, peak, notes)


def _plain(value: dict) -> dict:
    return {k: (int(v) if isinstance(v, (int, np.integer)) else float(v)) for k, v in value.items()}


def _leader(name: str, tonight: list[dict], state: _StrategyState, ctx: EvalContext) -> dict:
    scored = [r for r in tonight if r["fitness"] is not None]
    row = {"strategy": name, "fitness": math.nan, "params": {}, "is_sharpe": math.nan, "oos_sharpe": math.nan,
           "oos_max_drawdown": math.nan, "trades_per_year": math.nan, "deflated_sharpe": math.nan,
           "trials": len(state.records), "evaluated": len(tonight), "failed": len(tonight) - len(scored),
           "optimizer_state": state.origin}
    if not scored:
        return row
    win = max(scored, key=lambda r: r["fitness"])
    res = backtest(name, ctx.panel, win["params"], per_symbol_stats=False, **ctx.scoring.backtest_kwargs())
    oos = np.concatenate([res.portfolio_returns[w] for _, w in ctx.windows])
    trials = [r["oos_sharpe"] for r in state.records if r.get("oos_sharpe") is not None]
    row.update({k: (math.nan if win.get(k) is None else win[k])
                for k in ("fitness", "params", "is_sharpe", "oos_sharpe", "oos_max_drawdown", "trades_per_year")})
    row["deflated_sharpe"] = deflated_sharpe(oos, trials)
    return row

"""One night of evolution: nevergrad searches each strategy's parameters, persistently.

For every strategy, ``population_size`` candidates a generation are asked from a nevergrad
optimizer, scored walk-forward (:mod:`pitools.scoring`) through the fitness map, and told
back. After every generation the optimizer is pickled atomically and every evaluation is
appended to a JSON-lines log, both under ``<data_dir>/evolve/<strategy>/``:

* ``optimizer.pkl`` — tonight's state; tomorrow's run continues from it;
* ``evaluations.jsonl`` — params, fitness, in-/out-of-sample figures and the night of
  every evaluation; if the pickle cannot be loaded (corrupt, another nevergrad, a changed
  search space) the optimizer is rebuilt by telling it this log;
* ``state.json`` — versions and the search space the pickle belongs to.

Each night starts by re-scoring the best parameter sets of earlier nights (the
incumbents) on the new data. A seed in the profile makes the candidates and the results
reproducible.

>>> report = evolve(load_profile("ci"), strategies=["sma_cross"])     # doctest: +SKIP
>>> print(report.to_text())                                           # doctest: +SKIP
"""

from __future__ import annotations

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
import yaml

from . import strategies as _strategies
from .backtest import backtest
from .config import Profile, project_root
from .data.atomic import fsync_dir, write_bytes_atomic, write_text_atomic
from .errors import ConfigError, PitoolsError, did_you_mean
from .scoring import Scoring, deflated_sharpe, score_candidate, walk_forward_windows

__all__ = ["SearchConfig", "load_search_config", "evolve", "EvolveReport", "evaluate_candidate", "EvalContext"]

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

    def space(self, strategy: str) -> dict[str, tuple[float, float, str]]:
        """``{param: (low, high, kind)}`` searched for `strategy`."""
        spec = _strategies.get(strategy)
        mine = self.bounds.get(strategy, {})
        return {k: (*mine.get(k, (p.low, p.high)), p.kind) for k, p in spec.space.items()}


def _number(where: str, value, kind: str = "float") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where} = {value!r} must be a number")
    if kind == "int" and float(value) != int(value):
        raise ConfigError(f"{where} = {value!r} must be an integer")
    return float(value)


def load_search_config(path: str | Path | None = None) -> SearchConfig:
    """Read and check ``params/strategies.yaml`` (or `path`); errors name the strategy and key."""
    path = Path(path) if path is not None else project_root() / "params" / "strategies.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"search config {str(path)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name} must be a mapping with optimizer, incumbents, scoring and strategies")
    known = ("optimizer", "incumbents", "scoring", "strategies")
    for key in raw:
        if key not in known:
            raise ConfigError(f"{path.name}: unknown key {key!r}.{did_you_mean(str(key), known)} Keys: {', '.join(known)}")
    import nevergrad as ng

    optimizer = raw.get("optimizer", "TwoPointsDE")
    if optimizer not in ng.optimizers.registry:
        raise ConfigError(f"{path.name}: optimizer = {optimizer!r} is not a nevergrad optimizer."
                          f"{did_you_mean(str(optimizer), list(ng.optimizers.registry))}")
    incumbents = _number(f"{path.name}: incumbents", raw.get("incumbents", 3), "int")
    if incumbents < 0:
        raise ConfigError(f"{path.name}: incumbents = {int(incumbents)} must be >= 0")
    scoring = _scoring(path.name, raw.get("scoring") or {})
    bounds = {}
    for name, params in (raw.get("strategies") or {}).items():
        spec = _strategies.get(name) if name in _strategies.REGISTRY else None
        if spec is None:
            raise ConfigError(f"{path.name}: strategies: unknown strategy {name!r}."
                              f"{did_you_mean(str(name), _strategies.REGISTRY)} Strategies: {', '.join(_strategies.names())}")
        if not isinstance(params, dict):
            raise ConfigError(f"{path.name}: strategies.{name} must map parameters to [low, high]")
        bounds[name] = {}
        for key, pair in params.items():
            where = f"{path.name}: strategies.{name}.{key}"
            if key not in spec.space:
                raise ConfigError(f"{where}: unknown parameter.{did_you_mean(str(key), spec.space)} "
                                  f"Parameters of {name}: {', '.join(spec.space)}")
            p = spec.space[key]
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ConfigError(f"{where} = {pair!r} must be [low, high]")
            lo, hi = (_number(where, v, p.kind) for v in pair)
            if not p.low <= lo < hi <= p.high:
                raise ConfigError(f"{where} = [{lo:g}, {hi:g}] must have low < high inside the strategy's range "
                                  f"{p.low:g} to {p.high:g}")
            bounds[name][key] = (lo, hi)
    return SearchConfig(optimizer, int(incumbents), scoring, bounds)


def _scoring(file: str, raw: dict) -> Scoring:
    defaults = Scoring()
    values = {}
    for key, value in raw.items():
        where = f"{file}: scoring.{key}"
        if not hasattr(defaults, key):
            raise ConfigError(f"{where}: unknown key.{did_you_mean(str(key), defaults.__dict__)} "
                              f"Keys: {', '.join(defaults.__dict__)}")
        choices = {"walk_forward": ("anchored", "rolling"), "fill": ("next_open", "close"),
                   "direction": ("long_only", "long_short")}.get(key)
        if choices:
            if value not in choices:
                raise ConfigError(f"{where} = {value!r} is not allowed.{did_you_mean(str(value), choices)} "
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

    def __init__(self, root: Path, strategy: str, config: SearchConfig, seed: int, population: int):
        self.dir = root / strategy
        self.dir.mkdir(parents=True, exist_ok=True)
        self.strategy, self.config, self.population = strategy, config, population
        self.space = config.space(strategy)
        self.seed = (seed * 1_000_003 + zlib.crc32(strategy.encode())) % 2**32
        self.records = self._read_log()
        self.optimizer, self.origin = self._load_or_build()

    @property
    def signature(self) -> dict:
        import nevergrad as ng

        return {"nevergrad": ng.__version__, "optimizer": self.config.optimizer, "population": self.population,
                "space": {k: list(v) for k, v in self.space.items()}}

    def _read_log(self) -> list[dict]:
        path = self.dir / "evaluations.jsonl"
        records = []
        if path.exists():
            for n, line in enumerate(path.read_text().splitlines(), 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line torn by a crash mid-append: skip it, say so
                    log.warning("%s: line %d of %s is not JSON; skipped", self.strategy, n, path)
        return records

    def _fresh(self):
        import nevergrad as ng

        items = {}
        for name, (lo, hi, kind) in self.space.items():
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
                if json.loads(meta.read_text()).get("signature") != self.signature:
                    raise ValueError("the search space, optimizer or nevergrad version changed")
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
        with open(self.dir / "evaluations.jsonl", "a") as fh:
            for rec in records:
                fh.write(json.dumps(rec, allow_nan=False, default=_json_default) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records.extend(records)

    def checkpoint(self, generation: int, night: str) -> None:
        write_bytes_atomic(self.dir / "optimizer.pkl", pickle.dumps(self.optimizer))
        write_text_atomic(self.dir / "state.json", json.dumps(
            {"signature": self.signature, "night": night, "generation": generation,
             "evaluations": len(self.records)}, indent=1))
        fsync_dir(self.dir)


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


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

    def to_text(self) -> str:
        from .memory import format_mb

        lb = self.leaderboard.copy()
        lb["params"] = lb["params"].map(lambda p: ", ".join(f"{k}={v:g}" for k, v in p.items()))
        cols = ["strategy", "fitness", "is_sharpe", "oos_sharpe", "oos_max_drawdown", "trades_per_year",
                "deflated_sharpe", "trials", "params"]
        with pd.option_context("display.width", 200, "display.max_colwidth", 60):
            table = lb[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        return (f"evolution, night {self.night}: {self.evaluations} evaluations in {self.elapsed_s:.2f} s, "
                f"pool peak PSS {format_mb(self.peak_pss_bytes)}\n{table}")


def evolve(profile: Profile, strategies=None, store=None, night: str | None = None, config: SearchConfig | None = None,
           backend: str = "process", scheduler=None, progress: bool = True, panel=None) -> EvolveReport:
    """Run one night of evolution for `strategies` (default: all eight) with `profile`.

    Loads the profile's universe (``max_symbols`` × ``max_years``, within
    ``memory_budget_mb``) from `store` (default: the profile's), unless a `panel` is given,
    and writes state under ``<data_dir>/evolve``.
    """
    from .data import Store, load_panel
    from .data.panel import select_universe
    from .fitness import fitness_map

    config = config or load_search_config()
    names = list(strategies or _strategies.names())
    for name in names:
        _strategies.get(name)  # unknown names fail before any work
    if panel is None:
        st = Store.open(store if store is not None else profile.store_dir)
        symbols, start = select_universe(st, profile.max_symbols, profile.max_years)
        panel = load_panel(st, symbols=symbols, start=start, fields=("open", "high", "low", "close"),
                           memory_budget_mb=profile.memory_budget_mb)
    night = night or str(panel.dates[-1].date())
    windows = tuple(walk_forward_windows(panel.n_bars, config.scoring))
    root = profile.data_dir / "evolve"
    ctx = EvalContext(panel, windows, config.scoring)
    states = {name: _StrategyState(root, name, config, profile.seed, profile.population_size) for name in names}
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
    return EvolveReport(night, board, pd.DataFrame(history), n_evals, elapsed, peak)


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

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
import logging
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pitools.config import Profile
from pitools.data.store_format import PRICE_FIELDS
from pitools.engine import strategies as _strategies
from pitools.engine.backtest import backtest
from pitools.errors import DataFolderNotWritable, EvolveError
from pitools.locks import NIGHTLY_PID_ENV, exclusive_lock
from pitools.search.evolution_log import as_night
from pitools.search.evolve_state import StrategyState, check_writable, saving
from pitools.search.scoring import Scoring, deflated_sharpe, score_candidate, walk_forward_windows
from pitools.search.search_config import SearchConfig, load_search_config
from pitools.data.freshness import resolve_night
from pitools.data.universe import profile_universe
from pitools.memory import format_mb

__all__ = ["SearchConfig", "load_search_config", "evolve", "EvolveReport", "evaluate_candidate", "EvalContext",
           "EvolveError", "DataFolderNotWritable"]

log = logging.getLogger("pitools")

_WORST_LOSS = 1e6  # told to nevergrad for a failed candidate (it minimises; inf upsets some optimizers)


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

    names = list(strategies or _strategies.names())
    for name in names:
        _strategies.get(name)  # unknown names fail before any work
    # the same session as `pitools nightly`: a closed NYSE session, by default the last one
    night = as_night(resolve_night(night, what="night"))
    with contextlib.ExitStack() as held:
        _take_the_data_folder(held, profile, names)
        config = config or load_search_config()
        if panel is None:
            panel = profile_universe(profile, store).load(end=night, fields=PRICE_FIELDS)  # the night's past only
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
    with saving(lock):  # only taking the lock: errors of the night itself are not the lock's
        held.enter_context(exclusive_lock(
            lock, {"profile": profile.name, "strategies": names, **_nightly_runner()}, "another evolve run",
            hint="wait for it to finish (a nightly run evolves too), or give this one another data folder "
                 "with --set data_dir=DIR"))
    with saving(root):
        root.mkdir(exist_ok=True)
    check_writable(root)


def _night(profile: Profile, names: list[str], panel, night: str, config: SearchConfig, backend: str, scheduler,
           progress: bool) -> EvolveReport:
    """The generations of one night, under the evolve lock."""
    from pitools.search.fitness import fitness_map

    windows = tuple(walk_forward_windows(panel.n_bars, config.scoring))
    root = profile.data_dir / "evolve"
    ctx = EvalContext(panel, windows, config.scoring)
    states = {name: StrategyState(root, name, config, profile.seed, profile.population_size, night,
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


def _leader(name: str, tonight: list[dict], state: StrategyState, ctx: EvalContext) -> dict:
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

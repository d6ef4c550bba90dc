"""Evolution: the search config, walk-forward scoring, persistence across nights, the command."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import pitools as pt
from conftest import ROOT, run_cli
from pitools.config import load_profile
from pitools.data.panel import Panel
from pitools.errors import ConfigError
from pitools.search.evolve import evolve, load_search_config
from pitools.search.scoring import Scoring, deflated_sharpe, return_metrics, score_candidate, walk_forward_windows

SHIPPED = ROOT / "params" / "strategies.yaml"


# ---------------------------------------------------------------- params/strategies.yaml

def test_the_shipped_search_config_covers_the_eight():
    cfg = load_search_config(SHIPPED)
    assert sorted(cfg.bounds) == sorted(pt.strategies.names())
    lo, hi, kind = cfg.space("sma_cross")["fast"]
    assert (lo, hi, kind) == (3, 60, "int")


@pytest.mark.parametrize("edit,fragment", [
    ("strategies:\n  sma_cros: {fast: [3, 60]}\n", "unknown strategy 'sma_cros'.*'sma_cross'"),
    ("strategies:\n  sma_cross: {fsat: [3, 60]}\n", "strategies.sma_cross.fsat: unknown parameter.*'fast'"),
    ("strategies:\n  sma_cross: {fast: [3, 600]}\n", r"strategies.sma_cross.fast = \[3, 600\].*2 to 100"),
    ("strategies:\n  sma_cross: {fast: [30, 3]}\n", "low < high"),
    ("strategies:\n  sma_cross: {fast: [3.5, 30]}\n", "fast = 3.5 must be an integer"),
    ("strategies:\n  macd: {fast: 12}\n", r"strategies.macd.fast = 12 must be \[low, high\]"),
    ("scoring:\n  walk_forwrd: anchored\n", "scoring.walk_forwrd: unknown key.*'walk_forward'"),
    ("scoring:\n  walk_forward: sliding\n", "scoring.walk_forward = 'sliding'.*anchored, rolling"),
    ("scoring:\n  folds: 0\n", "scoring.folds = 0 must be from 1 to 20"),
    ("scoring:\n  fees: -0.1\n", "scoring.fees = -0.1"),
    ("optimizer: TwoPointDE\n", "optimizer = 'TwoPointDE'.*TwoPointsDE"),
    ("incumbent: 3\n", "unknown key 'incumbent'.*'incumbents'"),
])
def test_a_malformed_entry_names_the_strategy_and_key(tmp_path, edit, fragment):
    path = tmp_path / "strategies.yaml"
    path.write_text(edit)
    with pytest.raises(ConfigError, match=fragment):
        load_search_config(path)


# ---------------------------------------------------------------- walk-forward scoring

@pytest.mark.parametrize("mode", ["anchored", "rolling"])
def test_walk_forward_windows(mode):
    windows = walk_forward_windows(1000, Scoring(walk_forward=mode, folds=4, oos_fraction=0.4))
    oos = [w for _, w in windows]
    assert oos[0].start == 600 and oos[-1].stop == 1000
    assert all(a.stop == b.start for a, b in zip(oos, oos[1:]))  # consecutive, no overlap
    for is_, o in windows:
        assert is_.stop == o.start  # in-sample right before its out-of-sample window
    starts = [is_.start for is_, _ in windows]
    lengths = [is_.stop - is_.start for is_, _ in windows]
    if mode == "anchored":
        assert starts == [0, 0, 0, 0]
    else:
        assert lengths == [600] * 4


def test_too_short_a_history_for_the_folds_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot make 20 out-of-sample folds"):
        walk_forward_windows(30, Scoring(folds=20))


@pytest.mark.parametrize("mode", ["anchored", "rolling"])
def test_out_of_sample_bars_never_reach_the_fitting_windows(demo_store, mode):
    """Change every bar from a fold's out-of-sample start on: its in-sample returns stay the same."""
    panel = pt.load_panel(demo_store, fields=("open", "high", "low", "close"))
    scoring = Scoring(walk_forward=mode, folds=3, oos_fraction=0.5)
    rng = np.random.default_rng(4)
    for fit, oos in walk_forward_windows(panel.n_bars, scoring):
        shock = np.ones((panel.n_bars, 1), np.float32)
        shock[oos.start:] = rng.uniform(0.5, 1.5, (panel.n_bars - oos.start, 1))
        changed = Panel(panel.dates, panel.symbols, {f: np.asfortranarray(panel.field(f) * shock) for f in panel.fields})
        for name in pt.strategies.names():
            a = pt.backtest(name, panel, **scoring.backtest_kwargs()).portfolio_returns
            b = pt.backtest(name, changed, **scoring.backtest_kwargs()).portfolio_returns
            np.testing.assert_array_equal(a[fit], b[fit])
            assert return_metrics(a[fit]) == return_metrics(b[fit])
            assert not np.allclose(a[oos], b[oos], equal_nan=True), name  # the shock did reach the OOS bars


def test_fitness_is_oos_sharpe_minus_the_penalties():
    rng = np.random.default_rng(1)
    r = rng.normal(0.0005, 0.01, 1000)
    r[:5] = np.nan  # before the first symbol starts
    s = Scoring(folds=2, oos_fraction=0.5, min_trades_per_year=4.0, trade_penalty=0.5, max_drawdown=0.05,
                drawdown_penalty=2.0)
    windows = walk_forward_windows(len(r), s)
    fitness, d = score_candidate(r, n_trades=20, n_symbols=5, windows=windows, scoring=s)
    oos = r[500:]
    sharpe = oos.mean() / oos.std(ddof=1) * math.sqrt(252)
    eq = np.cumprod(1 + oos)
    mdd = max(1 - e / p for e, p in zip(eq, np.maximum.accumulate(np.r_[1.0, eq])[1:]))
    years = 995 / 252
    shortfall = max(0.0, 1 - (20 / 5 / years) / 4.0)
    assert d["oos_sharpe"] == pytest.approx(sharpe, rel=1e-12)
    assert d["oos_max_drawdown"] == pytest.approx(mdd, rel=1e-12)
    assert fitness == pytest.approx(sharpe - 0.5 * shortfall - 2.0 * max(0.0, mdd - 0.05), rel=1e-12)
    in_sample = [r[5:500], r[5:750]]  # anchored folds: OOS 500..750 after bars 0..500, OOS 750..1000 after 0..750
    want_is = np.mean([x.mean() / x.std(ddof=1) * math.sqrt(252) for x in in_sample])
    assert d["is_sharpe"] == pytest.approx(want_is, rel=1e-12)


def test_deflated_sharpe_falls_with_the_number_of_trials():
    rng = np.random.default_rng(2)
    r = rng.normal(0.002, 0.01, 750)  # a real edge: annualised Sharpe ~3
    best = return_metrics(r)["sharpe"]
    few = deflated_sharpe(r, [best] + list(rng.normal(0, 0.5, 4)))
    many = deflated_sharpe(r, [best] + list(rng.normal(0, 0.5, 500)))
    noise = rng.normal(0.0, 0.01, 750)
    lucky = deflated_sharpe(noise, [return_metrics(noise)["sharpe"]] + list(rng.normal(0, 0.5, 500)))
    assert 0.9 < few <= 1.0 and many < few and lucky < 0.5


# ---------------------------------------------------------------- nights

@pytest.fixture(scope="module")
def small_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "strategies.yaml"
    text = SHIPPED.read_text().replace("incumbents: 3", "incumbents: 2")
    # the test store has 24 symbols and 3 years: top-k and lookbacks that fit it
    text = text.replace("xs_momentum: {lookback: [20, 250], top_k: [3, 40], rebalance: [5, 63]}",
                        "xs_momentum: {lookback: [20, 120], top_k: [2, 8], rebalance: [5, 40]}")
    assert "top_k: [2, 8]" in text
    path.write_text(text)
    return load_search_config(path)


def _profile(data_dir: Path, **changes):
    sets = [f"data_dir={data_dir}", "population_size=6", "generations=2", "n_workers=2"]
    sets += [f"{k}={v}" for k, v in changes.items()]
    return load_profile("ci", overrides=sets)


def _log(data_dir: Path, strategy: str) -> list[dict]:
    path = data_dir / "evolve" / strategy / "evaluations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_night_logs_every_evaluation_and_checkpoints(tmp_path, demo_store, small_config):
    rep = evolve(_profile(tmp_path), strategies=["sma_cross", "xs_momentum"], store=demo_store, config=small_config,
                 progress=False)
    assert set(rep.leaderboard.strategy) == {"sma_cross", "xs_momentum"}
    assert rep.evaluations == 2 * 6 * 2
    for name in ("sma_cross", "xs_momentum"):
        recs = _log(tmp_path, name)
        assert len(recs) == 12 and {r["generation"] for r in recs} == {1, 2}
        assert all(set(r["params"]) == set(pt.strategies.get(name).space) for r in recs)
        row = rep.leaderboard.set_index("strategy").loc[name]
        assert row.fitness == max(r["fitness"] for r in recs if r["fitness"] is not None)
        assert np.isfinite([row.is_sharpe, row.oos_sharpe]).all() and 0 <= row.deflated_sharpe <= 1
        assert (tmp_path / "evolve" / name / "optimizer.pkl").stat().st_size > 0
    assert "is_sharpe" in rep.to_text() and "oos_sharpe" in rep.to_text()
    assert list(rep.history.columns) == ["strategy", "generation", "best_fitness"]


def test_the_next_night_continues_and_rescores_the_incumbents(tmp_path, demo_store, small_config):
    prof = _profile(tmp_path)
    evolve(prof, strategies=["sma_cross"], store=demo_store, config=small_config, progress=False, night="2026-11-19")
    first = _log(tmp_path, "sma_cross")
    rep = evolve(prof, strategies=["sma_cross"], store=demo_store, config=small_config, progress=False,
                 night="2026-11-20")
    assert rep.leaderboard.loc[0, "optimizer_state"] == "checkpoint"
    second = [r for r in _log(tmp_path, "sma_cross") if r["night"] == "2026-11-20"]
    incumbents = [r for r in second if r["incumbent"]]
    best_before = sorted((r for r in first if r["fitness"] is not None), key=lambda r: -r["fitness"])
    assert [r["params"] for r in incumbents] == [r["params"] for r in best_before[:2]]
    assert all(r["generation"] == 1 for r in incumbents)
    new = [json.dumps(r["params"], sort_keys=True) for r in second if not r["incumbent"]]
    assert len(new) == 10  # 6 - 2 incumbents in generation 1, 6 in generation 2


def test_a_seed_gives_the_same_search(tmp_path, demo_store, small_config):
    for d in ("a", "b"):
        evolve(_profile(tmp_path / d), strategies=["macd"], store=demo_store, config=small_config, progress=False)
    a, b = _log(tmp_path / "a", "macd"), _log(tmp_path / "b", "macd")
    assert [(r["params"], r["fitness"]) for r in a] == [(r["params"], r["fitness"]) for r in b]
    evolve(_profile(tmp_path / "c", seed=8), strategies=["macd"], store=demo_store, config=small_config,
           progress=False)
    assert [r["params"] for r in _log(tmp_path / "c", "macd")] != [r["params"] for r in a]


def test_serial_and_process_backends_agree(tmp_path, demo_store, small_config):
    for d, backend in (("s", "serial"), ("p", "process")):
        evolve(_profile(tmp_path / d), strategies=["rsi_reversion"], store=demo_store, config=small_config,
               progress=False, backend=backend)
    assert _log(tmp_path / "s", "rsi_reversion") == _log(tmp_path / "p", "rsi_reversion")


def test_a_corrupt_checkpoint_is_rebuilt_from_the_log(tmp_path, demo_store, small_config, caplog):
    prof = _profile(tmp_path)
    evolve(prof, strategies=["ts_momentum"], store=demo_store, config=small_config, progress=False)
    pkl = tmp_path / "evolve" / "ts_momentum" / "optimizer.pkl"
    pkl.write_bytes(pkl.read_bytes()[:100])  # torn
    with open(tmp_path / "evolve" / "ts_momentum" / "evaluations.jsonl", "a") as fh:
        fh.write('{"night": "2026-11-20", "params": {"look')  # a line torn by a crash
    rep = evolve(prof, strategies=["ts_momentum"], store=demo_store, config=small_config, progress=False)
    assert rep.leaderboard.loc[0, "optimizer_state"] == "rebuilt from log"
    assert "rebuilding it from 12 logged evaluations" in caplog.text and "is not JSON; skipped" in caplog.text
    assert pkl.stat().st_size > 100  # a good checkpoint again


def _night_in_a_child(data_dir, store, config):
    os.setpgrp()  # its own process group, so the test can kill it with its pool workers
    evolve(_profile(data_dir, generations=8, sleep_between_evals=0.02), strategies=["sma_cross"], store=store,
           config=config, progress=False)


def test_killed_during_a_generation_the_next_run_resumes_from_a_valid_state(tmp_path, demo_store, small_config):
    child = mp.get_context("fork").Process(target=_night_in_a_child, args=(tmp_path, demo_store, small_config))
    child.start()
    path = tmp_path / "evolve" / "sma_cross" / "evaluations.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (path.exists() and len(path.read_text().splitlines()) >= 12):
        time.sleep(0.02)
    time.sleep(0.05)  # into the third generation's map
    os.killpg(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL
    before = [json.loads(line) for line in path.read_text().splitlines()]
    assert 12 <= len(before) < 48  # killed mid-night: some generations logged, not all
    rep = evolve(_profile(tmp_path), strategies=["sma_cross"], store=demo_store, config=small_config, progress=False)
    assert rep.leaderboard.loc[0, "optimizer_state"] in ("checkpoint", "rebuilt from log")
    after = _log(tmp_path, "sma_cross")
    assert after[:len(before)] == before and len(after) == len(before) + 12
    assert np.isfinite(rep.leaderboard.loc[0, "fitness"])


# ---------------------------------------------------------------- the command

def test_pitools_evolve_prints_the_leaderboard(tmp_path, demo_store):
    out = run_cli("evolve", "--profile", "ci", "--set", f"data_dir={tmp_path}", "--set", "population_size=4",
                  "--set", "generations=1", "--strategy", "sma_cross", "--strategy", "donchian_breakout",
                  "--store", str(demo_store))
    assert out.returncode == 0, out.stderr
    assert "is_sharpe" in out.stdout and "oos_sharpe" in out.stdout and "deflated_sharpe" in out.stdout
    assert "8 evaluations in" in out.stdout and "pool peak PSS" in out.stdout
    from pitools.kernels import cache_dir

    assert any(cache_dir().rglob("*.nbi")) and not (tmp_path / "numba-cache").exists()  # one cache per user


def test_pitools_evolve_names_an_unknown_strategy(tmp_path, demo_store):
    out = run_cli("evolve", "--profile", "ci", "--set", f"data_dir={tmp_path}", "--strategy", "sma_crss",
                  "--store", str(demo_store))
    assert out.returncode == 2 and "unknown strategy 'sma_crss'" in out.stderr and "sma_cross" in out.stderr
    assert "Traceback" not in out.stderr


def test_every_scoring_setting_has_what_it_allows():
    """A Scoring field missing from the table could never be set from params/strategies.yaml."""
    import dataclasses

    from pitools.search.search_config import SCORING_ALLOWED

    assert list(SCORING_ALLOWED) == [f.name for f in dataclasses.fields(Scoring)]

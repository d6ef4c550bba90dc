"""Parameters that count symbols (xs_momentum's top_k) are searched up to the universe's size, and
the evolution says so: above it no bar ever has top_k returns to rank, nothing trades, and the
night scored the trade penalty (−0.5) with no word."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pitools as pt
from pitools.config import load_profile
from pitools.search.evolve import SearchConfig, evolve, load_search_config

END = "2026-11-20"


@pytest.fixture(scope="module")
def shipped() -> SearchConfig:
    return load_search_config()


@pytest.fixture(scope="module")
def two_symbols(tmp_path_factory):
    path = tmp_path_factory.mktemp("two") / "store"
    pt.make_demo_store(path, n_symbols=2, years=2, seed=5, end=END)
    return pt.load_panel(path, fields=("open", "high", "low", "close"))


def test_top_k_is_clipped_to_the_universe_and_nothing_else_moves(shipped):
    wide = shipped.space("xs_momentum")
    assert wide["top_k"] == (3, 40, "int")  # params/strategies.yaml
    assert shipped.space("xs_momentum", 24)["top_k"] == (3, 24, "int")
    # the file's low bound would leave only "hold all": the strategy's own low bound (1) instead
    assert shipped.space("xs_momentum", 3)["top_k"] == (1, 3, "int")
    assert shipped.space("xs_momentum", 2)["top_k"] == (1, 2, "int")
    assert shipped.space("xs_momentum", 1)["top_k"] == (1, 1, "int")  # one value: fixed
    assert shipped.space("xs_momentum", 4)["top_k"] == (3, 4, "int")
    assert shipped.space("xs_momentum", 40) == wide == shipped.space("xs_momentum", 2556)
    for n in (1, 2, 24):
        got = shipped.space("xs_momentum", n)
        assert {k: v for k, v in got.items() if k != "top_k"} == {k: v for k, v in wide.items() if k != "top_k"}
    for name in pt.strategies.names():
        if name != "xs_momentum":
            assert shipped.space(name, 1) == shipped.space(name), name  # nothing else counts symbols
    assert pt.strategies.get("xs_momentum").counts_symbols == ("top_k",)


def test_the_note_says_what_was_bounded_and_why(shipped):
    assert shipped.universe_note("xs_momentum", 40) is None
    assert shipped.universe_note("sma_cross", 1) is None
    note = shipped.universe_note("xs_momentum", 24)
    assert note.startswith("xs_momentum:") and "`top_k` 3–24 instead of 3–40" in note
    assert "24 symbols" in note and "params/strategies.yaml" in note
    assert "`top_k` fixed at 1 instead of 3–40" in shipped.universe_note("xs_momentum", 1)
    assert "1 symbol " in shipped.universe_note("xs_momentum", 1)


def test_why_the_bound_is_needed_a_top_k_above_the_universe_never_trades(two_symbols):
    params = {"lookback": 20, "top_k": 3, "rebalance": 5}
    above = pt.backtest("xs_momentum", two_symbols, params)
    assert len(above.trades) == 0 and (above.stats["exposure"] == 0).all()  # never holds anything
    assert above.portfolio["total_return"] == 0
    ranked = pt.backtest("xs_momentum", two_symbols, {**params, "top_k": 1})
    assert ranked.portfolio["n_trades"] > 0 and (ranked.stats["exposure"] > 0).all()


def test_a_night_on_two_symbols_searches_top_k_within_them_and_says_so(tmp_path, two_symbols, shipped):
    prof = load_profile("ci", overrides=[f"data_dir={tmp_path}", "population_size=4", "generations=2",
                                         "n_workers=1"])
    rep = evolve(prof, strategies=["xs_momentum"], panel=two_symbols, config=shipped, backend="serial",
                 progress=False)
    records = [json.loads(line) for line in (tmp_path / "evolve" / "xs_momentum" / "evaluations.jsonl")
               .read_text().splitlines()]
    assert len(records) == 8
    assert {r["params"]["top_k"] for r in records} <= {1, 2}
    assert all(isinstance(r["params"]["top_k"], int) for r in records)
    assert all(20 <= r["params"]["lookback"] <= 250 for r in records)  # the rest is searched as before
    assert all(r["fitness"] is not None for r in records)
    best = rep.leaderboard.set_index("strategy").loc["xs_momentum"]
    assert best["params"]["top_k"] in (1, 2) and np.isfinite(best["fitness"])
    assert rep.notes == [shipped.universe_note("xs_momentum", 2)]
    assert "note: xs_momentum: searching `top_k` 1–2 instead of 3–40" in rep.to_text()
    # the next night continues from the checkpoint of the same bounded space
    again = evolve(prof, strategies=["xs_momentum"], panel=two_symbols, config=shipped, backend="serial",
                   progress=False)
    assert again.leaderboard.loc[0, "optimizer_state"] == "checkpoint"

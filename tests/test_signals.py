"""Tomorrow's signals: right positions, best evolved parameters, idempotent writes to trades.db."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from pitools.market.signals import best_params, next_session, next_session_signals, write_next_session_signals


@pytest.fixture(scope="module")
def panel(demo_store):
    return pt.load_panel(demo_store, fields=("open", "high", "low", "close"))


def test_the_next_session_skips_weekends_and_holidays():
    assert next_session("2026-11-20") == pd.Timestamp("2026-11-23")  # Fri -> Mon
    assert next_session("2026-11-25") == pd.Timestamp("2026-11-27")  # Thanksgiving closed
    assert next_session("2026-12-24") == pd.Timestamp("2026-12-28")  # Christmas, weekend


@pytest.mark.parametrize("direction", ["long_only", "long_short"])
def test_sma_cross_positions_match_the_last_bar_of_a_pandas_reference(panel, direction):
    rows = {r["symbol"]: r for r in next_session_signals(panel, "sma_cross", {"fast": 10, "slow": 30},
                                                          direction=direction)}
    assert set(rows) == {s for j, s in enumerate(panel.symbols) if np.isfinite(panel.close[:, j]).any()}
    for j, symbol in enumerate(panel.symbols):
        closes = pd.Series(panel.close[:, j]).dropna().astype(float)
        diff = closes.rolling(10).mean().iloc[-1] - closes.rolling(30).mean().iloc[-1]
        want = "long" if diff > 0 else ("short" if direction == "long_short" and diff < 0 else "flat")
        assert rows[symbol]["side"] == want, symbol
        assert rows[symbol]["params"] == {"fast": 10.0, "slow": 30.0}


def test_best_params_come_from_the_latest_night(tmp_path):
    log = tmp_path / "evolve" / "macd" / "evaluations.jsonl"
    log.parent.mkdir(parents=True)
    recs = [{"night": "2026-11-19", "params": {"fast": 5, "slow": 40, "signal": 9}, "fitness": 3.0},
            {"night": "2026-11-20", "params": {"fast": 8, "slow": 30, "signal": 5}, "fitness": 0.7},
            {"night": "2026-11-20", "params": {"fast": 12, "slow": 50, "signal": 7}, "fitness": 0.9},
            {"night": "2026-11-20", "params": {"fast": 3, "slow": 20, "signal": 4}, "fitness": None}]
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n{torn")
    params, where = best_params(tmp_path, "macd")
    assert params == {"fast": 12, "slow": 50, "signal": 7} and "night 2026-11-20" in where
    assert best_params(tmp_path, "ts_momentum") == (pt.strategies.get("ts_momentum").defaults,
                                                    "defaults (never evolved)")


def test_rerunning_a_night_replaces_its_signals(tmp_path, panel):
    with pt.open_trades_db(tmp_path / "trades.db") as db:
        run = db.start_run("2026-11-20")
        first = write_next_session_signals(db, panel, data_dir=tmp_path, run_id=run, regime="calm_bull")
        again = write_next_session_signals(db, panel, data_dir=tmp_path, run_id=run, regime="calm_bull")
        n = sum(np.isfinite(panel.close).any(axis=0))
        assert len(first) == len(again) == 8 * n
        assert set(again.session) == {"2026-11-23"} and set(again.regime) == {"calm_bull"}
        total = db.query("SELECT COUNT(*) AS n FROM signals").n.iloc[0]
        assert total == 8 * n  # replaced, not duplicated
        assert set(again.side) <= {"long", "short", "flat"}


def test_a_night_after_the_last_bar_gets_signals_for_the_session_after_the_night(tmp_path, panel):
    # stale data (last bar Friday 2026-11-20) on the night of Tuesday 2026-11-24: tomorrow is the 25th
    with pt.open_trades_db(tmp_path / "trades.db") as db:
        rows = write_next_session_signals(db, panel, ["sma_cross"], session=next_session("2026-11-24"))
        assert set(rows.session) == {"2026-11-25"}
        assert db.signals("2026-11-23").empty


def test_given_parameters_are_used_as_they_are(tmp_path, panel):
    with pt.open_trades_db(tmp_path / "trades.db") as db:
        rows = write_next_session_signals(db, panel, ["sma_cross"], data_dir=tmp_path,
                                          params={"sma_cross": {"fast": 5, "slow": 60}})
        assert {json.loads(p)["slow"] for p in rows.params} == {60}

"""02_regime, 03_research and 05_report run by papermill on a tiny store, two nights in a row,
against a real trades.db; the chart and report helpers they use, on small synthetic input."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest

import pitools as pt
from pitools.notebook import charts
from pitools.market.regime import lifecycle
from pitools.market import morning
from pitools.box import reports
from pitools.config import load_profile

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"
NIGHT1, NIGHT2, NIGHT3 = "2026-11-20", "2026-11-23", "2026-11-24"  # store ends on NIGHT1 (a Friday)
PLOTLY = "application/vnd.plotly.v1+json"
CONTRACT = ("profile", "overrides", "night", "store", "run_dir", "run_id")
MINE = ("02_regime", "03_research", "05_report")


# ---------------------------------------------------------------- helpers

def _cells(path: Path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _outputs(path: Path):
    return [o for c in _cells(path) for o in c.get("outputs", [])]


def _text(path: Path) -> str:
    """Everything a reader sees as text: streams and the plain-text form of displays."""
    parts = []
    for o in _outputs(path):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif PLOTLY not in o.get("data", {}):
            parts.append(o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _run(name: str, out_dir: Path, **params) -> tuple[Path, float]:
    out = out_dir / f"{name}.ipynb"
    t0 = time.perf_counter()
    pm.execute_notebook(str(NB / f"{name}.ipynb"), str(out), parameters=params, kernel_name="pitools",
                        cwd=str(ROOT), progress_bar=False, execution_timeout=300)
    return out, time.perf_counter() - t0


def _flip(side: str) -> str:
    return "flat" if side != "flat" else "long"


# ---------------------------------------------------------------- the nights

@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Night 1 and night 2 as the runner would run them (04_signals simulated with
    pitools.market.signals), then a night 3 whose 03_research 'failed' (only 05 runs)."""
    from pitools.box.kernelspec import ensure_kernel
    from pitools.market.signals import next_session_signals, write_next_session_signals, best_params

    ensure_kernel()
    tmp = tmp_path_factory.mktemp("research")
    store = tmp / "store"
    pt.make_demo_store(store, n_symbols=12, years=2, seed=5, end=NIGHT1)
    overrides = [f"data_dir={tmp / 'data'}", "population_size=4", "generations=2", "n_workers=1"]
    prof = load_profile("ci", overrides=overrides)
    common = {"profile": "ci", "overrides": overrides, "store": str(store)}
    out = {"prof": prof, "tmp": tmp}

    # night 1: a run record the runner would be writing, 02, 03, "04", 05
    run1 = tmp / "outputs" / NIGHT1
    run1.mkdir(parents=True)
    with pt.open_trades_db(prof.db_path) as db:
        run_id1 = db.start_run(NIGHT1, profile="ci")
    record = {"status": "running", "started_at": "2026-11-20T23:30:00+00:00", "notebooks": [],
              "peak_pss_bytes": 400 * 2**20}
    for name in ("02_regime", "03_research"):
        path, secs = _run(name, run1, night=NIGHT1, run_dir=str(run1), run_id=run_id1, **common)
        out[name, 1] = path
        record["notebooks"].append({"name": name, "status": "ok", "duration_s": secs,
                                    "peak_pss_bytes": 300 * 2**20, "peak_rss_bytes": 200 * 2**20})
        (run1 / "run.json").write_text(json.dumps(record))
    with pt.open_trades_db(prof.db_path) as db:
        out["db1"] = {t: db.query(f"SELECT * FROM {t}") for t in ("regimes", "evaluations")}
        panel = pt.load_panel(store, fields=("open", "high", "low", "close"))
        signals1 = write_next_session_signals(db, panel, data_dir=prof.data_dir, run_id=run_id1)
    record["notebooks"].append({"name": "05_report", "status": "running"})
    (run1 / "run.json").write_text(json.dumps(record))
    out["05_report", 1], _ = _run("05_report", run1, night=NIGHT1, run_dir=str(run1), run_id=run_id1, **common)

    # night 2 (the store did not grow: the regime model is reused), by hand: no run_dir
    run2 = tmp / "outputs" / NIGHT2
    run2.mkdir(parents=True)
    for name in ("02_regime", "03_research"):
        out[name, 2], _ = _run(name, run2, night=NIGHT2, **common)
    session2 = "2026-11-24"
    assert signals1["session"].iloc[0] == NIGHT2  # night 1's signals are for the next session
    rows = []
    for name in pt.strategies.names():
        rows += next_session_signals(panel, name, best_params(prof.data_dir, name)[0])
    for r in rows[:3]:  # make sure some sides flip, whatever tonight's winners are
        old = signals1[(signals1.strategy == r["strategy"]) & (signals1.symbol == r["symbol"])]["side"].iloc[0]
        r["side"] = _flip(old)
        r["strength"] = 0.0 if r["side"] == "flat" else 1.0
    with pt.open_trades_db(prof.db_path) as db:
        db.write_signals(session2, rows)
    out["flipped"] = [(r["strategy"], r["symbol"]) for r in rows[:3]]
    out["05_report", 2], _ = _run("05_report", run2, night=NIGHT2, **common)

    # night 3: 03_research failed (no evaluations, no new signals); the report still runs
    run3 = tmp / "outputs" / NIGHT3
    run3.mkdir(parents=True)
    (run3 / "run.json").write_text(json.dumps({"status": "failed", "notebooks": [
        {"name": "03_research", "status": "failed", "duration_s": 3.5}]}))
    out["05_report", 3], _ = _run("05_report", run3, night=NIGHT3, run_dir=str(run3), **common)
    return out


@pytest.mark.slow
def test_notebooks_run_without_errors_and_offline(nights):
    paths = [v for k, v in nights.items() if isinstance(k, tuple)]
    assert len(paths) == 7
    for path in paths:
        assert not [o for o in _outputs(path) if o.get("output_type") == "error"], path.name
        raw = path.read_text()
        assert "cdn.plot.ly" not in raw and "cdn.jsdelivr" not in raw, path.name
    for key in (("02_regime", 1), ("03_research", 1), ("02_regime", 2), ("03_research", 2)):
        mimes = [m for o in _outputs(nights[key]) for m in o.get("data", {})]
        assert PLOTLY in mimes, key
    # 03 shows convergence, parameter map and equity: three figures, each with data
    figs = [o["data"][PLOTLY] for o in _outputs(nights["03_research", 1]) if PLOTLY in o.get("data", {})]
    assert len(figs) == 3 and all(f["data"] for f in figs)
    assert {t["name"] for t in figs[2]["data"]} == set(pt.strategies.names())  # the winners' equity


@pytest.mark.slow
def test_regime_notebook_writes_every_session_and_reuses_a_fresh_model(nights):
    regimes = nights["db1"]["regimes"]
    assert len(regimes) > 400
    assert set(regimes["regime"]) <= set(pt.regime.load(lifecycle.regime_model_path(nights["prof"])).regimes)
    assert regimes["run_id"].notna().all() and regimes["session"].max() == NIGHT1
    text1, text2 = _text(nights["02_regime", 1]), _text(nights["02_regime", 2])
    assert "fitted a new model" in text1 and "there is no model" in text1
    assert "loaded the model" in text2  # same data a night later: no refit
    assert f"regime on {NIGHT1}:" in text1
    model = pt.regime.load(lifecycle.regime_model_path(nights["prof"]))
    fig = [o["data"][PLOTLY] for o in _outputs(nights["02_regime", 1]) if PLOTLY in o.get("data", {})][0]
    assert {s["fillcolor"] for s in fig["layout"]["shapes"]} <= set(charts.regime_colors(model.regimes).values())


@pytest.mark.slow
def test_research_notebook_writes_the_nights_leaderboard(nights):
    ev = nights["db1"]["evaluations"]
    tonight = ev[ev["night"] == NIGHT1]
    assert sorted(tonight["strategy"]) == sorted(pt.strategies.names())
    assert (tonight["rank"] == 1).all() and tonight["run_id"].notna().all()
    assert tonight["oos_sharpe"].notna().any()
    with pt.open_trades_db(nights["prof"].db_path) as db:
        nights_written = db.query("SELECT night, COUNT(*) AS n FROM evaluations GROUP BY night")
    assert dict(zip(nights_written["night"], nights_written["n"])) == {NIGHT1: 8, NIGHT2: 8}
    text = _text(nights["03_research", 1])
    assert f"night {NIGHT1}: 64 evaluations in" in text and "pool peak PSS" in text and " MB" in text
    assert "IS Sharpe (ann.)" in text and "OOS Sharpe (ann.)" in text


@pytest.mark.slow
def test_report_first_night(nights):
    text = _text(nights["05_report", 1])
    for name in pt.strategies.names():
        assert name in text
    assert "First night" in text
    assert f"regime on {NIGHT1}:" in text
    assert f"signals for {NIGHT2}:" in text  # what 04 wrote for the next session
    assert "No earlier session's signals" in text
    assert "02_regime" in text and "03_research" in text and "total" in text and "peak PSS (MB)" in text


@pytest.mark.slow
def test_report_second_night_shows_what_changed(nights):
    text = _text(nights["05_report", 2])
    assert f"Changed since {NIGHT1}:" in text
    assert "fitness before" in text and "what changed" in text
    for name in pt.strategies.names():
        assert name in text
    assert f"Flipped since the signals for {NIGHT2}:" in text
    n_flipped = int(text.split(f"Flipped since the signals for {NIGHT2}: ")[1].split()[0])
    assert n_flipped >= 3
    for strategy, symbol in nights["flipped"]:
        assert symbol in text
    assert "No run record" in text


@pytest.mark.slow
def test_report_copes_with_a_failed_research_notebook(nights):
    text = _text(nights["05_report", 3])
    assert f"No evaluations for night {NIGHT3}" in text
    assert "not evaluated tonight" in text and f"Changed since {NIGHT2}: 0 of 8" in text  # against night 2
    assert "03_research" in text and "failed" in text


def test_parameters_cells_follow_the_contract():
    for name in MINE:
        nb = nbformat.read(NB / f"{name}.ipynb", as_version=4)
        assert nb.metadata["kernelspec"] == {"name": "pitools", "display_name": "Python 3 (pitools)",
                                             "language": "python"}
        tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1
        names = [p for p in pm.inspect_notebook(str(NB / f"{name}.ipynb"))]
        assert names[:6] == list(CONTRACT), name
        ns: dict = {}
        exec(tagged[0].source, ns)
        assert ns["profile"] == "demo" and ns["overrides"] == []
        assert all(ns[k] is None for k in CONTRACT[2:])
        first_code = [c for c in nb.cells if c.cell_type == "code"][1].source
        assert "charts.use_offline_renderer()" in first_code
    assert "refit_every_days" in pm.inspect_notebook(str(NB / "02_regime.ipynb"))


# ---------------------------------------------------------------- charts on synthetic input

ORDER = ("calm_bull", "volatile_bull", "bear", "crisis")


def _labels():
    dates = pd.bdate_range("2026-01-05", periods=10)
    names = ["calm_bull"] * 3 + ["crisis"] * 2 + ["calm_bull"] * 4 + ["bear"]
    return pd.Series(pd.Categorical(names, categories=ORDER, ordered=True), index=dates, name="regime")


def test_regime_bands_are_runs_that_touch():
    bands = charts.regime_bands(_labels())
    assert bands["regime"].tolist() == ["calm_bull", "crisis", "calm_bull", "bear"]
    assert bands["sessions"].tolist() == [3, 2, 4, 1]
    assert (bands["end"].iloc[:-1].to_numpy() == bands["start"].iloc[1:].to_numpy()).all()
    assert bands["end"].iloc[-1] == _labels().index[-1]
    assert charts.regime_bands(pd.Series([], dtype=object, index=pd.DatetimeIndex([]))).empty


def test_regime_chart_bands_coloured_by_regime():
    labels = _labels()
    spx = pd.Series(np.linspace(100, 110, 10), index=labels.index, name="^GSPC")
    fig = charts.regime_chart(spx, labels, order=ORDER)
    assert len(fig.data) == 1 + len(ORDER)  # the index and one legend entry per regime
    assert [t.name for t in fig.data] == ["^GSPC", *ORDER]
    colors = charts.regime_colors(ORDER)
    assert len(set(colors.values())) == 4
    shapes = fig.layout.shapes
    assert [s.name for s in shapes] == ["calm_bull", "crisis", "calm_bull", "bear"]
    assert all(s.fillcolor == colors[s.name] for s in shapes)
    assert [t.marker.color for t in fig.data[1:]] == [colors[n] for n in ORDER]
    assert fig.layout.xaxis.title.text == "session" and "points" in fig.layout.yaxis.title.text
    # order defaults to the categories of categorical labels
    assert [t.name for t in charts.regime_chart(spx, labels).data[1:]] == list(ORDER)


def test_regime_colors_run_from_green_to_red():
    colors = charts.regime_colors(ORDER)
    r0, g0, _ = (int(v) for v in colors["calm_bull"][4:-1].split(","))
    r3, g3, _ = (int(v) for v in colors["crisis"][4:-1].split(","))
    assert g0 > r0 and r3 > g3
    assert charts.regime_colors(["only"]) and charts.regime_colors([]) == {}


def test_convergence_chart_one_line_per_strategy():
    hist = pd.DataFrame({"strategy": ["a", "b"] * 3, "generation": [1, 1, 2, 2, 3, 3],
                         "best_fitness": [0.1, -math.inf, 0.3, 0.2, 0.3, 0.5]})
    fig = charts.convergence_chart(hist)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[0].y) == [0.1, 0.3, 0.3]
    assert math.isnan(fig.data[1].y[0])  # no successful candidate yet: a gap, not -inf
    assert fig.layout.xaxis.title.text == "generation" and "fitness" in fig.layout.yaxis.title.text


def _evals():
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        a, b, c = int(rng.integers(1, 50)), float(rng.uniform(0, 1)), int(rng.integers(1, 5))
        rows.append({"strategy": "three", "params": {"a": a, "b": b, "c": c}, "fitness": 3 * b + 0.01 * a})
    for i in range(5):
        rows.append({"strategy": "one", "params": {"lookback": 10 * (i + 1)}, "fitness": float(i)})
    rows.append({"strategy": "one", "params": {"lookback": 99}, "fitness": math.nan})  # failed
    return pd.DataFrame(rows)


def test_param_importance_ranks_by_rank_correlation():
    imp = charts.param_importance(_evals()[lambda d: d.strategy == "three"])
    assert imp.index[0] == "b" and imp.iloc[0] > 0.9
    assert set(imp.index) == {"a", "b", "c"} and (imp.between(0, 1)).all()
    assert charts.param_importance(pd.DataFrame({"params": [], "fitness": []})).empty


def test_param_heatmap_panels_and_axes():
    fig = charts.param_heatmap(_evals(), strategies=["three", "one"])
    assert [t.name for t in fig.data] == ["three", "one"]
    assert fig.layout.xaxis.title.text == "b"  # the most important parameter of "three"
    assert fig.layout.yaxis.title.text in ("a", "c")
    assert fig.layout.xaxis2.title.text == "lookback" and fig.layout.yaxis2.title.text == "fitness"
    assert len(fig.data[1].x) == 5  # the failed candidate is left out
    assert fig.data[0].marker.coloraxis == "coloraxis" and fig.layout.coloraxis.colorbar.title.text == "fitness"


def test_portfolio_equity_and_equity_chart():
    dates = pd.bdate_range("2026-01-05", periods=4)
    eq = charts.portfolio_equity([np.nan, 0.1, np.nan, -0.5], dates)
    assert eq.iloc[0] == 1.0 and eq.iloc[1:].round(6).tolist() == [1.1, 1.1, 0.55]
    assert charts.portfolio_equity([np.nan, np.nan], dates[:2]).isna().all()
    fig = charts.equity_chart({"x": eq, "y": eq * 2}, oos_start=dates[2])
    assert [t.name for t in fig.data] == ["x", "y"]
    assert len(fig.layout.shapes) == 1 and pd.Timestamp(fig.layout.shapes[0].x0) == dates[2]
    assert fig.layout.yaxis.title.text == "equity (start = 1.0)" and fig.layout.xaxis.title.text == "session"
    assert charts.equity_chart(pd.DataFrame({"z": eq}), log_y=True).layout.yaxis.type == "log"


def test_leaderboard_table_puts_is_beside_oos():
    lb = pd.DataFrame({"strategy": ["a", "b"], "fitness": [0.2, 1.5], "is_sharpe": [1.0, 2.0],
                       "oos_sharpe": [0.2, 1.5], "deflated_sharpe": [0.5, np.nan], "oos_max_drawdown": [0.1, 0.2],
                       "trades_per_year": [3.0, 4.0], "params": [{"n": 3}, {"k": 1.23456, "n": 2}]})
    t = charts.leaderboard_table(lb)
    assert t["strategy"].tolist() == ["b", "a"] and t.index.tolist() == [1, 2]
    cols = list(t.columns)
    assert cols.index("OOS Sharpe (ann.)") == cols.index("IS Sharpe (ann.)") + 1
    assert t["OOS max drawdown (%)"].tolist() == [20.0, 10.0]
    assert t["params"].tolist() == ["k=1.235, n=2", "n=3"]


# ---------------------------------------------------------------- report helpers

def test_changes_since_and_signal_flips():
    before = pd.DataFrame({"strategy": ["a", "b", "gone"], "fitness": [1.0, 2.0, 0.5],
                           "params": [{"n": 3}, {"k": 1.5}, {"x": 1}]})
    now = pd.DataFrame({"strategy": ["a", "b", "new"], "fitness": [1.5, 2.0, 0.1],
                        "params": [{"n": 4}, {"k": 1.5}, {"y": 2}]})
    ch = morning.changes_since(before, now)
    assert ch.loc["a", "what changed"] == "n 3→4" and ch.loc["a", "Δ fitness"] == 0.5
    assert ch.loc["b", "what changed"] == "same params"
    assert ch.loc["new", "what changed"] == "new strategy"
    assert ch.loc["gone", "what changed"] == "not evaluated tonight"
    s_before = pd.DataFrame({"strategy": ["a", "a", "b"], "symbol": ["X", "Y", "X"], "side": ["long", "flat", "long"]})
    s_now = pd.DataFrame({"strategy": ["a", "a", "b"], "symbol": ["X", "Y", "Z"], "side": ["long", "long", "long"]})
    flips = morning.signal_flips(s_before, s_now)
    assert flips.values.tolist() == [["a", "Y", "flat", "long"], ["b", "X", "long", "flat"],
                                     ["b", "Z", "flat", "long"]]
    counts = morning.signal_counts(s_now)
    assert counts.loc["a"].tolist() == [2, 0, 0] and list(counts.columns) == ["long", "short", "flat"]


def test_current_regime_and_resources(tmp_path):
    now = lifecycle.current_regime(_labels())
    assert now == {"regime": "bear", "session": "2026-01-16", "since": "2026-01-16", "sessions": 1}
    assert lifecycle.current_regime(_labels().iloc[:4]) == {
        "regime": "crisis", "session": "2026-01-08", "since": "2026-01-08", "sessions": 1}
    assert lifecycle.current_regime(pd.Series([], dtype=object)) is None
    assert reports.read_run_record(None) is None and reports.read_run_record(tmp_path) is None
    (tmp_path / "run.json").write_text("{torn")
    assert reports.read_run_record(tmp_path) is None
    record = {"status": "ok", "peak_pss_bytes": 3 * 2**20, "notebooks": [
        {"name": "01_data", "status": "ok", "duration_s": 1.25, "peak_pss_bytes": 2**20, "peak_rss_bytes": 2**21},
        {"name": "05_report", "status": "running"}]}
    (tmp_path / "run.json").write_text(json.dumps(record))
    t = reports.resources_table(reports.read_run_record(tmp_path))
    assert t.index.tolist() == ["01_data", "05_report", "total"]
    assert t.loc["01_data", "peak RSS (MB)"] == 2.0 and math.isnan(t.loc["05_report", "duration (s)"])
    assert t.loc["total", "duration (s)"] == 1.2 or t.loc["total", "duration (s)"] == 1.3
    assert t.loc["total", "peak PSS (MB)"] == 3.0


def test_index_series_names_what_is_missing(tmp_path):
    store = tmp_path / "store"
    pt.make_demo_store(store, n_symbols=3, years=1, seed=1, end="2026-11-20")
    vix, spx = lifecycle.index_series(store)
    assert vix.name == "^VIX" and spx.name == "^GSPC" and len(vix) > 200
    frame = pt.Store.open(store).read_frame([*pt.Store.open(store).symbols("equity"), "^GSPC"])
    no_vix = tmp_path / "no_vix"
    with pt.Store.create(no_vix).writer() as w:
        w.upsert(frame)
        w.commit()
    with pytest.raises(pt.DataError, match=r"has no \^VIX: the regime model needs") as exc:
        lifecycle.index_series(no_vix)
    assert isinstance(exc.value, pt.PitoolsError)


def test_fit_or_update_refits_only_when_needed(tmp_path):
    store = tmp_path / "store"
    pt.make_demo_store(store, n_symbols=2, years=2, seed=2, end="2026-11-20")
    vix, spx = lifecycle.index_series(store)
    path = tmp_path / "regime" / "model.json"
    model, why = lifecycle.fit_or_update(path, vix.loc[:"2026-09-30"], spx.loc[:"2026-09-30"])
    assert why.startswith("fitted a new model") and path.exists()
    assert lifecycle.fit_or_update(path, vix.loc[:"2026-10-05"], spx.loc[:"2026-10-05"])[1].startswith("loaded")
    _, why = lifecycle.fit_or_update(path, vix, spx, refit_every_days=7)
    assert "days before 2026-11-20" in why and why.startswith("fitted")
    _, why = lifecycle.fit_or_update(path, vix, spx, refit_every_days=0)
    assert "refit_every_days is 0" in why
    _, why = lifecycle.fit_or_update(path, vix.loc[:"2026-06-30"], spx.loc[:"2026-06-30"], refit_every_days=365)
    assert "after the data's last session" in why  # an earlier night: no model trained on its future
    model, _ = lifecycle.fit_or_update(path, vix.loc["2025-09-01":], spx.loc["2025-09-01":], refit_every_days=0)
    assert lifecycle.refit_reason(model, vix.loc["2025-09-01":], spx.loc["2025-09-01":]) is None
    assert "the history grew from" in lifecycle.refit_reason(model, vix, spx)  # a backfilled history
    path.write_text("not json")
    assert "cannot be loaded" in lifecycle.fit_or_update(path, vix, spx)[1]
    with pytest.raises(pt.DataError, match="refit_every_days"):
        lifecycle.fit_or_update(path, vix, spx, refit_every_days=-1)


def test_offline_renderer_kept():
    import plotly.io as pio

    old = pio.renderers.default
    try:
        charts.use_offline_renderer()
        assert pio.renderers.default == "plotly_mimetype"
    finally:
        pio.renderers.default = old

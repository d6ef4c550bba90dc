"""The tune notebook's logic (pitools.notebook.tune.session) and widgets (pitools.notebook.tune.app), driven without a
browser on a tiny demo store; the notebook itself through papermill."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import plotly.graph_objects as go
import pytest
import yaml

import pitools as pt
from pitools.config import load_profile, project_root
from pitools.errors import ConfigError, DataError
from pitools.search.evolve import SearchConfig, load_search_config
from pitools.notebook.tune import FigureData, TuneApp, TuneSession, apply, make_figure, read_parameter_sets
from pitools.notebook.tune import TRACES

ROOT = Path(__file__).resolve().parents[1]
END = "2026-11-20"
OHLC = ("open", "high", "low", "close")
RED = "#b00020"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tune") / "store"
    pt.make_demo_store(path, n_symbols=8, years=2, seed=5, end=END)
    return path


@pytest.fixture(scope="module")
def panel(store):
    return pt.load_panel(store, fields=OHLC)


@pytest.fixture
def session(panel):
    return TuneSession(panel)


def _ragged(panel) -> str:
    """The symbol that starts late (the demo universe lists one mid-way)."""
    first = np.isfinite(panel.close).argmax(axis=0)
    assert first.max() > 0, "the fixture should hold a symbol that lists late"
    return panel.symbols[int(first.argmax())]


def _reference(panel, syms, start, end, params, strategy="sma_cross"):
    """The same selection sliced independently, and pt.backtest on it with the research's settings."""
    lo, hi = panel.dates.searchsorted(pd.Timestamp(start)), panel.dates.searchsorted(pd.Timestamp(end), "right")
    cols = [panel.symbols.index(s) for s in syms]
    sub = pt.Panel(panel.dates[lo:hi], syms, {f: np.asfortranarray(panel.field(f)[lo:hi, cols]) for f in OHLC})
    return sub, pt.backtest(strategy, sub, params, **load_search_config().scoring.backtest_kwargs())


# ---------------------------------------------------------------- sliders

def test_slider_specs_are_the_search_bounds_of_params_strategies_yaml(session):
    raw = yaml.safe_load((project_root() / "params" / "strategies.yaml").read_text())["strategies"]
    for name in pt.strategies.names():
        spec = pt.strategies.get(name)
        specs = session.slider_specs(name)
        assert [s.name for s in specs] == list(spec.space)
        for s in specs:
            low, high = raw.get(name, {}).get(s.name, (spec.space[s.name].low, spec.space[s.name].high))
            if s.name in spec.counts_symbols:  # at most the 8 loaded symbols, widened to hold the value
                high = max(min(high, 8), spec.defaults[s.name])
            assert (s.low, s.high, s.kind, s.value) == (low, high, spec.space[s.name].kind, spec.defaults[s.name])
            if s.kind == "int":
                assert s.step == 1 and isinstance(s.value, int)
            else:
                assert 0 < s.step <= (s.high - s.low) / 10


def test_slider_specs_fall_back_to_the_strategy_range_and_widen_to_hold_the_value(session):
    session.search = SearchConfig()  # no bounds in the file
    fast, slow = session.slider_specs()
    assert (fast.low, fast.high, slow.low, slow.high) == (2, 100, 5, 400)
    session.search = load_search_config()
    fast, slow = session.slider_specs(params={"fast": 80, "slow": 300})
    assert (fast.high, fast.value, slow.high, slow.value) == (80, 80, 300, 300)


# ---------------------------------------------------------------- update

def test_top_k_slider_stops_at_the_loaded_universe(session, panel):
    top_k = {sp.name: sp for sp in session.slider_specs("xs_momentum", params={"top_k": 2})}["top_k"]
    assert panel.n_symbols == 8 and top_k.high == 8  # params/strategies.yaml searches up to 40
    assert top_k.low <= top_k.value == 2


def test_update_matches_an_independent_backtest(session, panel):
    syms = [panel.symbols[2], _ragged(panel), panel.symbols[0]]
    params = {"fast": 5, "slow": 20}
    r = session.update(params, symbols=syms, start="2025-03-03", end="2026-09-30", focus=syms[1])
    assert r.ok and r.error is None and r.elapsed_ms > 0 and set(r.timings) == {"backtest", "figure_data"}
    sub, ref = _reference(panel, syms, "2025-03-03", "2026-09-30", params)
    d = r.figure_data
    pd.testing.assert_index_equal(d.dates, sub.dates, check_names=False)
    np.testing.assert_array_equal(d.close, sub.close[:, 1].astype(float))
    trades = ref.trades[ref.trades["symbol"] == syms[1]].reset_index(drop=True)
    assert len(trades) > 0
    pd.testing.assert_frame_equal(d.trades, trades)
    pd.testing.assert_frame_equal(r.stats.loc[syms], ref.stats, check_dtype=False, check_names=False)
    port = r.stats.loc["portfolio"]
    for key in ("total_return", "sharpe", "max_drawdown", "n_trades", "final_equity"):
        assert port[key] == pytest.approx(ref.portfolio[key], rel=1e-12, nan_ok=True)
    # the equity curve compounds the portfolio's daily returns and ends at its final equity
    active = np.isfinite(ref.portfolio_returns)
    np.testing.assert_allclose((d.equity[1:] / d.equity[:-1] - 1)[active[1:]], ref.portfolio_returns[1:][active[1:]],
                               rtol=1e-9, atol=1e-12)
    assert d.equity[np.isfinite(d.equity)][-1] == pytest.approx(ref.portfolio["final_equity"], rel=1e-12)
    eq = pd.Series(d.equity)
    np.testing.assert_allclose(d.drawdown, (eq / eq.cummax() - 1).to_numpy(), equal_nan=True)
    assert (d.drawdown[np.isfinite(d.drawdown)] <= 0).all()
    assert session.params == params and session.symbols == syms and session.focus == syms[1]
    assert all(isinstance(v, int) for v in r.params.values())


@pytest.mark.parametrize("gaps", [False, True])
def test_buy_and_hold_is_the_mean_close_ratio_of_the_selection(panel, gaps):
    syms = list(panel.symbols[:4]) + [_ragged(panel)]
    p = panel
    if gaps:  # holes in the middle, a symbol that stops trading
        arrays = {f: np.array(panel.field(f), order="F") for f in OHLC}
        for a in arrays.values():
            a[100:110, 0] = np.nan
            a[300:, 1] = np.nan
        p = pt.Panel(panel.dates, panel.symbols, arrays)
    s = TuneSession(p)
    r = s.update(symbols=syms, start="2025-01-06")
    assert r.ok
    close = p.to_frame("close")[syms].loc["2025-01-06":].astype(np.float64)
    close = close.loc[:, close.notna().any()]
    ratio = (close.ffill() / close.bfill().iloc[0]).fillna(1.0)
    expected = 10_000.0 * ratio.mean(axis=1)
    expected[close.notna().any(axis=1).cumsum() == 0] = np.nan
    np.testing.assert_allclose(r.figure_data.buy_hold, expected.to_numpy(), rtol=1e-12, equal_nan=True)


def test_a_slow_window_not_above_fast_is_refused_and_the_figure_kept(session):
    good = session.update({"fast": 10, "slow": 30})
    for slow in (10, 8):
        bad = session.update({"slow": slow})
        assert not bad.ok
        assert "`fast`" in bad.error and "`slow`" in bad.error and f"slow={slow}" in bad.error
        assert bad.figure_data is good.figure_data and bad.stats is good.stats
        assert session.params == {"fast": 10, "slow": 30} and session.last is good


@pytest.mark.parametrize("kwargs, words", [
    ({"symbols": []}, ["`symbols`", "empty"]),
    ({"symbols": ["NOPE"]}, ["'NOPE'", "not in the loaded universe"]),
    ({"start": "2026-06-01", "end": "2026-01-02"}, ["`start`", "2026-06-01", "before", "`end`"]),
    ({"start": "2026-06-01", "end": "2026-06-01"}, ["`start`", "before"]),
    ({"start": "someday"}, ["`start`", "'someday'", "not a date"]),
    ({"start": "2030-01-01", "end": "2031-01-01"}, ["0 sessions"]),
    ({"params": {"fast": 0}}, ["`fast`", "0", "out of range", "2 to 100"]),
    ({"params": {"fast": "ten"}}, ["`fast`", "'ten'", "an integer"]),
    ({"params": {"fats": 3}}, ["'fats'", "Did you mean 'fast'"]),
    ({"strategy": "sma_crass"}, ["'sma_crass'", "Did you mean"]),
    ({"focus": "NOPE"}, ["`focus`", "'NOPE'"]),
    ({"params": {"fast": float("inf")}}, ["inf"]),
    ({"start": "2024-01-01T00:00+05:00"}, ["2024-01-01T00:00+05:00"]),
])
def test_bad_widget_input_gives_a_message_and_keeps_the_last_figure(session, kwargs, words):
    good = session.update()
    bad = session.update(**kwargs)
    assert bad.error and all(w in bad.error for w in words), bad.error
    assert bad.figure_data is good.figure_data and bad.stats is good.stats


def test_an_error_before_any_good_update_has_no_figure_data(panel):
    r = TuneSession(panel, symbols=["NOPE"]).update()
    assert r.error and r.figure_data is None and r.stats is None


def test_strategy_switch_takes_its_defaults_and_a_portfolio_level_strategy_works(session, panel):
    r = session.update(strategy="rsi_reversion", params={"n": 7})
    assert r.ok and r.params == {"n": 7, "lower": 30.0, "upper": 70.0}
    r = session.update(strategy="xs_momentum", params={"lookback": 40, "top_k": 3, "rebalance": 5})
    assert r.ok
    ref = pt.backtest("xs_momentum", panel, r.params, **load_search_config().scoring.backtest_kwargs())
    focus = r.figure_data.focus
    pd.testing.assert_frame_equal(r.figure_data.trades, ref.trades[ref.trades["symbol"] == focus].reset_index(drop=True))
    assert session.update(strategy="rsi_reversion").params == {"n": 7, "lower": 30.0, "upper": 70.0}  # remembered


def test_a_session_on_a_store_loads_the_profile_universe_once(store, monkeypatch, tmp_path):
    prof = load_profile("ci", overrides=[f"data_dir={tmp_path}", "max_symbols=6"])
    s = TuneSession(store, profile=prof)
    assert s.panel.n_symbols == 6 and set(s.panel.fields) == set(OHLC)

    def no_reload(*a, **k):
        raise AssertionError("the panel was loaded again")

    monkeypatch.setattr(pt.data, "load_panel", no_reload)
    monkeypatch.setattr(pt.data.panel, "load_panel", no_reload)
    for syms in (s.panel.symbols[:2], s.panel.symbols[3:]):
        assert s.update(symbols=syms, start="2025-06-02").ok


# ---------------------------------------------------------------- figure

def test_apply_updates_the_same_figure_in_place(session):
    fig = make_figure()
    assert isinstance(fig, go.FigureWidget) and len(fig.data) == 6
    r = session.update({"fast": 5, "slow": 20})
    assert apply(fig, r)
    d = r.figure_data
    np.testing.assert_array_equal(fig.data[0].y, d.close)
    np.testing.assert_array_equal(fig.data[3].y, d.equity)
    assert fig.data[0].x[0] == str(d.dates[0].date())  # strings: a widget would send datetime64 as numbers
    assert len(fig.data[1].x) == len(d.trades) and len(fig.data[2].x) == (~d.trades["open_at_end"]).sum()
    assert "sma_cross" in fig.layout.title.text
    before = np.array(fig.data[3].y)
    assert not apply(fig, session.update({"slow": 3}))  # an error changes nothing
    np.testing.assert_array_equal(fig.data[3].y, before)
    static = make_figure(widget=False)
    assert isinstance(static, go.Figure) and apply(static, d) and isinstance(d, FigureData)


def _as_the_browser_holds_it(fig, act, traces: list[dict] | None = None) -> list[dict]:
    """The traces as the widget's view in the browser holds them after `act()`: `traces` (what
    it held before; default the data the widget was built with), then every restyle/update
    message the widget sent replayed the way the view applies them. An entry left undefined (or null) clears that property of that trace: in
    JupyterLab + Chromium, a batch that renamed only the price trace left the legend reading
    "trace 1" … "trace 5" (the message's other entries are undefined)."""
    from plotly.basedatatypes import Undefined

    traces = copy.deepcopy(fig._widget_data if traces is None else traces)
    sent = []

    def record(change):
        if change["new"] is not None:
            sent.append(change["new"])

    names = ["_py2js_update", "_py2js_restyle"]
    fig.observe(record, names=names)
    try:
        act()
    finally:
        fig.unobserve(record, names=names)
    for msg in sent:
        style = msg.get("style_data", msg.get("restyle_data")) or {}
        indexes = msg.get("style_traces", msg.get("restyle_traces"))
        indexes = range(len(traces)) if indexes is None else indexes
        for prop, values in style.items():
            values = values if isinstance(values, list) else [values]
            for i, t in enumerate(indexes):
                v = values[i % len(values)]
                if v is Undefined or v is None:
                    traces[t].pop(prop, None)
                else:
                    traces[t][prop] = v
    return traces


def test_every_trace_of_the_figure_has_a_name_in_python_and_in_the_browser(session):
    assert TRACES == ("price", "entries", "exits", "strategy equity", "buy & hold", "drawdown")
    fig = make_figure()
    assert [t.name for t in fig.data] == list(TRACES)  # before any data: named already
    first, second = session.panel.symbols[1], session.panel.symbols[2]
    shown = None
    for focus in (first, second, second):  # a new symbol, another, the same again
        shown = _as_the_browser_holds_it(fig, lambda: apply(fig, session.update(focus=focus)), shown)
        wanted = [f"{focus} price", *TRACES[1:]]
        assert [t.get("name") for t in shown] == wanted, shown
        assert [t.name for t in fig.data] == wanted
        for trace, sent in zip(fig.data, shown):  # the data arrived too, and stayed
            assert sent.get("text") == (list(trace.text) if trace.text is not None else None)
            np.testing.assert_array_equal(sent["x"], trace.x)
            np.testing.assert_array_equal(sent["y"], trace.y)
            assert len(sent["x"]) == len(sent["y"]) and (len(sent["x"]) or sent["name"] in ("entries", "exits"))
    static = make_figure(widget=False)
    assert apply(static, session.last) and [t.name for t in static.data] == [f"{second} price", *TRACES[1:]]


# ---------------------------------------------------------------- the widgets

def _red(app) -> bool:
    return RED in app.message.value


def test_moving_a_slider_redraws_in_place_and_a_bad_move_keeps_the_figure(session):
    app = TuneApp(session)
    fig = app.figure
    assert isinstance(fig, go.FigureWidget) and fig in app.figure_box.children
    assert not _red(app) and "portfolio" in app.stats_html.value
    y0 = np.array(fig.data[3].y)
    app.sliders["slow"].value = 60
    assert app.figure is fig and not _red(app)
    assert session.params["slow"] == 60 and not np.array_equal(fig.data[3].y, y0)
    y1, stats = np.array(fig.data[3].y), app.stats_html.value
    app.sliders["fast"].value = 60  # fast == slow
    assert _red(app) and "`slow`" in app.message.value and "last good" in app.message.value
    np.testing.assert_array_equal(fig.data[3].y, y1)
    assert app.stats_html.value == stats and session.params["fast"] == 10
    app.sliders["fast"].value = 20
    assert not _red(app) and session.params == {"fast": 20, "slow": 60}
    app.symbols.value = ()
    assert _red(app) and "`symbols`" in app.message.value
    np.testing.assert_array_equal(fig.data[3].y, session.last.figure_data.equity)
    app.symbols.value = tuple(session.panel.symbols[3:5])
    assert not _red(app) and list(app.focus.options) == session.panel.symbols[3:5]
    app.focus.value = session.panel.symbols[4]
    assert fig.data[0].name == f"{session.panel.symbols[4]} price" and session.focus == session.panel.symbols[4]
    app.start.value = app.end.value
    assert _red(app) and "`start`" in app.message.value


def test_changing_the_strategy_rebuilds_the_sliders(session):
    app = TuneApp(session)
    app.strategy.value = "bollinger_reversion"
    assert list(app.sliders) == ["n", "k"] and app.param_box.children == tuple(app.sliders.values())
    assert session.strategy == "bollinger_reversion" and not _red(app)
    assert "bollinger_reversion" in app.figure.layout.title.text
    app.sliders["k"].value = 2.5
    assert session.params["k"] == 2.5
    app.strategy.value = "sma_cross"
    app.strategy.value = "bollinger_reversion"  # back: the sliders hold what was tuned
    assert app.params() == {"n": 20, "k": 2.5} == session.params


def test_without_anywidget_the_app_redraws_a_static_figure(session, monkeypatch):
    import ipywidgets

    def missing(*a, **k):
        raise ImportError("Please install anywidget to use the FigureWidget class")

    monkeypatch.setattr(go, "FigureWidget", missing)
    app = TuneApp(session)
    assert type(app.figure) is go.Figure and isinstance(app.figure_box, ipywidgets.Output)
    app.sliders["slow"].value = 70
    assert not _red(app) and "slow=70" in app.figure.layout.title.text


def _write_log(data_dir: Path, strategy: str, records) -> None:
    log = data_dir / "evolve" / strategy / "evaluations.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")


def test_load_tonight_sets_the_sliders(session, tmp_path):
    _write_log(tmp_path, "sma_cross", [
        {"night": "2026-11-19", "params": {"fast": 4, "slow": 40}, "fitness": 3.0},
        {"night": "2026-11-20", "params": {"fast": 17, "slow": 95}, "fitness": 1.2},
        {"night": "2026-11-20", "params": {"fast": 25, "slow": 300}, "fitness": 0.4},
        {"night": "2026-11-20", "params": {"fast": 9, "slow": 33}, "fitness": None}])
    app = TuneApp(session, data_dir=tmp_path)
    app.load_evolved()
    assert not _red(app) and "evolved, night 2026-11-20" in app.message.value
    assert app.params() == {"fast": 17, "slow": 95} == session.params
    assert "fast=17, slow=95" in app.figure.layout.title.text
    # never evolved: the defaults; no data_dir at all: a message
    app.strategy.value = "macd"
    app.load_evolved()
    assert app.params() == pt.strategies.get("macd").defaults and "never evolved" in app.message.value
    app.data_dir = None
    assert app.load_evolved() is None and _red(app) and "data_dir" in app.message.value
    # a session-level load; parameters beyond the slider range widen it
    (tmp_path / "evolve" / "sma_cross" / "evaluations.jsonl").write_text(
        json.dumps({"night": "2026-11-21", "params": {"fast": 70, "slow": 300}, "fitness": 2.0}) + "\n")
    app.strategy.value = "sma_cross"
    app.data_dir = tmp_path
    app.load_evolved()
    assert app.sliders["slow"].max == 300 and app.sliders["fast"].value == 70 and session.params["slow"] == 300
    r = TuneSession(session.panel).load_evolved(tmp_path)
    assert r.ok and r.params == {"fast": 70, "slow": 300} and "2026-11-21" in r.note


# ---------------------------------------------------------------- saving

def test_save_parameter_set_keeps_other_entries(session, tmp_path):
    path = session.save_parameter_set("trend_a", {"fast": 5, "slow": 50}, params_dir=tmp_path)
    assert path == tmp_path / "tuned.yaml"
    session.save_parameter_set("calm", {"n": 9}, strategy="rsi_reversion", params_dir=tmp_path)
    session.save_parameter_set("trend-b", params_dir=tmp_path)  # the current parameters
    session.save_parameter_set("trend_a", {"fast": 6, "slow": 60}, params_dir=tmp_path)  # replaced
    assert yaml.safe_load(path.read_text()) == read_parameter_sets(tmp_path) == {
        "sma_cross": {"trend_a": {"fast": 6, "slow": 60}, "trend-b": {"fast": 10, "slow": 30}},
        "rsi_reversion": {"calm": {"n": 9, "lower": 30.0, "upper": 70.0}}}
    assert [p.name for p in tmp_path.iterdir()] == ["tuned.yaml"]  # no temp files left


@pytest.mark.parametrize("name", ["", "two words", "x" * 65, "../up", "naïve", "a.b", None, 7])
def test_save_refuses_a_bad_name(session, tmp_path, name):
    session.save_parameter_set("keep", params_dir=tmp_path)
    before = (tmp_path / "tuned.yaml").read_bytes()
    with pytest.raises(ConfigError, match="`name`"):
        session.save_parameter_set(name, params_dir=tmp_path)
    assert (tmp_path / "tuned.yaml").read_bytes() == before


def test_save_refuses_invalid_params(session, tmp_path):
    session.save_parameter_set("keep", params_dir=tmp_path)
    before = (tmp_path / "tuned.yaml").read_bytes()
    for bad in ({"fast": 50, "slow": 20}, {"fast": 1000}, {"slow": 2.5}):
        with pytest.raises(DataError):
            session.save_parameter_set("bad", bad, params_dir=tmp_path)
    assert (tmp_path / "tuned.yaml").read_bytes() == before


@pytest.mark.parametrize("text", ["sma_cross: {a: [1, 2\n", "- a\n- b\n", "sma_cross: 3\n", "sma_cross: {a: 3}\n"])
def test_save_refuses_a_malformed_file_without_changing_it(session, tmp_path, text):
    path = tmp_path / "tuned.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="was not changed"):
        session.save_parameter_set("new", params_dir=tmp_path)
    assert path.read_text() == text


def test_the_save_button(session, tmp_path):
    app = TuneApp(session, params_dir=tmp_path)
    app.sliders["slow"].value = 45
    app.name.value = "my set"
    app.save_button.click()
    assert _red(app) and "not saved" in app.message.value and not (tmp_path / "tuned.yaml").exists()
    app.name.value = "my_set"
    app.save_button.click()
    assert not _red(app) and read_parameter_sets(tmp_path) == {"sma_cross": {"my_set": {"fast": 10, "slow": 45}}}
    app.sliders["fast"].value = 50  # a bad combination on the sliders is not saved
    app.name.value = "other"
    app.save_button.click()
    assert _red(app) and "other" not in read_parameter_sets(tmp_path)["sma_cross"]


# ---------------------------------------------------------------- the notebook

def _outputs(path: Path):
    return [o for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" for o in c.get("outputs", [])]


def test_the_notebook_runs_headless_through_papermill(tmp_path):
    from pitools.box.kernelspec import ensure_kernel

    ensure_kernel()
    pt.make_demo_store(tmp_path / "store", n_symbols=8, years=2, seed=5, end=END)
    common = {"profile": "ci", "overrides": [f"data_dir={tmp_path}"]}
    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "tune.ipynb"), str(good), kernel_name="pitools", cwd=str(ROOT),
                        parameters={**common, "strategy": "rsi_reversion", "start": "2025-06-02"},
                        progress_bar=False, execution_timeout=300)
    outs = _outputs(good)
    assert not [o for o in outs if o["output_type"] == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outs)
    assert "portfolio" in html and "sharpe" in html
    text = "".join(o.get("text", "") for o in outs if o["output_type"] == "stream")
    assert "rsi_reversion n=14, lower=30, upper=70 on 8 symbols, 2025-06-02.." in text
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outs)
    # bad input from the parameters: a message, no traceback
    pm.execute_notebook(str(ROOT / "notebooks" / "tune.ipynb"), str(bad), kernel_name="pitools", cwd=str(ROOT),
                        parameters={**common, "symbols": ["NOPE"]}, progress_bar=False, execution_timeout=300)
    outs = _outputs(bad)
    assert not [o for o in outs if o["output_type"] == "error"]
    text = "".join(o.get("text", "") for o in outs if o["output_type"] == "stream")
    assert "not applied: `symbols`: 'NOPE' is not in the loaded universe" in text and "no backtest yet" in text

"""The regime model: real S&P 500 / VIX episodes, no lookahead, JSON round trip, input
checks, and the labels gating a backtest."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from pitools import regime
from pitools.errors import DataError

STRESS_EPISODES = {
    "China devaluation crash": ("2015-08-24", "2015-08-25"),
    "Volmageddon": ("2018-02-05", "2018-02-09"),
    "Christmas sell-off": ("2018-12-20", "2018-12-26"),
}


# -- data ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    """(vix, sp500): real daily closes, VIX 2014-2018 and the S&P 500 1999-2018."""
    pytest.importorskip("arch")
    from arch.data import sp500, vix

    return vix.load()["vix"].loc[:"2018-12-31"], sp500.load()["Adj Close"]


@pytest.fixture(scope="module")
def model(real):
    """Trained on the 2014-01..2018-12 overlap."""
    vix, spx = real
    return regime.train(vix, spx.loc["2014-01-01":])


@pytest.fixture(scope="module")
def labels(model, real):
    return model.predict(*real)


@pytest.fixture(scope="module")
def demo_series(demo_store):
    return pt.load_series(demo_store, "^VIX"), pt.load_series(demo_store, "^GSPC")


def _synthetic(n=400, start="2015-01-02", seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n)
    vol = 0.01 * np.exp(np.cumsum(rng.normal(0, 0.05, n)))
    spx = pd.Series(2000 * np.exp(np.cumsum(rng.normal(0, 1, n) * vol)), index=dates)
    vix = pd.Series(100 * np.sqrt(252) * vol * np.exp(rng.normal(0, 0.05, n)), index=dates)
    return vix, spx


# -- the real series ----------------------------------------------------------------------------

def test_regimes_are_named_calmest_first(model):
    assert model.regimes == ("calm_bull", "volatile_bull", "bear", "crisis")
    assert model.trained_on["start"].startswith("2014-") and model.trained_on["end"] == "2018-12-31"
    text = repr(model)
    assert "calm_bull < volatile_bull < bear < crisis" in text and "2018-12-31" in text
    desc = model.describe()
    assert list(desc.index) == list(model.regimes) and desc["vix"].is_monotonic_increasing
    assert desc["weight"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("episode", sorted(STRESS_EPISODES))
def test_known_stress_episodes_are_in_the_stressed_half(labels, model, episode):
    start, end = STRESS_EPISODES[episode]
    days = labels.loc[start:end]
    assert len(days) >= 2
    stressed = set(model.regimes[model.n_regimes // 2:])
    assert set(days) <= stressed, f"{episode}: {days.to_dict()}"


def test_the_record_calm_year_2017_is_mostly_calm(labels, model):
    y2017 = labels.loc["2017"]
    calm = set(model.regimes[:model.n_regimes // 2])
    assert y2017.isin(calm).mean() > 0.7
    assert (y2017 == model.regimes[0]).mean() > 0.6
    assert not (y2017 == model.regimes[-1]).any()


def test_mean_vix_rises_with_the_regime_rank(labels, real):
    vix = real[0].reindex(labels.index)
    by_regime = vix.groupby(labels.cat.codes.to_numpy()).mean()
    assert list(by_regime.index) == [0, 1, 2, 3]
    assert by_regime.is_monotonic_increasing and by_regime.iloc[-1] > 1.3 * by_regime.iloc[0]


def test_labels_are_an_ordered_categorical_on_the_common_dates(labels, model, real):
    vix, spx = real
    assert labels.name == "regime" and labels.cat.ordered
    assert list(labels.cat.categories) == list(model.regimes)
    common = vix.dropna().index.intersection(spx.index)
    assert labels.index.equals(pd.DatetimeIndex(common).as_unit("ns").rename("date"))
    assert not labels.isna().any()
    assert (labels >= "bear").sum() == labels.isin(["bear", "crisis"]).sum()


def test_persistence_smooths_without_delaying_a_crisis(model, real, labels):
    vix, spx = real
    raw_model = regime.train(vix, spx.loc["2014-01-01":], persistence=1)
    raw = raw_model.predict(vix, spx)
    switches = lambda s: int((s.cat.codes.diff().fillna(0) != 0).sum())  # noqa: E731
    assert switches(labels) < 0.7 * switches(raw)
    crisis = model.regimes[-1]
    assert ((raw == crisis) <= (labels == crisis)).all()  # a crisis day is never delayed


def test_first_sessions_without_features_are_excluded(model, real):
    vix, spx = real
    short_spx = spx.loc["2016-01-01":]
    out = model.predict(vix, short_spx)
    assert out.index[0] == short_spx.index[model.window]  # the first `window` S&P sessions warm up
    full = model.predict(vix, spx)
    # once the drawdown window is full and the persistence state has settled, the history
    # before does not matter
    later = out.loc["2017-03-01":]
    pd.testing.assert_series_equal(later, full.loc[later.index])
    f = regime.features(vix, short_spx)
    undefined = f.isna().any(axis=1).to_numpy()
    assert undefined[:model.window].all() and not undefined[model.window:].any()
    with pytest.raises(DataError, match="longer `sp500` history"):
        model.predict(vix, spx.loc["2016-01-01":"2016-01-20"])


@pytest.mark.parametrize("cut", ["2015-08-24", "2016-06-30", "2018-02-06", "2018-12-24"])
def test_no_lookahead_truncating_after_t_changes_nothing_before(model, real, labels, cut):
    vix, spx = real
    part = model.predict(vix.loc[:cut], spx.loc[:cut])
    pd.testing.assert_series_equal(part, labels.loc[:cut])
    np.testing.assert_array_equal(model.codes(vix.loc[:cut], spx.loc[:cut]).to_numpy(),
                                  model.codes(vix, spx).loc[:cut].to_numpy())
    full_f = regime.features(vix, spx)
    pd.testing.assert_frame_equal(regime.features(vix.loc[:cut], spx.loc[:cut]), full_f.loc[:cut])


def test_new_days_are_labelled_without_refitting(real):
    vix, spx = real
    m = regime.train(vix.loc[:"2016-12-31"], spx.loc["2014-01-01":"2016-12-31"])
    means = m.mixture.means_.copy()
    new = m.predict(vix.loc["2017-01-01":], spx.loc["2016-06-01":])
    assert new.index[0] == pd.Timestamp("2017-01-03") and new.index[-1] == pd.Timestamp("2018-12-31")
    np.testing.assert_array_equal(m.mixture.means_, means)
    assert m.trained_on["end"] == "2016-12-30"
    assert set(new.loc["2018-02-05":"2018-02-09"]) <= set(m.regimes[2:])


def test_training_twice_gives_the_same_model(real, labels, demo_series):
    vix, spx = real
    again = regime.train(vix, spx.loc["2014-01-01":])
    pd.testing.assert_series_equal(again.predict(vix, spx), labels)
    a, b = regime.train(*demo_series), regime.train(*demo_series)
    assert a.to_dict() == b.to_dict()
    pd.testing.assert_series_equal(a.predict(*demo_series), b.predict(*demo_series))


# -- persistence ------------------------------------------------------------------------------

def test_save_load_round_trip_gives_identical_predictions(model, real, labels, tmp_path):
    path = tmp_path / "models" / "regime.json"
    assert model.save(path) == path
    doc = json.loads(path.read_text())  # plain JSON, readable
    assert doc["format"] == "pitools.regime" and doc["version"] == regime.FORMAT_VERSION
    assert doc["regimes"] == list(model.regimes) and np.shape(doc["covariances"]) == (4, 4, 4)
    assert [p.name for p in path.parent.iterdir()] == ["regime.json"]  # no temp file left behind
    back = regime.load(path)
    pd.testing.assert_series_equal(back.predict(*real), labels)
    pd.testing.assert_frame_equal(back.probabilities(*real), model.probabilities(*real))
    assert repr(back) == repr(model) and back.to_dict() == model.to_dict()


def _damage(path, how):
    doc = json.loads(path.read_text())
    if how == "corrupt":
        path.write_text(path.read_text()[:200])
    elif how == "missing":
        path.unlink()
    elif how == "newer_version":
        doc["version"] = regime.FORMAT_VERSION + 1
        path.write_text(json.dumps(doc))
    elif how == "old_version":
        doc["version"] = 0
        path.write_text(json.dumps(doc))
    elif how == "not_a_model":
        path.write_text(json.dumps({"format": "something.else", "version": 1}))
    elif how == "missing_field":
        del doc["means"]
        path.write_text(json.dumps(doc))
    elif how == "bad_covariance":
        doc["covariances"][1] = (-np.eye(4)).tolist()
        path.write_text(json.dumps(doc))
    elif how == "wrong_shape":
        doc["means"] = doc["means"][:3]
        path.write_text(json.dumps(doc))


@pytest.mark.parametrize("how, match", [
    ("corrupt", "not valid JSON"),
    ("missing", "does not exist"),
    ("newer_version", "upgrade pitools"),
    ("old_version", "format version 0"),
    ("not_a_model", "not a pitools regime model"),
    ("missing_field", "missing field 'means'"),
    ("bad_covariance", "damaged"),
    ("wrong_shape", "shape"),
])
def test_a_bad_model_file_is_a_clear_error_naming_it(model, tmp_path, how, match):
    path = tmp_path / "regime.json"
    model.save(path)
    _damage(path, how)
    with pytest.raises(DataError, match=match) as info:
        regime.load(path)
    assert str(path) in str(info.value)


# -- input checks ------------------------------------------------------------------------------

def _bad_inputs():
    vix, spx = _synthetic()
    neg_vix = vix.copy()
    neg_vix.iloc[300] = -1.0
    zero_spx = spx.copy()
    zero_spx.iloc[100] = 0.0
    inf_spx = spx.copy()
    inf_spx.iloc[5] = np.inf
    dup = pd.concat([vix, vix.iloc[:1]])
    text = vix.astype(str).radd("x")
    return [
        ("dataframe", vix.to_frame("vix"), spx, "`vix` must be a pandas Series"),
        ("ndarray", vix, spx.to_numpy(), "`sp500` must be a pandas Series"),
        ("list", vix.tolist(), spx, "`vix` must be a pandas Series"),
        ("range_index", vix.reset_index(drop=True), spx, "`vix` must be indexed by date"),
        ("string_index", vix, spx.set_axis(spx.index.strftime("%Y-%m-%d")), "`sp500` must be indexed by date"),
        ("text_values", text, spx, "`vix` must hold numbers"),
        ("negative_vix", neg_vix, spx, r"`vix` = -1\.0 on '2016-02-26'"),
        ("zero_price", vix, zero_spx, r"`sp500` = 0\.0 on"),
        ("inf_price", vix, inf_spx, r"`sp500` = inf on"),
        ("duplicate_date", dup, spx, "more than once"),
        ("no_overlap", vix.set_axis(vix.index - pd.DateOffset(years=5)), spx, "no date in common"),
        ("too_short", vix.iloc[:200], spx.iloc[:200], "at least 250 sessions"),
        ("small_overlap", vix.iloc[:150], spx.iloc[100:], "got 30"),
        ("constant", vix * 0 + 15.0, spx, "log_vix do not vary"),
    ]


@pytest.mark.parametrize("case, vix, spx, match", _bad_inputs(), ids=[c[0] for c in _bad_inputs()])
def test_bad_input_is_a_clear_error(case, vix, spx, match):
    with pytest.raises(DataError, match=match):
        regime.train(vix, spx)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_regimes": 1}, "`n_regimes` = 1 must be an integer from 2 to 12"),
    ({"n_regimes": "4"}, "`n_regimes` = '4'"),
    ({"n_regimes": True}, "`n_regimes` = True"),
    ({"names": ["a", "b"]}, "`names`"),
    ({"names": ["a", "a", "b", "c"]}, "distinct"),
    ({"names": "abcd"}, "`names`"),
    ({"persistence": 0}, "`persistence` = 0"),
    ({"window": 1}, "`window` = 1"),
    ({"high_window": 10}, "`high_window` = 10 must be an integer from 20"),
    ({"random_state": -1}, "`random_state` = -1"),
    ({"n_init": 0}, "`n_init` = 0"),
])
def test_bad_parameters_are_clear_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        regime.train(*_synthetic(), **kwargs)


def test_predict_checks_its_input_too(demo_series):
    m = regime.train(*demo_series)
    vix, spx = demo_series
    with pytest.raises(DataError, match="`vix` must be indexed by date"):
        m.predict(vix.reset_index(drop=True), spx)
    with pytest.raises(DataError, match="no date in common"):
        m.predict(vix.iloc[:100], spx.iloc[200:])
    with pytest.raises(DataError, match="`index` must be sorted"):
        m.codes(vix, spx, index=spx.index[::-1])


def test_tz_aware_series_and_missing_days_are_accepted(demo_series):
    vix, spx = demo_series
    m = regime.train(vix, spx)
    base = m.predict(vix, spx)
    tz = m.predict(vix.tz_localize("America/New_York"), spx.tz_localize("UTC"))
    pd.testing.assert_series_equal(tz, base)
    holed = vix.copy()
    holed.iloc[400] = np.nan
    out = m.predict(holed, spx)
    assert vix.index[400] not in out.index and len(out) == len(base) - 1


def test_number_of_regimes_and_names_are_parameters(demo_series):
    three = regime.train(*demo_series, n_regimes=3)
    assert three.regimes == ("regime_0", "regime_1", "regime_2")
    named = regime.train(*demo_series, n_regimes=2, names=["risk_on", "risk_off"])
    assert named.regimes == ("risk_on", "risk_off")
    assert set(named.predict(*demo_series).unique()) <= {"risk_on", "risk_off"}
    assert named.describe()["vix"].is_monotonic_increasing


def test_codes_index_into_regimes_and_fill_a_panel_calendar(demo_series):
    vix, spx = demo_series
    m = regime.train(vix, spx)
    labels, codes = m.predict(vix, spx), m.codes(vix, spx)
    assert codes.dtype == np.int64 and codes.index.equals(labels.index)
    assert [m.regimes[c] for c in codes] == list(labels.astype(str))
    # a calendar with extra dates: causal forward fill, UNKNOWN before the first label
    cal = pd.DatetimeIndex([spx.index[0], labels.index[0] - pd.Timedelta(days=1), labels.index[0],
                            labels.index[0] + pd.Timedelta(hours=12), labels.index[5], labels.index[-1]
                            + pd.Timedelta(days=30)])
    on_cal = m.codes(vix, spx, index=cal)
    assert on_cal.index.equals(cal)
    assert on_cal.tolist() == [regime.UNKNOWN, regime.UNKNOWN, codes.iloc[0], codes.iloc[0], codes.iloc[5],
                               codes.iloc[-1]]
    assert m.codes_of("calm_bull", "volatile_bull") == frozenset({0, 1})
    assert m.codes_of(["crisis"]) == frozenset({3})
    with pytest.raises(DataError, match="Did you mean 'crisis'"):
        m.codes_of("crisys")


# -- strategies use the labels -------------------------------------------------------------------

@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_regime_filter_holds_positions_only_in_allowed_regimes(demo_store, demo_series, fill):
    vix, spx = demo_series
    m = regime.train(vix, spx)
    panel = pt.load_panel(demo_store)
    codes = m.codes(vix, spx, index=panel.dates)
    allowed = m.codes_of("calm_bull", "volatile_bull")
    gate = np.isin(codes.to_numpy(), list(allowed))
    assert 0.2 < gate.mean() < 0.9 and (codes.to_numpy()[:m.window] == regime.UNKNOWN).all()

    plain = pt.backtest("sma_cross", panel, fill=fill)
    gated = pt.backtest("sma_cross", panel, fill=fill, regime_filter=(codes.to_numpy(), allowed))
    assert 0 < gated.n_trades
    assert (gated.stats["exposure"] <= plain.stats["exposure"] + 1e-12).all()
    assert gated.stats["exposure"].sum() < plain.stats["exposure"].sum()

    # Every trade is held only through bars whose regime is allowed. A bar's target acts at
    # its close (fill="close") or at the next open (fill="next_open"): so a position held at
    # the close of bar b was allowed by the regime of bar b (close) or of bar b - 1 (next open).
    lag = 1 if fill == "next_open" else 0
    trades = gated.trades
    entry, exit_ = panel.dates.get_indexer(trades.entry_time), panel.dates.get_indexer(trades.exit_time)
    assert len(trades) and (entry >= 0).all() and (exit_ >= 0).all()
    for a, b in zip(entry, exit_):
        assert gate[a - lag:b - lag].all(), (panel.dates[a], panel.dates[b])

    # Equity-based: no profit or loss over a bar while the regime kept the account flat
    # (at the previous close, and for next-open fills also at this bar's open).
    eq = gated.equity.to_numpy()
    flat_since = np.ones(panel.n_bars, dtype=bool)
    for k in range(1, lag + 2):
        flat_since &= ~np.r_[np.ones(k, dtype=bool), gate[:-k]]
    change = np.diff(eq, axis=0)[flat_since[1:]]
    assert np.isfinite(change).sum() > 100
    assert (change[np.isfinite(change)] == 0.0).all()


# -- packaging -----------------------------------------------------------------------------------

def test_importing_the_module_does_not_import_sklearn():
    code = "import sys, pitools, pitools.regime; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

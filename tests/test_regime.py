"""The regime model: on the real S&P 500 / VIX the names agree with features computed here
from the raw series, spells are long and the sell-offs are stressed; the forward filter
against a slow reference, no lookahead, JSON round trip, input checks, and the labels
gating a backtest."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import pitools as pt
from pitools.market import regime
from pitools.market.regime import lifecycle
from pitools.errors import DataError

# The sell-offs of 2014-2018 (issue 13): every session listed is in the stressed half of
# the regimes, and the KEY_DAYS in the most stressed regime itself, on the day.
SELL_OFFS = {
    "China devaluation crash": ("2015-08-24", "2015-09-04"),
    "Oil and China, early 2016": ("2016-01-07", "2016-02-12"),
    "Volmageddon": ("2018-02-05", "2018-02-09"),
    "Q4 2018 sell-off": ("2018-10-11", "2018-12-31"),
}
KEY_DAYS = ("2015-08-24", "2016-01-20", "2016-02-11", "2018-02-05", "2018-02-08", "2018-10-24", "2018-12-24")


# -- data ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    """(vix, sp500): real daily closes, VIX 2014-2018 and the S&P 500 1999-2018."""
    pytest.importorskip("arch")
    from arch.data import sp500, vix

    return vix.load()["vix"].loc[:"2018-12-31"], sp500.load()["Adj Close"]


@pytest.fixture(scope="module")
def model(real):
    """Trained on the span the two share (2014-01..2018-12; the longer S&P 500 history
    defines the first drawdowns)."""
    return regime.train(*real)


@pytest.fixture(scope="module")
def labels(model, real):
    return model.predict(*real)


@pytest.fixture(scope="module")
def raw_table(labels, real):
    """Per regime, from the raw closes with plain pandas (not the module's features):
    share of sessions, mean VIX, mean 20-session return, mean drawdown from the 252-session
    high, median spell."""
    vix, spx = real
    ret20 = spx.pct_change(20)
    drawdown = spx / spx.rolling(252, min_periods=1).max() - 1.0
    frame = pd.DataFrame({"regime": labels.astype(str), "vix": vix.reindex(labels.index),
                          "ret": ret20.reindex(labels.index), "drawdown": drawdown.reindex(labels.index)})
    spell_id = (frame["regime"] != frame["regime"].shift()).cumsum()
    spells = frame.groupby(spell_id)["regime"].agg(["first", "size"])
    out = frame.groupby("regime")[["vix", "ret", "drawdown"]].mean()
    out.insert(0, "weight", frame["regime"].value_counts(normalize=True))
    out["median_spell"] = spells.groupby("first")["size"].median()
    return out, spells["size"]


@pytest.fixture(scope="module")
def demo_series(demo_store):
    return pt.load_series(demo_store, "^VIX"), pt.load_series(demo_store, "^GSPC")


@pytest.fixture(scope="module")
def demo_model(demo_series):
    return regime.train(*demo_series)


def _synthetic(n=400, start="2015-01-02", seed=0):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=n)
    vol = 0.01 * np.exp(np.cumsum(rng.normal(0, 0.05, n)))
    spx = pd.Series(2000 * np.exp(np.cumsum(rng.normal(0, 1, n) * vol)), index=dates)
    vix = pd.Series(100 * np.sqrt(252) * vol * np.exp(rng.normal(0, 0.05, n)), index=dates)
    return vix, spx


def _base(name: str) -> str:
    return re.sub(r"_\d+$", "", name)


# -- the real series: names, spells, sell-offs ----------------------------------------------------

def test_regimes_are_ordered_calmest_first_and_named_by_the_rule(model):
    assert len(set(model.regimes)) == 4
    assert model.regimes == regime.name_regimes(model.describe())
    assert model.regimes[0].startswith("calm") and _base(model.regimes[-1]) in ("crisis", "stressed", "stressed_bull")
    assert model.trained_on["start"].startswith("2014-") and model.trained_on["end"] == "2018-12-31"
    text = repr(model)
    assert " < ".join(model.regimes) in text and "2018-12-31" in text and "expected spells" in text
    desc = model.describe()
    assert list(desc.index) == list(model.regimes) and desc["vix"].is_monotonic_increasing
    assert desc["weight"].sum() == pytest.approx(1.0)


def test_every_name_agrees_with_its_mean_features_from_the_raw_series(model, raw_table):
    table, _ = raw_table
    assert set(table.index) == set(model.regimes)
    lowest, highest = table["vix"].idxmin(), table["vix"].idxmax()
    for name, row in table.iterrows():
        falling = row["ret"] < 0 and row["drawdown"] <= -0.05
        base = _base(name)
        if base in ("bear", "crisis"):  # a falling market in a real drawdown
            assert falling, (name, row.to_dict())
        else:
            assert not falling, (name, row.to_dict())
        if base.endswith("_bull"):
            assert row["ret"] > 0, (name, row.to_dict())
        if base in ("calm", "volatile", "stressed"):
            assert row["ret"] <= 0, (name, row.to_dict())
        if base.startswith("calm"):
            assert name == lowest
        if base == "crisis" or base.startswith("stressed"):
            assert name == highest
        if base.startswith("volatile"):
            assert name not in (lowest, highest)
    # the old "bear" (34 % of the years, VIX 14.6, -0.2 % over 20 sessions, -1.7 % drawdown) is gone
    assert not any(_base(n) == "bear" and table.loc[n, "drawdown"] > -0.05 for n in table.index)


def test_the_features_table_the_report_prints_is_the_raw_one(model, labels, raw_table):
    table, _ = raw_table
    desc = model.describe()
    for column in ("weight", "vix", "ret", "drawdown", "median_spell"):
        np.testing.assert_allclose(desc[column].to_numpy(), table.loc[desc.index, column].to_numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=column)
    shown = lifecycle.regime_table(model, labels)  # what 02_regime prints
    assert list(shown.index) == list(model.regimes)
    np.testing.assert_allclose(shown["VIX (level)"], table.loc[shown.index, "vix"], atol=0.05)
    np.testing.assert_allclose(shown["drawdown from high (%)"], 100 * table.loc[shown.index, "drawdown"], atol=0.05)


def test_spells_last_weeks_not_days(model, raw_table):
    _, spells = raw_table
    assert spells.median() >= 10
    assert spells[spells <= 5].sum() < 0.1 * spells.sum()  # few sessions sit in 1-5 session spells
    assert (model.expected_spell >= 10).all() and (np.diag(model.transmat) > 0.9).all()


@pytest.mark.parametrize("episode", sorted(SELL_OFFS))
def test_sell_offs_are_in_the_most_stressed_regimes(labels, model, episode):
    start, end = SELL_OFFS[episode]
    days = labels.loc[start:end]
    assert len(days) >= 4
    stressed = set(model.regimes[model.n_regimes // 2:])
    assert set(days) <= stressed, f"{episode}: {days[~days.isin(stressed)].to_dict()}"


def test_key_sell_off_days_are_in_the_most_stressed_regime_on_the_day(labels, model):
    days = labels.loc[pd.DatetimeIndex(KEY_DAYS)]
    assert (days == model.regimes[-1]).all(), days.to_dict()
    assert _base(model.regimes[-1]) == "crisis"  # on 2014-2018 the most stressed regime is a falling market


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
    common = vix.dropna().index.intersection(spx.index)  # the S&P 500 starts in 1999: nothing warms up
    assert labels.index.equals(pd.DatetimeIndex(common).as_unit("ns").rename("date"))
    assert not labels.isna().any()
    assert (labels >= model.regimes[2]).sum() == labels.isin(model.regimes[2:]).sum()


# -- the forward filter ------------------------------------------------------------------------

def test_probabilities_are_the_forward_filter_of_a_slow_reference(model, real):
    """Gaussian densities from scipy and the recursion p_t ∝ (p_{t-1} A) * N(z_t) in log space,
    one session at a time, against the model's probabilities."""
    vix, spx = real
    f = regime.features(vix, spx).dropna().iloc[:300]
    z = (f.to_numpy() - model.feature_mean) / model.feature_std
    log_em = np.column_stack([multivariate_normal(mu, cov).logpdf(z) for mu, cov in
                              zip(model.means, model.covariances)])
    log_a = np.log(model.transmat)
    alpha = np.log(model.start) + log_em[0]
    ref = [alpha - logsumexp(alpha)]
    for t in range(1, len(z)):
        alpha = logsumexp(ref[-1][:, None] + log_a, axis=0) + log_em[t]
        ref.append(alpha - logsumexp(alpha))
    got = model.probabilities(vix, spx.loc[:f.index[-1]])
    np.testing.assert_allclose(got.to_numpy(), np.exp(np.array(ref)), atol=1e-9)
    np.testing.assert_allclose(model.start @ model.transmat, model.start, atol=1e-12)  # stationary
    # the transition matrix is what keeps labels: without it (each day on its own) they chatter
    alone = (log_em + np.log(model.start)).argmax(axis=1)
    switches = lambda c: int((np.diff(c) != 0).sum())  # noqa: E731
    assert switches(got.to_numpy().argmax(axis=1)) < 0.6 * switches(alone)


def test_first_sessions_without_features_are_excluded(model, real):
    vix, spx = real
    short_spx = spx.loc["2016-01-01":]
    out = model.predict(vix, short_spx)
    assert out.index[0] == short_spx.index[model.window]  # the first `window` S&P sessions warm up
    full = model.predict(vix, spx)
    # once the drawdown window is full and the filter has forgotten where it started, the
    # history before does not matter
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
    pd.testing.assert_frame_equal(model.probabilities(vix.loc[:cut], spx.loc[:cut]),
                                  model.probabilities(vix, spx).loc[:cut], check_exact=True)
    full_f = regime.features(vix, spx)
    pd.testing.assert_frame_equal(regime.features(vix.loc[:cut], spx.loc[:cut]), full_f.loc[:cut])


def test_new_days_are_labelled_without_refitting(real):
    vix, spx = real
    m = regime.train(vix.loc[:"2016-12-31"], spx.loc[:"2016-12-31"])
    means = m.means.copy()
    new = m.predict(vix.loc["2017-01-01":], spx.loc["2016-06-01":])
    assert new.index[0] == pd.Timestamp("2017-01-03") and new.index[-1] == pd.Timestamp("2018-12-31")
    np.testing.assert_array_equal(m.means, means)
    assert m.trained_on["end"] == "2016-12-30"
    assert set(new.loc["2018-02-05":"2018-02-09"]) <= set(m.regimes[2:])


def test_training_twice_gives_the_same_model(real, labels, demo_series, demo_model):
    again = regime.train(*real)
    pd.testing.assert_series_equal(again.predict(*real), labels)
    b = regime.train(*demo_series)
    assert demo_model.to_dict() == b.to_dict()
    pd.testing.assert_series_equal(demo_model.predict(*demo_series), b.predict(*demo_series))


# -- the naming rule ----------------------------------------------------------------------------

@pytest.mark.parametrize("ret, drawdown, names", [
    # 2014-2018: a rebound between calm and stressed is a bull; the flat one is just volatile
    ([0.020, 0.029, -0.001, -0.020], [-0.004, -0.026, -0.016, -0.075],
     ("calm_bull", "volatile_bull", "volatile", "crisis")),
    # the old "bear": -0.2 % over 20 sessions, -1.7 % drawdown — not a falling market
    ([0.02, 0.01, -0.002, -0.03], [-0.003, -0.01, -0.017, -0.09], ("calm_bull", "volatile_bull", "volatile", "crisis")),
    # the demo's "crisis" with +12.5 % over 20 sessions is a stressed rebound, not a crisis
    ([0.02, 0.03, -0.05, 0.125], [-0.01, -0.03, -0.14, -0.04], ("calm_bull", "volatile_bull", "bear", "stressed_bull")),
    # two of a kind are numbered in stress order
    ([0.02, 0.01, 0.02, -0.03], [-0.01, -0.02, -0.03, -0.02],
     ("calm_bull", "volatile_bull", "volatile_bull_2", "stressed")),
    ([0.01, -0.02, -0.03, -0.05], [-0.01, -0.06, -0.08, -0.2], ("calm_bull", "bear", "bear_2", "crisis")),
    ([-0.01, 0.02], [-0.06, -0.01], ("bear", "stressed_bull")),
    ([0.0, -0.01, 0.01], [0.0, -0.02, -0.05], ("calm", "volatile", "stressed_bull")),
])
def test_names_follow_the_documented_rule(ret, drawdown, names):
    assert regime.name_regimes(pd.DataFrame({"ret": ret, "drawdown": drawdown})) == names


# -- saving ---------------------------------------------------------------------------------------

def test_save_load_round_trip_gives_identical_predictions(model, real, labels, tmp_path):
    path = tmp_path / "models" / "regime.json"
    assert model.save(path) == path
    doc = json.loads(path.read_text())  # plain JSON, readable
    assert doc["format"] == "pitools.market.regime" and doc["version"] == regime.FORMAT_VERSION == 2
    assert doc["regimes"] == list(model.regimes) and np.shape(doc["covariances"]) == (4, 4, 4)
    assert np.shape(doc["transmat"]) == (4, 4) and set(doc["table"]) == set(regime.TABLE_COLUMNS)
    assert [p.name for p in path.parent.iterdir()] == ["regime.json"]  # no temp file left behind
    back = regime.load(path)
    pd.testing.assert_series_equal(back.predict(*real), labels)
    pd.testing.assert_frame_equal(back.probabilities(*real), model.probabilities(*real), check_exact=True)
    pd.testing.assert_frame_equal(back.describe(), model.describe())
    assert repr(back) == repr(model) and back.to_dict() == model.to_dict()


def test_labelling_a_loaded_model_imports_neither_hmmlearn_nor_sklearn(demo_model, demo_store, tmp_path):
    path = demo_model.save(tmp_path / "regime.json")
    code = ("import sys, pitools as pt\n"
            f"m = pt.regime.load({str(path)!r})\n"
            f"v, s = pt.load_series({str(demo_store)!r}, '^VIX'), pt.load_series({str(demo_store)!r}, '^GSPC')\n"
            "assert len(m.predict(v, s)) > 400\n"
            "bad = [x for x in ('sklearn', 'hmmlearn') if x in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


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
    elif how == "mixture_version":
        doc["version"] = 1
        path.write_text(json.dumps(doc))
    elif how == "not_a_model":
        path.write_text(json.dumps({"format": "something.else", "version": 1}))
    elif how == "missing_field":
        del doc["means"]
        path.write_text(json.dumps(doc))
    elif how == "bad_covariance":
        doc["covariances"][1] = (-np.eye(4)).tolist()
        path.write_text(json.dumps(doc))
    elif how == "bad_transmat":
        doc["transmat"][0][0] += 0.5
        path.write_text(json.dumps(doc))
    elif how == "wrong_shape":
        doc["means"] = doc["means"][:3]
        path.write_text(json.dumps(doc))


@pytest.mark.parametrize("how, match", [
    ("corrupt", "not valid JSON"),
    ("missing", "does not exist"),
    ("newer_version", "upgrade pitools"),
    ("old_version", "format version 0"),
    ("mixture_version", "format version 1; this pitools reads version 2 — retrain"),
    ("not_a_model", "not a pitools regime model"),
    ("missing_field", "missing field 'means'"),
    ("bad_covariance", "damaged"),
    ("bad_transmat", "'transmat' must hold positive probabilities summing to 1"),
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
    ({"window": 1}, "`window` = 1"),
    ({"high_window": 10}, "`high_window` = 10 must be an integer from 20"),
    ({"random_state": -1}, "`random_state` = -1"),
    ({"n_init": 0}, "`n_init` = 0"),
])
def test_bad_parameters_are_clear_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        regime.train(*_synthetic(), **kwargs)


def test_predict_checks_its_input_too(demo_series, demo_model):
    vix, spx = demo_series
    with pytest.raises(DataError, match="`vix` must be indexed by date"):
        demo_model.predict(vix.reset_index(drop=True), spx)
    with pytest.raises(DataError, match="no date in common"):
        demo_model.predict(vix.iloc[:100], spx.iloc[200:])
    with pytest.raises(DataError, match="`index` must be sorted"):
        demo_model.codes(vix, spx, index=spx.index[::-1])


def test_tz_aware_series_and_missing_days_are_accepted(demo_series, demo_model):
    vix, spx = demo_series
    base = demo_model.predict(vix, spx)
    tz = demo_model.predict(vix.tz_localize("America/New_York"), spx.tz_localize("UTC"))
    pd.testing.assert_series_equal(tz, base)
    holed = vix.copy()
    holed.iloc[400] = np.nan
    out = demo_model.predict(holed, spx)
    assert vix.index[400] not in out.index and len(out) == len(base) - 1


def test_number_of_regimes_and_names_are_parameters(demo_series):
    three = regime.train(*demo_series, n_regimes=3)
    assert len(three.regimes) == 3 and three.regimes == regime.name_regimes(three.describe())
    assert three.describe()["vix"].is_monotonic_increasing
    named = regime.train(*demo_series, n_regimes=2, names=["risk_on", "risk_off"])
    assert named.regimes == ("risk_on", "risk_off")
    assert set(named.predict(*demo_series).unique()) <= {"risk_on", "risk_off"}
    assert named.describe()["vix"].is_monotonic_increasing


def test_codes_index_into_regimes_and_fill_a_panel_calendar(demo_series, demo_model):
    vix, spx = demo_series
    m = demo_model
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
    assert m.codes_of(m.regimes[0], m.regimes[1]) == frozenset({0, 1})
    assert m.codes_of([m.regimes[-1]]) == frozenset({3})
    typo = m.regimes[-1][:-2] + m.regimes[-1][-1:] + "x"
    with pytest.raises(DataError, match=f"Did you mean '{m.regimes[-1]}'"):
        m.codes_of(typo)


# -- strategies use the labels -------------------------------------------------------------------

@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_regime_filter_holds_positions_only_in_allowed_regimes(demo_store, demo_series, demo_model, fill):
    vix, spx = demo_series
    m = demo_model
    panel = pt.load_panel(demo_store)
    codes = m.codes(vix, spx, index=panel.dates)
    allowed = m.codes_of(m.regimes[:2])  # the calmer half
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

def test_importing_the_module_does_not_import_sklearn_or_hmmlearn():
    code = ("import sys, pitools, pitools.market.regime\n"
            "bad = [x for x in ('sklearn', 'hmmlearn') if x in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

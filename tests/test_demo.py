"""The demo universe: deterministic, on real NYSE sessions, and shaped like real equities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from pitools.data.calendar import sessions
from pitools.data.ingest import ingest
from pitools.errors import DataError, MixedDataError, StoreError

from conftest import END


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    pt.make_demo_store(a, n_symbols=12, years=2, seed=5, end=END)
    pt.make_demo_store(b, n_symbols=12, years=2, seed=5, end=END)
    pt.make_demo_store(c, n_symbols=12, years=2, seed=6, end=END)
    ta, tb, tc = tree_bytes(a), tree_bytes(b), tree_bytes(c)
    assert len(ta) >= 3 and ta == tb
    parquet = [k for k in ta if k.endswith(".parquet")]
    assert parquet and not any(ta.get(k) == tc.get(k) for k in parquet)


def test_a_later_or_longer_demo_extends_a_shorter_one(tmp_path):
    """Bars are drawn forward from a fixed epoch: the same date has the same bar."""
    short, long_ = tmp_path / "short", tmp_path / "long"
    pt.make_demo_store(short, n_symbols=8, years=1, seed=9, end="2026-06-30")
    pt.make_demo_store(long_, n_symbols=8, years=3, seed=9, end=END)
    s = pt.Store.open(short).read_frame().set_index(["symbol", "date"])
    l_ = pt.Store.open(long_).read_frame().set_index(["symbol", "date"])
    common = s.index.intersection(l_.index)
    assert len(common) > 0.9 * len(s)
    pd.testing.assert_frame_equal(s.loc[common], l_.loc[common])


def test_bars_only_on_nyse_sessions_and_every_session_covered(demo_store):
    store = pt.Store.open(demo_store)
    dates = store.dates()
    expected = sessions(dates[0], dates[-1])
    assert dates.equals(expected)
    for holiday in ["2024-12-25", "2025-07-04", "2025-01-09", "2026-04-03"]:
        assert pd.Timestamp(holiday) not in dates
    assert dates[-1] == pd.Timestamp(END)
    assert (dates.day_of_week < 5).all()


def test_ohlc_consistent_positive_and_volume_sane(demo_store):
    df = pt.Store.open(demo_store).read_frame()
    assert (df[["open", "high", "low", "close"]] > 0).all().all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    eq = df[~df["symbol"].str.startswith("^")]
    assert (eq["volume"] > 0).all() and np.allclose(eq["volume"], eq["volume"].round())
    # cents
    assert np.allclose(eq.loc[eq.close >= 1, "close"] * 100, (eq.loc[eq.close >= 1, "close"] * 100).round())


def test_ragged_histories_late_listings_delistings_and_gaps(long_store):
    panel = pt.load_panel(long_store, fields=("close",))
    have = np.isfinite(panel.close)
    first = have.argmax(axis=0)
    last = len(have) - 1 - have[::-1].argmax(axis=0)
    assert (first > 0).sum() >= 3, "some symbols list after the start"
    assert (last < len(have) - 1).sum() >= 2, "some symbols stop trading before the end"
    inside = np.array([(~have[f:l + 1, j]).sum() for j, (f, l) in enumerate(zip(first, last))])
    assert inside.sum() >= 1, "a few days go missing inside a life (halts)"
    assert inside.sum() < 0.01 * have.sum()


def test_market_looks_like_a_market(long_store):
    spx = pt.load_series(long_store, "^GSPC")
    vix = pt.load_series(long_store, "^VIX")
    r = np.log(spx).diff().dropna()
    assert 0.08 < r.std() * np.sqrt(252) < 0.35  # equity-index volatility
    kurt = ((r - r.mean()) ** 4).mean() / r.var() ** 2 - 3
    assert kurt > 1.0, f"fat tails expected, excess kurtosis {kurt:.2f}"
    a = r.abs().to_numpy()
    clustering = np.corrcoef(a[:-1], a[1:])[0, 1]
    assert clustering > 0.1, f"volatility clustering expected, |r| autocorrelation {clustering:.2f}"
    realized = r.rolling(21).std().dropna() * np.sqrt(252) * 100
    joined = pd.concat([realized, vix], axis=1, join="inner").dropna()
    assert joined.corr().iloc[0, 1] > 0.6, "VIX tracks realized volatility"
    assert 9 <= vix.min() and vix.max() <= 95 and 12 < vix.median() < 30


def test_symbols_load_the_market_and_their_sectors(long_store):
    panel = pt.load_panel(long_store, fields=("close",))
    store = pt.Store.open(long_store)
    rets = pd.DataFrame(np.log(panel.close.astype(float)), index=panel.dates).diff()
    market = np.log(pt.load_series(long_store, "^GSPC")).diff()
    corr = rets.corrwith(market.reindex(rets.index))
    assert corr.median() > 0.2
    sectors = {s: store.meta[s]["sector"] for s in panel.symbols}
    assert len(set(sectors.values())) >= 5
    # Symbols of one sector co-move more than symbols of different sectors.
    c = rets.corr().to_numpy()
    same = [c[i, j] for i in range(len(c)) for j in range(i) if sectors[panel.symbols[i]] == sectors[panel.symbols[j]]]
    diff = [c[i, j] for i in range(len(c)) for j in range(i) if sectors[panel.symbols[i]] != sectors[panel.symbols[j]]]
    assert np.nanmean(same) > np.nanmean(diff)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"n_symbols": 0}, "`n_symbols`"),
    ({"n_symbols": 2.5}, "`n_symbols`"),
    ({"years": 0}, "`years`"),
    ({"years": 99}, "`years`"),
    ({"seed": -1}, "`seed`"),
    ({"end": "notadate"}, "`end` = 'notadate' is not a date"),
    ({"end": "2999-01-04"}, "last closed NYSE session"),
])
def test_bad_arguments_are_named(tmp_path, kwargs, fragment):
    args = {"n_symbols": 3, "years": 1, "seed": 1, "end": END, **kwargs}
    with pytest.raises(DataError, match=fragment):
        pt.make_demo_store(tmp_path / "s", **args)
    assert not (tmp_path / "s").exists()


def test_existing_store_is_refused_unless_forced(tmp_path):
    path = tmp_path / "s"
    pt.make_demo_store(path, n_symbols=4, years=1, seed=1, end=END)
    before = tree_bytes(path)
    with pytest.raises(StoreError, match="already exists.*--force"):
        pt.make_demo_store(path, n_symbols=6, years=1, seed=2, end=END)
    assert tree_bytes(path) == before
    pt.make_demo_store(path, n_symbols=6, years=1, seed=2, end=END, force=True)
    store = pt.Store.open(path)
    assert len(store.symbols()) == 6
    listed = {str(path / p.file) for p in store.partitions.values()}
    on_disk = {str(p) for p in (path / "bars").rglob("*.parquet")}
    assert listed < on_disk, "the previous generation stays for readers that opened it"
    with store.writer() as w:
        w.commit()
    on_disk = {str(p) for p in (path / "bars").rglob("*.parquet")}
    assert listed == on_disk, "files of the replaced store are removed one commit later"


def test_the_manifest_records_the_demo_and_imported_bars_are_not_overwritten(tmp_path):
    path = tmp_path / "s"
    store = pt.make_demo_store(path, n_symbols=3, years=1, seed=1, end=END)
    assert store.info == {"source": "demo", "seed": 1, "n_symbols": 3, "years": 1, "end": END}
    (tmp_path / "KO.csv").write_text("Date,Open,High,Low,Close,Volume\n2026-11-19,60,61,59,60.5,100\n"
                                     "2026-11-20,60.5,62,60,61.5,120\n")
    real = tmp_path / "real"
    ingest(tmp_path / "KO.csv", real, quarantine=tmp_path / "q")
    before = tree_bytes(real)
    with pytest.raises(MixedDataError, match="holds bars imported by `pitools ingest`.*--force") as info:
        pt.make_demo_store(real, n_symbols=3, years=1, seed=1, end=END)
    assert isinstance(info.value, StoreError) and info.value.exit_code == 2 and info.value.source == "ingest"
    assert tree_bytes(real) == before
    replaced = pt.make_demo_store(real, n_symbols=3, years=1, seed=1, end=END, force=True)
    assert replaced.info["source"] == "demo" and "KO" not in replaced.symbols(None)


def test_if_missing_extends_a_demo_store_that_follows_the_calendar(tmp_path):
    """`make run` a week later: the demo store built to "the last closed session" then is stale now;
    `demo-data --if-missing` extends it, with the same bars on the days both have."""
    import json

    from conftest import run_cli
    from pitools.data.calendar import last_closed_session

    store = tmp_path / "store"
    pt.make_demo_store(store, n_symbols=6, years=1, seed=3, end=END)
    before = pt.load_panel(store, end=END)
    kept = run_cli("demo-data", "--profile", "ci", "--store", str(store), "--if-missing")
    assert kept.returncode == 0 and "left as it is" in kept.stdout  # an explicit --end is kept
    manifest = store / "manifest.json"  # as if built without --end on END's evening
    doc = json.loads(manifest.read_text())
    doc["info"]["follows_calendar"] = True
    manifest.write_text(json.dumps(doc))
    proc = run_cli("demo-data", "--profile", "ci", "--store", str(store), "--if-missing")
    latest = last_closed_session()
    missed = len(sessions(pd.Timestamp(END) + pd.Timedelta(days=1), latest))
    assert proc.returncode == 0 and f"is {missed} sessions behind: extending it" in proc.stdout, proc.stdout
    st = pt.Store.open(store)
    assert st.last_date == latest and st.info["follows_calendar"] and st.info["seed"] == 3
    after = pt.load_panel(store, end=END)  # the extended store's history up to END: the same bars
    common = [s for s in before.symbols if s in after.symbols]
    assert len(common) >= 5
    old, new = before.to_frame("close")[common], after.to_frame("close")[common]
    pd.testing.assert_frame_equal(old.loc[new.index[0]:], new)

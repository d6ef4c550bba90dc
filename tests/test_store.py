"""The parquet store: transactions, atomic writes that survive a kill -9, damage detection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from pitools.data.atomic import atomic_write, write_text_atomic
from pitools.data.store import Store
from pitools.errors import StoreError

from conftest import END


def bars(symbol: str, dates: list[str], base: float = 10.0) -> pd.DataFrame:
    n = len(dates)
    close = base + np.arange(n, dtype=float)
    return pd.DataFrame({"symbol": symbol, "date": pd.to_datetime(dates), "open": close - 0.5,
                         "high": close + 1, "low": close - 1, "close": close, "volume": 1000.0 + np.arange(n)})


def test_upsert_roundtrip_replace_and_multi_year(tmp_path):
    root = tmp_path / "s"
    with Store.create(root).writer() as w:
        counts = w.upsert(pd.concat([bars("AAA", ["2023-12-28", "2023-12-29", "2024-01-02"]),
                                     bars("BBB", ["2024-01-02", "2024-01-03"], 50)]))
        w.commit()
    assert counts == {"new": 5, "replaced": 0}
    store = Store.open(root)
    assert sorted(store.partitions) == [2023, 2024]
    assert store.symbols() == ["AAA", "BBB"] and store.n_rows == 5
    with store.writer() as w:
        counts = w.upsert(bars("AAA", ["2024-01-02", "2024-01-03"], 99))
        w.commit()
    assert counts == {"new": 1, "replaced": 1}
    df = Store.open(root).read_frame()
    aaa = df[df.symbol == "AAA"].set_index("date")["close"]
    assert list(aaa.index.strftime("%Y-%m-%d")) == ["2023-12-28", "2023-12-29", "2024-01-02", "2024-01-03"]
    assert list(aaa) == [10.0, 11.0, 99.0, 100.0]
    bbb = df[df.symbol == "BBB"]["close"].tolist()
    assert bbb == [50.0, 51.0], "other symbols of a rewritten year survive"
    info = Store.open(root).symbol_info("AAA")
    assert (info.rows, str(info.first.date()), str(info.last.date())) == (4, "2023-12-28", "2024-01-03")


def test_uncommitted_writer_changes_nothing(tmp_path):
    root = tmp_path / "s"
    with Store.create(root).writer() as w:
        w.upsert(bars("AAA", ["2024-01-02"]))
        w.commit()
    before = (root / "manifest.json").read_bytes()
    with Store.open(root).writer() as w:
        w.upsert(bars("ZZZ", ["2024-01-03"]))
        # no commit: leaving the block throws the work away
    assert (root / "manifest.json").read_bytes() == before
    assert Store.open(root).symbols() == ["AAA"]
    assert not list(root.rglob(".tmp-*"))


def test_one_writer_at_a_time(tmp_path):
    root = tmp_path / "s"
    w1 = Store.create(root).writer()
    try:
        with pytest.raises(StoreError, match="another process is writing"):
            Store.create(root).writer()
    finally:
        w1.close()
    Store.create(root).writer().close()  # free again


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "x.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("half of the new")
            raise RuntimeError("power cut")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def _snapshot(root: Path) -> pd.DataFrame:
    return Store.open(root).read_frame()


_WRITER = textwrap.dedent("""
    import sys, pitools as pt
    pt.make_demo_store(sys.argv[1], n_symbols=int(sys.argv[2]), years=8, seed=2, end=sys.argv[3], force=True)
""")


@pytest.mark.slow
def test_kill_9_during_a_rewrite_leaves_the_old_or_the_new_store_never_a_mix(tmp_path):
    """A real writer process is SIGKILLed at several moments of replacing a store."""
    root = tmp_path / "s"
    pt.make_demo_store(root, n_symbols=30, years=2, seed=1, end=END)
    old = _snapshot(root)
    new = None
    outcomes = set()
    for delay in (0.3, 0.8, 1.3, 1.8, 2.4, 3.2):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root), "300", END])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = Store.open(root)  # always opens
        assert store.verify() == []  # every listed file exists with its recorded hash
        now = _snapshot(root)
        if len(now) == len(old) and now.equals(old):
            outcomes.add("old")
        else:
            if new is None:
                subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path / "ref"), "300", END], check=True)
                new = _snapshot(tmp_path / "ref")
            pd.testing.assert_frame_equal(now, new)
            outcomes.add("new")
            pt.make_demo_store(root, n_symbols=30, years=2, seed=1, end=END, force=True)  # back to old
        panel = pt.load_panel(root, fields=("close",))
        assert panel.n_symbols in (30, 300)
    assert "old" in outcomes  # a kill before the commit point kept the old store
    # The next writer removes what the killed ones left behind.
    with Store.open(root).writer():
        pass
    assert not list(root.rglob(".tmp-*"))
    listed = {root / p.file for p in Store.open(root).partitions.values()}
    stray = [p for p in (root / "bars").rglob("*.parquet") if p not in listed]
    # Stray complete files of a killed writer are never read; the next commit removes them.
    with Store.open(root).writer() as w:
        w.commit()
    assert all(not p.exists() for p in stray)


def test_a_damaged_or_missing_file_is_reported_not_trusted(tmp_path):
    root = tmp_path / "s"
    pt.make_demo_store(root, n_symbols=5, years=2, seed=1, end=END)
    store = Store.open(root)
    year = max(store.partitions)
    path = root / store.partitions[year].file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(StoreError, match="damaged"):
        pt.load_panel(root)
    assert any("bytes" in p for p in Store.open(root).verify())
    path.write_bytes(data[:-8] + b"\0" * 8)  # same size, different content
    assert any("sha256" in p for p in Store.open(root).verify())
    path.unlink()
    with pytest.raises(StoreError, match="missing"):
        pt.load_panel(root)


def test_files_not_in_the_manifest_are_ignored(tmp_path):
    root = tmp_path / "s"
    pt.make_demo_store(root, n_symbols=5, years=1, seed=1, end=END)
    before = pt.load_panel(root)
    year = max(Store.open(root).partitions)
    # A half-written file from a crashed writer, and a foreign file: neither is listed.
    (root / "bars" / str(year) / ".tmp-half.parquet").write_bytes(b"PAR1 garbage")
    (root / "bars" / str(year) / "0000000000000000.parquet").write_bytes(b"not parquet at all")
    after = pt.load_panel(root)
    assert np.array_equal(before.close, after.close, equal_nan=True)


def test_missing_or_foreign_manifest(tmp_path):
    with pytest.raises(StoreError, match="no bar store.*pitools demo-data"):
        Store.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(StoreError, match="not a pitools-store"):
        Store.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{ half")
    with pytest.raises(StoreError, match="damaged"):
        Store.open(tmp_path)


def test_subset_reads_only_the_row_groups_that_hold_it(long_store):
    store = Store.open(long_store)
    year = max(store.partitions)
    part = store.partitions[year]
    sym = part.symbols[len(part.symbols) // 2]
    groups = store.row_groups_for(year, {sym})
    assert 1 <= len(groups) <= 2
    assert len(groups) < len(part.row_groups) or len(part.row_groups) == 1
    table = store.read_year(year, {sym})
    assert set(table["symbol"].cast("string").to_pylist()) == {sym}
    assert table.num_rows == part.sym_rows[part.symbols.index(sym)]


def test_a_reader_that_opened_the_store_before_a_commit_keeps_working(tmp_path):
    root = tmp_path / "s"
    pt.make_demo_store(root, n_symbols=6, years=1, seed=1, end=END)
    reader = Store.open(root)
    before = pt.load_panel(reader, fields=("close",))
    day = reader.last_date
    sym = reader.symbols()[0]
    for k in range(2):
        with Store.open(root).writer() as w:
            w.upsert(pd.DataFrame({"symbol": [sym], "date": [day], "open": [1.0 + k], "high": [2.0 + k],
                                   "low": [0.5], "close": [1.5 + k], "volume": [10.0]}))
            w.commit()
        if k == 0:  # one commit later the old files are still there for the old reader
            again = pt.load_panel(reader, fields=("close",))
            assert np.array_equal(again.close, before.close, equal_nan=True)
    # two commits later they are gone: a clear message, and loading by path just works
    with pytest.raises(StoreError, match="changed while it was read"):
        pt.load_panel(reader, fields=("close",))
    fresh = pt.load_panel(root, fields=("close",))
    assert fresh.close[-1, fresh.symbols.index(sym)] == np.float32(2.5)


def test_zoned_dates_are_stored_on_their_new_york_day_and_year(tmp_path):
    root = tmp_path / "s"
    stamp = pd.Timestamp("2024-12-31 20:00", tz="America/New_York")  # 2025-01-01 in UTC
    with Store.create(root).writer() as w:
        w.upsert(pd.DataFrame({"symbol": ["AAA"], "date": [stamp], "open": [1.0], "high": [2.0], "low": [0.5],
                               "close": [1.5], "volume": [10.0]}))
        w.commit()
    store = Store.open(root)
    assert list(store.partitions) == [2024]
    assert store.read_frame()["date"].tolist() == [pd.Timestamp("2024-12-31")]

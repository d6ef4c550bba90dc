"""`pitools ingest`: real CSV / parquet files in, a clear outcome for every bad input out.

Every test writes real files into ``tmp_path`` (no mocks) on real NYSE sessions, and checks
the store, the quarantine folder and that the source files are left byte-for-byte as they were.
Expected values are computed here from the text written, never copied from the code's output.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from pitools.data.ingest import ingest
from pitools.errors import DataError, IngestError

ROOT = Path(__file__).resolve().parents[1]

# NYSE sessions of early 2024, computed without the code under test: weekdays minus the
# exchange holidays of that span (MLK day 2024-01-15, Presidents Day 2024-02-19, Good Friday 2024-03-29).
_HOLIDAYS = {"2024-01-15", "2024-02-19", "2024-03-29"}
SESSIONS = [d for d in pd.bdate_range("2024-01-02", "2024-03-28").strftime("%Y-%m-%d") if d not in _HOLIDAYS]
assert SESSIONS[:5] == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]
assert "2024-01-15" not in SESSIONS and "2024-01-16" in SESSIONS and len(SESSIONS) == 61

YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
STOOQ_HEADER = "Date,Open,High,Low,Close,Volume"
BULK_HEADER = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>"
PRICE_COLS = ["open", "high", "low", "close"]


# -- building real files -------------------------------------------------------------------
def bar_values(i: int, base: float = 100.0) -> dict[str, float]:
    """A valid bar: low < open < close < high, all positive; exact in 4 decimals."""
    close = base + 1.25 * i
    return {"open": close - 0.5, "high": close + 1.0, "low": close - 1.5, "close": close,
            "volume": 1000.0 + 10 * i}


def yahoo_row(date: str, i: int, base: float = 100.0, factor: float = 1.0) -> list[str]:
    v = bar_values(i, base)
    return [date, f"{v['open']:.4f}", f"{v['high']:.4f}", f"{v['low']:.4f}", f"{v['close']:.4f}",
            f"{v['close'] * factor:.4f}", f"{v['volume']:.0f}"]


def stooq_row(date: str, i: int, base: float = 100.0) -> list[str]:
    v = bar_values(i, base)
    return [date, f"{v['open']:.4f}", f"{v['high']:.4f}", f"{v['low']:.4f}", f"{v['close']:.4f}",
            f"{v['volume']:.0f}"]


def write_csv(path: Path, header: str, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def yahoo_file(path: Path, dates: list[str], base: float = 100.0) -> Path:
    return write_csv(path, YAHOO_HEADER, [yahoo_row(d, i, base) for i, d in enumerate(dates)])


def expected_frame(rows: list[list[str]], symbol: str, header: str = YAHOO_HEADER, adjust: bool = True) -> pd.DataFrame:
    """What the store should hold for clean `rows`, computed from the text written."""
    cols = [c.strip().lower().replace(" ", "_") for c in header.split(",")]
    df = pd.DataFrame(rows, columns=cols)
    out = pd.DataFrame({"symbol": symbol, "date": pd.to_datetime(df["date"])})
    factor = df["adj_close"].astype(float) / df["close"].astype(float) if adjust and "adj_close" in df else 1.0
    for f in PRICE_COLS:
        out[f] = df[f].astype(float) * factor
    out["volume"] = df["volume"].astype(float) / factor
    return out.sort_values(["symbol", "date"], ignore_index=True)


def stored(store: Path, symbols=None) -> pd.DataFrame:
    return pt.Store.open(store).read_frame(symbols)


def assert_frame_values(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    actual = actual.sort_values(["symbol", "date"], ignore_index=True)
    expected = expected.sort_values(["symbol", "date"], ignore_index=True)
    assert list(actual["symbol"]) == list(expected["symbol"])
    assert list(actual["date"].dt.strftime("%Y-%m-%d")) == list(expected["date"].dt.strftime("%Y-%m-%d"))
    for f in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(actual[f].to_numpy(float), expected[f].to_numpy(float), rtol=1e-12, err_msg=f)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_unique_keys(frame: pd.DataFrame) -> None:
    dups = frame[frame.duplicated(["symbol", "date"], keep=False)]
    assert dups.empty, f"duplicate (symbol, date) rows in the store:\n{dups}"


# -- clean imports -------------------------------------------------------------------------
def test_yahoo_csv_imports_every_row_with_adj_close_scaling(tmp_path):
    dates = SESSIONS[:12]
    # A 2:1 split after the 4th session: Yahoo's Adj Close is half the Close before it.
    rows = [yahoo_row(d, i, factor=0.5 if i < 4 else 1.0) for i, d in enumerate(dates)]
    src = write_csv(tmp_path / "in" / "AAPL.csv", YAHOO_HEADER, rows)
    before = src.read_bytes()

    report = ingest(src, tmp_path / "store", quarantine=tmp_path / "q")

    (out,) = report.files
    assert (out.status, out.symbols, out.rows_read, out.rows_imported, out.rows_rejected) == \
        ("imported", ["AAPL"], 12, 12, 0)
    assert report.ok and report.new_rows == 12 and report.replaced_rows == 0
    assert report.quarantine_dir is None and not (tmp_path / "q").exists()
    df = stored(tmp_path / "store")
    assert_frame_values(df, expected_frame(rows, "AAPL"))
    # The split row, spelled out: close becomes Adj Close, open/high/low scale by the same factor.
    first = df.iloc[0]
    raw = [float(x) for x in rows[0][1:]]
    assert first["close"] == pytest.approx(raw[4]) == pytest.approx(raw[3] * 0.5)
    assert first["open"] == pytest.approx(raw[0] * 0.5) and first["high"] == pytest.approx(raw[1] * 0.5)
    assert first["low"] == pytest.approx(raw[2] * 0.5) and first["volume"] == pytest.approx(raw[5] * 2)
    # An unsplit row is stored as written.
    assert df.iloc[8]["open"] == pytest.approx(float(rows[8][1]))
    assert any("adj" in n.lower() for n in out.notes)
    assert src.read_bytes() == before

    raw_report = ingest(src, tmp_path / "raw", quarantine=tmp_path / "q2", adjust=False)
    assert raw_report.files[0].rows_imported == 12
    assert_frame_values(stored(tmp_path / "raw"), expected_frame(rows, "AAPL", adjust=False))
    assert stored(tmp_path / "raw").iloc[0]["close"] == pytest.approx(float(rows[0][4]))


def test_stooq_daily_csv(tmp_path):
    rows = [stooq_row(d, i, base=300.0) for i, d in enumerate(SESSIONS[:15])]
    src = write_csv(tmp_path / "msft.us.txt", STOOQ_HEADER, rows)  # Stooq's name: market suffix .us
    report = ingest(src, tmp_path / "store", quarantine=tmp_path / "q")
    assert report.files[0].status == "imported" and report.files[0].symbols == ["MSFT"]
    assert_frame_values(stored(tmp_path / "store"), expected_frame(rows, "MSFT", STOOQ_HEADER))


def test_stooq_bulk_file_with_ticker_column_and_compact_dates(tmp_path):
    rows, expected = [], []
    for ticker, symbol, base in (("AAPL.US", "AAPL", 185.0), ("MSFT.US", "MSFT", 370.0)):
        for i, d in enumerate(SESSIONS[:8]):
            v = bar_values(i, base)
            rows.append([ticker, "D", d.replace("-", ""), "000000", f"{v['open']:.4f}", f"{v['high']:.4f}",
                         f"{v['low']:.4f}", f"{v['close']:.4f}", f"{v['volume']:.0f}", "0"])
            expected.append({"symbol": symbol, "date": pd.Timestamp(d), **v})
    assert rows[0][:3] == ["AAPL.US", "D", "20240102"]
    src = write_csv(tmp_path / "bulk" / "nasdaq_stocks.txt", BULK_HEADER, rows)

    report = ingest(tmp_path / "bulk", tmp_path / "store", quarantine=tmp_path / "q")

    (out,) = report.files
    assert out.status == "imported" and out.symbols == ["AAPL", "MSFT"] and out.rows_imported == 16
    assert_frame_values(stored(tmp_path / "store"), pd.DataFrame(expected))
    assert src.exists()


def test_parquet_long_bars_with_and_without_symbol_column(tmp_path):
    parts, expected = [], []
    for sym, base in (("AAA", 10.0), ("BBB", 50.0), ("CCC", 250.0)):
        vals = [bar_values(i, base) for i in range(len(SESSIONS[:20]))]
        frame = pd.DataFrame(vals).assign(symbol=sym, date=pd.to_datetime(SESSIONS[:20]))
        parts.append(frame)
    long = pd.concat(parts, ignore_index=True)
    (tmp_path / "in").mkdir()
    long[["symbol", "date", *PRICE_COLS, "volume"]].to_parquet(tmp_path / "in" / "universe.parquet")
    spy = pd.DataFrame([bar_values(i, 470.0) for i in range(30)]).assign(date=pd.to_datetime(SESSIONS[:30]))
    spy[["date", *PRICE_COLS, "volume"]].to_parquet(tmp_path / "in" / "SPY.parquet")

    report = ingest(tmp_path / "in", tmp_path / "store", quarantine=tmp_path / "q")

    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["universe.parquet"].symbols == ["AAA", "BBB", "CCC"]
    assert by_name["universe.parquet"].rows_imported == 60
    assert by_name["SPY.parquet"].symbols == ["SPY"] and by_name["SPY.parquet"].rows_imported == 30
    assert report.new_rows == 90 and all(f.status == "imported" for f in report.files)
    expected = pd.concat([long, spy.assign(symbol="SPY")], ignore_index=True)
    assert_frame_values(stored(tmp_path / "store"), expected)


# -- whole files that cannot be used ---------------------------------------------------------
def _garbage_with_nul(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).bytes(4096))


def _garbage_high_bytes(p: Path) -> None:  # no NUL byte, but not text either
    p.write_bytes(bytes(range(128, 256)) * 16)


def _truncated_parquet(p: Path) -> None:
    frame = pd.DataFrame([bar_values(i) for i in range(10)]).assign(date=pd.to_datetime(SESSIONS[:10]))
    frame.to_parquet(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _text_named_parquet(p: Path) -> None:
    p.write_text(YAHOO_HEADER + "\n" + ",".join(yahoo_row(SESSIONS[0], 0)) + "\n")


def _truncated_gzip(p: Path) -> None:
    text = YAHOO_HEADER + "\n" + "".join(",".join(yahoo_row(d, i)) + "\n" for i, d in enumerate(SESSIONS))
    p.write_bytes(gzip.compress(text.encode())[:60])


def _all_nan_parquet(p: Path) -> None:
    frame = pd.DataFrame({"date": pd.to_datetime(SESSIONS[:5]), **{f: [np.nan] * 5 for f in PRICE_COLS},
                          "volume": [100.0] * 5})
    frame.to_parquet(p)


def _csv(text: str):
    def write(p: Path) -> None:
        p.write_text(text)
    return write


_NAN_ROWS = "".join(f"{d},,,,,,{1000 + i}\n" for i, d in enumerate(SESSIONS[:5]))
_NULL_ROWS = "".join(f"{d},null,null,null,null,null,null\n" for d in SESSIONS[:5])
_NAN_TOKEN_ROWS = "".join(f"{d},NaN,NaN,NaN,NaN,NaN,0\n" for d in SESSIONS[:5])
_NA_ROWS = "".join(f"{d},N/A,N/A,N/A,N/A,N/A,0\n" for d in SESSIONS[:5])
_WEEKEND_ROWS = "".join(",".join(yahoo_row(d, i)) + "\n" for i, d in enumerate(["2024-01-06", "2024-01-07", "2024-01-13"]))

WHOLE_FILE_CASES = [
    pytest.param("JUNK.csv", _garbage_with_nul, ["unreadable", "binary"], id="binary-garbage-csv"),
    pytest.param("JUNK2.csv", _garbage_high_bytes, ["unreadable"], id="non-text-csv-without-nul"),
    pytest.param("CORRUPT.parquet", _truncated_parquet, ["unreadable parquet"], id="truncated-parquet"),
    pytest.param("TEXT.parquet", _text_named_parquet, ["unreadable parquet"], id="text-named-parquet"),
    pytest.param("CUT.csv.gz", _truncated_gzip, ["unreadable"], id="truncated-gzip"),
    pytest.param("EMPTY.csv", _csv(""), ["empty"], id="empty-file"),
    pytest.param("HEAD.csv", _csv(YAHOO_HEADER + "\n"), ["no rows", "header only"], id="header-only"),
    pytest.param("NOCLOSE.csv", _csv("Date,Open,High,Low,Volume\n" + "".join(
        f"{d},10,11,9,100\n" for d in SESSIONS[:5])), ["missing column", "close"], id="missing-close-column"),
    pytest.param("NODATE.csv", _csv("Open,High,Low,Close\n10,11,9,10.5\n"), ["missing column", "date"],
                 id="missing-date-column"),
    pytest.param("ALLNAN.csv", _csv(YAHOO_HEADER + "\n" + _NAN_ROWS), ["all-nan"], id="all-nan-empty-cells"),
    pytest.param("ALLNULL.csv", _csv(YAHOO_HEADER + "\n" + _NULL_ROWS), ["all-nan"], id="all-nan-yahoo-null"),
    pytest.param("ALLNAN2.csv", _csv(YAHOO_HEADER + "\n" + _NAN_TOKEN_ROWS), ["all-nan"], id="all-nan-NaN-tokens"),
    pytest.param("ALLNAN.parquet", _all_nan_parquet, ["all-nan"], id="all-nan-parquet"),
    pytest.param("ALLNA.csv", _csv(YAHOO_HEADER + "\n" + _NA_ROWS), ["all-nan"], id="all-nan-N/A-tokens"),
    pytest.param("WKND.csv", _csv(YAHOO_HEADER + "\n" + _WEEKEND_ROWS), ["no usable rows", "not a session"],
                 id="only-weekend-rows"),
]


@pytest.mark.parametrize("name, write, reason_words", WHOLE_FILE_CASES)
def test_unusable_file_is_copied_to_quarantine_with_a_reason(tmp_path, name, write, reason_words):
    src = tmp_path / "in" / name
    src.parent.mkdir()
    write(src)
    before = src.read_bytes()
    qdir = tmp_path / "q"

    report = ingest(src, tmp_path / "store", quarantine=qdir)

    (out,) = report.files
    assert out.status == "quarantined" and out.rows_imported == 0
    for word in reason_words:
        assert word in out.reason.lower(), (word, out.reason)
    assert not report.ok and report.new_rows == 0 and report.quarantine_dir == qdir
    assert not pt.Store.exists(tmp_path / "store"), "nothing was written to the store"
    assert (qdir / name).read_bytes() == before, "the quarantine holds an exact copy"
    reason_txt = (qdir / f"{name}.reason.txt").read_text()
    assert out.reason in reason_txt and str(src.resolve()) in reason_txt
    assert src.read_bytes() == before, "the source file is untouched"
    assert name in report.summary() and out.reason in report.summary()


def test_same_name_bad_files_from_two_folders_are_both_kept(tmp_path):
    a, b = tmp_path / "a" / "BAD.csv", tmp_path / "b" / "BAD.csv"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_bytes(b"\x00\x01garbage-a")
    b.write_text("Date,Open\n2024-01-02,1\n")
    report = ingest([tmp_path / "a", tmp_path / "b"], tmp_path / "store", quarantine=tmp_path / "q")
    assert [f.status for f in report.files] == ["quarantined", "quarantined"]
    copies = sorted(p for p in (tmp_path / "q").iterdir() if not p.name.endswith(".reason.txt"))
    assert len(copies) == 2
    assert {p.read_bytes() for p in copies} == {a.read_bytes(), b.read_bytes()}
    for p in copies:
        assert p.with_name(p.name + ".reason.txt").is_file()


# -- bad rows inside otherwise good files -------------------------------------------------------
_BASE_DATES = SESSIONS[:13]  # 2024-01-02 .. 2024-01-19 (skips MLK day 2024-01-15)


def _bad(i: int, **fields) -> list[str]:
    row = yahoo_row(_BASE_DATES[i], i)
    keys = ["date", "open", "high", "low", "close", "adj_close", "volume"]
    for k, v in fields.items():
        row[keys.index(k)] = v
    return row


BAD_ROW_CASES = [
    # id, {index in _BASE_DATES: replacement row}, [extra rows], expected reason words
    pytest.param({3: _bad(3, close="abc", adj_close="abc")}, [], ["non-numeric", "`close`", "'abc'"], id="abc-in-close"),
    pytest.param({5: _bad(5, open="1O1.5")}, [], ["non-numeric", "`open`", "'1O1.5'"], id="letter-O-in-open"),
    pytest.param({4: _bad(4, volume="12x")}, [], ["non-numeric", "`volume`", "'12x'"], id="non-numeric-volume"),
    pytest.param({2: [_BASE_DATES[2]] + ["null"] * 6}, [], ["missing value"], id="yahoo-null-row"),
    pytest.param({6: _bad(6, high="")}, [], ["missing value", "`high`"], id="empty-high"),
    pytest.param({1: _bad(1, open="0")}, [], ["non-positive", "`open`"], id="zero-open"),
    pytest.param({7: _bad(7, low="-3.5")}, [], ["non-positive", "`low`"], id="negative-low"),
    pytest.param({8: _bad(8, close="-1", adj_close="-1")}, [], ["non-positive"], id="negative-close"),
    pytest.param({9: _bad(9, volume="-5")}, [], ["negative", "`volume`"], id="negative-volume"),
    pytest.param({5: _bad(5, high="90", low="95", open="92", close="93", adj_close="93")}, [], ["high < low"],
                 id="high-below-low"),
    pytest.param({3: _bad(3, open="250")}, [], ["`open` outside [low, high]"], id="open-above-high"),
    pytest.param({10: _bad(10, close="1", adj_close="1")}, [], ["`close` outside [low, high]"], id="close-below-low"),
    pytest.param({}, [yahoo_row("2024-01-06", 3)], ["not a session", "weekend or holiday"], id="saturday"),
    pytest.param({}, [yahoo_row("2024-01-15", 9)], ["not a session", "weekend or holiday"], id="mlk-day-holiday"),
    pytest.param({}, [yahoo_row("2024-13-45", 2)], ["unparseable date", "2024-13-45"], id="impossible-date"),
    pytest.param({0: _bad(0, close="abc", adj_close="abc"), 12: _bad(12, low="0")},
                 [yahoo_row("2024-01-07", 1)], ["non-numeric"], id="several-bad-rows"),
]


@pytest.mark.parametrize("replace, extra, reason_words", BAD_ROW_CASES)
def test_bad_rows_are_rejected_one_by_one(tmp_path, replace, extra, reason_words):
    rows = [replace.get(i, yahoo_row(d, i)) for i, d in enumerate(_BASE_DATES)] + extra
    rows.sort(key=lambda r: r[0])
    bad_rows = [replace[i] for i in sorted(replace)] + extra
    good_rows = [yahoo_row(d, i) for i, d in enumerate(_BASE_DATES) if i not in replace]
    src = write_csv(tmp_path / "in" / "IBM.csv", YAHOO_HEADER, rows)
    before = src.read_bytes()
    qdir = tmp_path / "q"

    report = ingest(src, tmp_path / "store", quarantine=qdir)

    (out,) = report.files
    assert out.status == "partial"
    assert (out.rows_read, out.rows_imported, out.rows_rejected) == (len(rows), len(good_rows), len(bad_rows))
    assert sum(out.reasons.values()) == len(bad_rows)
    assert report.ok and report.new_rows == len(good_rows)
    # The store holds exactly the good rows, with their values.
    assert_frame_values(stored(tmp_path / "store"), expected_frame(good_rows, "IBM"))
    # The quarantine holds exactly the bad rows, as written, each with its reason.
    rejected = pd.read_csv(qdir / "IBM.csv.rejected.csv", dtype=str, keep_default_na=False)
    assert "reason" in rejected.columns
    got = sorted(rejected[["date", "open", "high", "low", "close", "volume"]].values.tolist())
    want = sorted([[r[0], r[1], r[2], r[3], r[4], r[6]] for r in bad_rows])
    assert got == want
    reason = rejected.loc[rejected["date"] == bad_rows[0][0], "reason"].item()
    for word in reason_words:
        assert word in reason, (word, reason)
    assert (rejected["reason"].str.len() > 0).all()
    reason_txt = (qdir / "IBM.csv.reason.txt").read_text()
    assert f"rejected rows: {len(bad_rows)}" in reason_txt and "IBM.csv.rejected.csv" in reason_txt
    assert src.read_bytes() == before
    assert not (qdir / "IBM.csv").exists(), "a partly good file is not copied whole"


def test_duplicate_dates_identical_kept_once_conflicting_all_rejected(tmp_path):
    dates = SESSIONS[:10]
    rows = [yahoo_row(d, i) for i, d in enumerate(dates)]
    identical = list(rows[2])  # 2024-01-04 twice, byte-identical
    conflicting = yahoo_row(dates[6], 6)  # 2024-01-10 twice, different close
    conflicting[4] = conflicting[5] = f"{float(rows[6][4]) + 0.25:.4f}"
    file_rows = rows[:3] + [identical] + rows[3:7] + [conflicting] + rows[7:]
    src = write_csv(tmp_path / "DUP.csv", YAHOO_HEADER, file_rows)
    before = src.read_bytes()

    report = ingest(src, tmp_path / "store", quarantine=tmp_path / "q")

    (out,) = report.files
    assert out.status == "partial" and out.rows_read == 12
    assert (out.rows_imported, out.rows_rejected) == (9, 3)
    df = stored(tmp_path / "store")
    assert_unique_keys(df)
    keep = [r for i, r in enumerate(rows) if i != 6]
    assert_frame_values(df, expected_frame(keep, "DUP"))
    rejected = pd.read_csv(tmp_path / "q" / "DUP.csv.rejected.csv", dtype=str, keep_default_na=False)
    assert sorted(rejected["date"]) == [dates[2], dates[6], dates[6]]
    assert "duplicate" in rejected.loc[rejected["date"] == dates[2], "reason"].item()
    conf = rejected.loc[rejected["date"] == dates[6]]
    assert sorted(conf["close"]) == sorted([rows[6][4], conflicting[4]])
    assert conf["reason"].str.contains("conflicting").all()
    assert src.read_bytes() == before


def test_unsorted_dates_are_all_imported_sorted_with_a_note(tmp_path):
    dates = SESSIONS[:15]
    rows = [yahoo_row(d, i) for i, d in enumerate(dates)]
    order = np.random.default_rng(5).permutation(len(rows))
    assert list(order) != sorted(order)
    src = write_csv(tmp_path / "ZZ.csv", YAHOO_HEADER, [rows[k] for k in order])

    report = ingest(src, tmp_path / "store", quarantine=tmp_path / "q")

    (out,) = report.files
    assert out.status == "imported" and out.rows_imported == 15 and out.rows_rejected == 0
    assert any("order" in n and "sorted" in n for n in out.notes), out.notes
    df = stored(tmp_path / "store")
    assert df["date"].is_monotonic_increasing
    assert_frame_values(df, expected_frame(rows, "ZZ"))
    assert "sorted" in report.summary()


# -- updates, cross-file conflicts, the store ------------------------------------------------------
def test_reingest_replaces_overlapping_rows_and_adds_new_ones(tmp_path):
    store = tmp_path / "store"
    first_rows = [yahoo_row(d, i) for i, d in enumerate(SESSIONS[:10])]
    write_csv(tmp_path / "v1" / "AAPL.csv", YAHOO_HEADER, first_rows)
    r1 = ingest(tmp_path / "v1" / "AAPL.csv", store, quarantine=tmp_path / "q")
    assert (r1.new_rows, r1.replaced_rows) == (10, 0)

    # The update: sessions 5..16 with revised prices (another base), overlapping 5..9.
    update_rows = [yahoo_row(d, i, base=200.0) for i, d in enumerate(SESSIONS[5:17], start=5)]
    write_csv(tmp_path / "v2" / "AAPL.csv", YAHOO_HEADER, update_rows)
    r2 = ingest(tmp_path / "v2" / "AAPL.csv", store, quarantine=tmp_path / "q")

    assert (r2.new_rows, r2.replaced_rows) == (7, 5)
    df = stored(store)
    assert_unique_keys(df)
    assert len(df) == 17 and pt.Store.open(store).n_rows == 17
    assert_frame_values(df, expected_frame(first_rows[:5] + update_rows, "AAPL"))

    r3 = ingest(tmp_path / "v2" / "AAPL.csv", store, quarantine=tmp_path / "q")  # same again
    assert (r3.new_rows, r3.replaced_rows) == (0, 12)
    assert len(stored(store)) == 17


def test_same_symbol_dates_in_two_files_of_one_ingest_never_duplicate(tmp_path):
    old_rows = [yahoo_row(d, i) for i, d in enumerate(SESSIONS[:6])]
    new_rows = [yahoo_row(d, i, base=150.0) for i, d in enumerate(SESSIONS[:6])]
    write_csv(tmp_path / "in" / "a" / "AAPL.csv", YAHOO_HEADER, old_rows)
    write_csv(tmp_path / "in" / "b" / "AAPL.csv", YAHOO_HEADER, new_rows)
    store = tmp_path / "store"

    report = ingest(tmp_path / "in", store, quarantine=tmp_path / "q")

    df = stored(store)
    assert_unique_keys(df)
    assert len(df) == 6 and report.new_rows == 6
    assert list(df["date"].dt.strftime("%Y-%m-%d")) == SESSIONS[:6]
    # The later file in path order (in/b) wins, as a newer download would.
    expected = [float(r[4]) for r in new_rows]
    assert df["close"].round(6).tolist() == pytest.approx(expected)


def test_parquet_row_without_symbol_is_not_invented_a_symbol(tmp_path):
    frame = pd.DataFrame([bar_values(i) for i in range(3)]).assign(
        symbol=["AAA", None, "BBB"], date=pd.to_datetime(SESSIONS[:1] * 3))
    frame.to_parquet(tmp_path / "mixed.parquet")
    report = ingest(tmp_path / "mixed.parquet", tmp_path / "store", quarantine=tmp_path / "q")
    assert report.files[0].status == "partial"
    assert report.files[0].reasons == {"missing symbol": 1}
    assert set(stored(tmp_path / "store")["symbol"]) == {"AAA", "BBB"}


def test_rejected_row_does_not_touch_the_stored_good_row(tmp_path):
    store = tmp_path / "store"
    rows = [yahoo_row(d, i) for i, d in enumerate(SESSIONS[:8])]
    write_csv(tmp_path / "v1" / "KO.csv", YAHOO_HEADER, rows)
    ingest(tmp_path / "v1" / "KO.csv", store, quarantine=tmp_path / "q")
    bad_update = [list(r) for r in rows]
    bad_update[3][4] = bad_update[3][5] = "abc"  # a broken re-download of one day
    write_csv(tmp_path / "v2" / "KO.csv", YAHOO_HEADER, bad_update)
    report = ingest(tmp_path / "v2" / "KO.csv", store, quarantine=tmp_path / "q")
    assert report.files[0].status == "partial" and report.replaced_rows == 7
    assert_frame_values(stored(store), expected_frame(rows, "KO"))


def _mixed_folder(folder: Path) -> dict[str, list[str]]:
    """Good and bad files side by side; returns the good rows per symbol."""
    good = {
        "AAPL": [yahoo_row(d, i, base=180.0) for i, d in enumerate(SESSIONS[:20])],
        "MSFT": [yahoo_row(d, i, base=370.0) for i, d in enumerate(SESSIONS[:20])],
    }
    write_csv(folder / "AAPL.csv", YAHOO_HEADER, good["AAPL"])
    msft = list(good["MSFT"])
    msft.insert(7, yahoo_row("2024-01-13", 7, base=370.0))  # a Saturday
    msft[3] = _with(msft[3], 4, "abc")
    write_csv(folder / "MSFT.csv", YAHOO_HEADER, msft)
    good["MSFT"] = [r for i, r in enumerate(good["MSFT"]) if i != 3]
    (folder / "garbage.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20)
    (folder / "nocols.csv").write_text("Date,Price\n2024-01-02,10\n")
    (folder / "README.md").write_text("downloaded from yahoo\n")
    return good


def _with(row: list[str], k: int, value: str) -> list[str]:
    row = list(row)
    row[k] = value
    return row


def test_mixed_ingest_leaves_a_loadable_store(tmp_path):
    good = _mixed_folder(tmp_path / "in")
    report = ingest(tmp_path / "in", tmp_path / "store", quarantine=tmp_path / "q")

    status = {Path(f.path).name: f.status for f in report.files}
    assert status == {"AAPL.csv": "imported", "MSFT.csv": "partial", "garbage.csv": "quarantined",
                      "nocols.csv": "quarantined"}
    assert [Path(p).name for p in report.ignored] == ["README.md"]
    assert report.ok and report.new_rows == 39

    panel = pt.load_panel(tmp_path / "store")
    assert panel.symbols == ["AAPL", "MSFT"]
    assert list(panel.dates.strftime("%Y-%m-%d")) == SESSIONS[:20]
    aapl = expected_frame(good["AAPL"], "AAPL")["close"].to_numpy()
    np.testing.assert_allclose(panel.close[:, 0], aapl, rtol=1e-6)  # panel prices may be float32
    msft_close = panel.close[:, 1]
    assert np.isnan(msft_close[3]) and np.isfinite(np.delete(msft_close, 3)).all()
    np.testing.assert_allclose(np.delete(msft_close, 3), expected_frame(good["MSFT"], "MSFT")["close"], rtol=1e-6)


def test_bad_ingest_into_a_good_store_changes_nothing(tmp_path):
    store = tmp_path / "store"
    yahoo_file(tmp_path / "good" / "AAPL.csv", SESSIONS[:10])
    ingest(tmp_path / "good", store, quarantine=tmp_path / "q0")
    before_files, before_frame = snapshot(store), stored(store)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "AAPL.csv").write_bytes(b"\x00\xff" * 100)  # same symbol, unreadable
    (bad / "MSFT.csv").write_text(YAHOO_HEADER + "\n")
    write_csv(bad / "KO.csv", YAHOO_HEADER, [_with(yahoo_row(d, i), 3, "-1") for i, d in enumerate(SESSIONS[:5])])
    report = ingest(bad, store, quarantine=tmp_path / "q1")

    assert not report.ok and [f.status for f in report.files] == ["quarantined"] * 3
    assert snapshot(store) == before_files
    pd.testing.assert_frame_equal(stored(store), before_frame)
    assert pt.load_panel(store).symbols == ["AAPL"]


def test_api_user_errors():
    with pytest.raises(DataError, match="Did you mean 'parquet'"):
        ingest(ROOT, "/nonexistent-store", fmt="parqet")
    with pytest.raises(IngestError, match="does-not-exist"):
        ingest("/tmp/does-not-exist-pitools-ingest", "/nonexistent-store")


# -- the command line --------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pitools", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_mixed_folder_exits_0_and_lists_every_bad_file(tmp_path):
    good = _mixed_folder(tmp_path / "in")
    before = snapshot(tmp_path / "in")
    r = cli("ingest", str(tmp_path / "in"), "--store", str(tmp_path / "store"), "--quarantine", str(tmp_path / "q"))

    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stdout.splitlines()
    garbage = [ln for ln in lines if "garbage.csv" in ln]
    assert len(garbage) == 1 and "quarantined" in garbage[0] and "unreadable" in garbage[0]
    nocols = [ln for ln in lines if "nocols.csv" in ln]
    assert len(nocols) == 1 and "missing column" in nocols[0] and "close" in nocols[0]
    msft = [ln for ln in lines if "MSFT.csv" in ln]
    assert len(msft) == 1 and "partial" in msft[0] and "2 rejected" in msft[0]
    assert "non-numeric" in msft[0] and "not a session" in msft[0]
    assert "README.md" in r.stdout
    assert str(tmp_path / "q") in r.stdout
    assert snapshot(tmp_path / "in") == before
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == [
        "MSFT.csv.reason.txt", "MSFT.csv.rejected.csv", "garbage.csv", "garbage.csv.reason.txt",
        "nocols.csv", "nocols.csv.reason.txt"]
    assert_frame_values(stored(tmp_path / "store"), pd.concat(
        [expected_frame(rows, sym) for sym, rows in good.items()]))


def test_cli_no_adjust_keeps_raw_prices(tmp_path):
    rows = [yahoo_row(d, i, factor=0.25) for i, d in enumerate(SESSIONS[:5])]
    write_csv(tmp_path / "T.csv", YAHOO_HEADER, rows)
    r = cli("ingest", str(tmp_path / "T.csv"), "--store", str(tmp_path / "store"), "--quarantine",
            str(tmp_path / "q"), "--no-adjust", "--format", "yahoo")
    assert r.returncode == 0, r.stderr
    assert_frame_values(stored(tmp_path / "store"), expected_frame(rows, "T", adjust=False))


def test_cli_only_bad_files_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "junk.csv").write_bytes(b"\x00\x01\x02" * 50)
    (bad / "empty.csv").write_text("")
    r = cli("ingest", str(bad), "--store", str(tmp_path / "store"), "--quarantine", str(tmp_path / "q"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "nothing usable" in r.stderr
    assert "junk.csv" in r.stdout and "empty.csv" in r.stdout
    assert (tmp_path / "q" / "junk.csv").read_bytes() == b"\x00\x01\x02" * 50
    assert not pt.Store.exists(tmp_path / "store")


def test_cli_missing_source_and_unknown_format_exit_2(tmp_path):
    missing = tmp_path / "no-such-folder"
    r = cli("ingest", str(missing), "--store", str(tmp_path / "store"), "--quarantine", str(tmp_path / "q"))
    assert r.returncode == 2 and str(missing) in r.stderr and "Traceback" not in r.stderr, r.stderr

    yahoo_file(tmp_path / "A.csv", SESSIONS[:3])
    r = cli("ingest", str(tmp_path / "A.csv"), "--store", str(tmp_path / "store"), "--format", "yahooo")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "yahooo" in r.stderr and "Did you mean 'yahoo'" in r.stderr
    assert not pt.Store.exists(tmp_path / "store")


def test_future_dates_are_rejected(tmp_path):
    rows = [yahoo_row(d, i) for i, d in enumerate(SESSIONS[:3])] + [yahoo_row("2204-01-02", 3)]
    write_csv(tmp_path / "FUT.csv", YAHOO_HEADER, rows)
    report = ingest(tmp_path / "FUT.csv", tmp_path / "store", quarantine=tmp_path / "q")
    assert report.files[0].status == "partial" and report.files[0].rows_imported == 3
    assert list(report.files[0].reasons) == ["date in the future"]


def test_parquet_with_the_date_as_index_imports(tmp_path):
    frame = pd.DataFrame([bar_values(i) for i in range(4)], index=pd.DatetimeIndex(SESSIONS[:4], name="Date"))
    frame.to_parquet(tmp_path / "IDX.parquet")
    report = ingest(tmp_path / "IDX.parquet", tmp_path / "store", quarantine=tmp_path / "q")
    assert report.files[0].status == "imported" and report.imported_rows == 4
    assert stored(tmp_path / "store")["symbol"].unique().tolist() == ["IDX"]


def test_stooq_weekly_bars_are_not_taken_for_daily(tmp_path):
    header = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>,<OPENINT>"
    rows = [["AAPL.US", "W", d.replace("-", ""), "000000", "10", "11", "9", "10.5", "100", "0"] for d in SESSIONS[:3]]
    write_csv(tmp_path / "aapl.us.txt", header, rows)
    report = ingest(tmp_path / "aapl.us.txt", tmp_path / "store", quarantine=tmp_path / "q")
    assert report.files[0].status == "quarantined" and "not daily bars" in report.files[0].reason
    assert "'W'" in report.files[0].reason and not pt.Store.exists(tmp_path / "store")


def test_a_quarantine_folder_inside_the_source_is_not_read_back(tmp_path):
    src = tmp_path / "in"
    rows = [yahoo_row(d, i) for i, d in enumerate(SESSIONS[:4])]
    rows[1] = _with(rows[1], 4, "abc")
    write_csv(src / "AAA.csv", YAHOO_HEADER, rows)
    q = src / "quarantine"
    first = ingest(src, tmp_path / "store", quarantine=q)
    assert (q / "AAA.csv.rejected.csv").exists() and first.files[0].rows_rejected == 1
    second = ingest(src, tmp_path / "store", quarantine=q)
    assert [Path(f.path).name for f in second.files] == ["AAA.csv"]


def test_yfinance_csv_with_utc_offsets_across_dst(tmp_path):
    """yfinance writes '-05:00' in winter and '-04:00' in summer: read as New York trading days."""
    rows = [["2024-03-07 00:00:00-05:00", "10", "11", "9", "10.5", "10.5", "100"],
            ["2024-03-08 00:00:00-05:00", "10", "11", "9", "10.6", "10.6", "100"],
            ["2024-03-11 00:00:00-04:00", "10", "11", "9", "10.7", "10.7", "100"]]
    write_csv(tmp_path / "YF.csv", YAHOO_HEADER, rows)
    report = ingest(tmp_path / "YF.csv", tmp_path / "store", quarantine=tmp_path / "q")
    assert report.files[0].status == "imported"
    assert list(stored(tmp_path / "store")["date"].dt.strftime("%Y-%m-%d")) == ["2024-03-07", "2024-03-08", "2024-03-11"]


def test_infinite_values_in_parquet_are_rejected(tmp_path):
    frame = pd.DataFrame([bar_values(i) for i in range(3)]).assign(date=pd.to_datetime(SESSIONS[:3]))
    frame.loc[1, "volume"] = float("inf")
    frame.to_parquet(tmp_path / "INF.parquet")
    report = ingest(tmp_path / "INF.parquet", tmp_path / "store", quarantine=tmp_path / "q")
    assert report.files[0].reasons == {"non-finite value in `volume`": 1}
    assert np.isfinite(stored(tmp_path / "store")["volume"]).all()


def test_without_a_quarantine_folder_bad_input_goes_beside_the_store(tmp_path):
    rows = [yahoo_row(d, i) for i, d in enumerate(SESSIONS[:4])]
    rows[1] = _with(rows[1], 4, "abc")
    write_csv(tmp_path / "in" / "AAA.csv", YAHOO_HEADER, rows)
    store = tmp_path / "data" / "store"
    first = ingest(tmp_path / "in", store)
    second = ingest(tmp_path / "in", store)  # perhaps within the same second: still a folder of its own
    assert first.quarantine_dir.parent == second.quarantine_dir.parent == tmp_path / "data" / "quarantine"
    assert first.quarantine_dir != second.quarantine_dir
    for report in (first, second):
        assert (report.quarantine_dir / "AAA.csv.rejected.csv").is_file() and report.source == "ingest"
    assert pt.Store.open(store).info["source"] == "ingest"

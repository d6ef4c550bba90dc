"""`pitools ingest` reads CSV dialects as the file meant, or refuses the file naming the
column and the value; prices the float32 panel cannot hold are rejected; a full disk ends
in one clear line and exit code 1, with nothing lost.

Every test writes real files (no mocks of the reading path) on NYSE sessions of October 2024
(no exchange holiday that month); expected values are spelled out from the text written.
The disk-full tests inject ENOSPC at the atomic-write function, and one fills a real tmpfs
(skipped where mounting is not permitted).
"""

from __future__ import annotations

import codecs
import errno
import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from pitools import cli
from pitools.data import atomic
from pitools.data.ingest import QuarantineError, ingest
from pitools.errors import DataError, PitoolsError, StoreError

ROOT = Path(__file__).resolve().parents[1]
# Weekdays of October 2024; the NYSE traded on all of them (Columbus Day is a session).
OCT = list(pd.bdate_range("2024-10-01", "2024-10-31").strftime("%Y-%m-%d"))
assert OCT[:3] == ["2024-10-01", "2024-10-02", "2024-10-03"] and "2024-10-21" in OCT and len(OCT) == 23
HEADER = ["Date", "Open", "High", "Low", "Close", "Volume"]


def write(path: Path, rows: list[list[str]], sep: str = ",", header: list[str] = HEADER,
          encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = sep.join(header) + "\n" + "".join(sep.join(r) + "\n" for r in rows)
    path.write_bytes(text.encode(encoding))
    return path


def row(date: str, o: str = "10", h: str = "11", lo: str = "9", c: str = "10.5", v: str = "1000") -> list[str]:
    return [date, o, h, lo, c, v]


def run(tmp_path: Path, src: Path, **kw):
    report = ingest(src, tmp_path / "store", quarantine=tmp_path / "q", **kw)
    (out,) = report.files
    return report, out


def stored(tmp_path: Path) -> pd.DataFrame:
    return pt.Store.open(tmp_path / "store").read_frame()


def dates_of(frame: pd.DataFrame) -> list[str]:
    return list(frame["date"].dt.strftime("%Y-%m-%d"))


def reason_file(tmp_path: Path, name: str) -> str:
    return (tmp_path / "q" / f"{name}.reason.txt").read_text()


def assert_refused(tmp_path: Path, out, name: str, *words: str) -> None:
    assert out.status == "quarantined", out
    for word in words:
        assert word in out.reason, (word, out.reason)
    assert out.reason in reason_file(tmp_path, name)
    assert not pt.Store.exists(tmp_path / "store"), "nothing of a refused file is stored"


# -- separators and decimal marks ------------------------------------------------------------
def test_semicolon_file_with_decimal_commas_and_thousands_dots(tmp_path):
    rows = [row(OCT[0], "10,5", "11,25", "10", "10,75", "1.234.567"),
            row(OCT[1], "1.234,50", "1.240,00", "1.230,00", "1.235,00", "100")]
    src = write(tmp_path / "EU.csv", rows, sep=";")
    before = src.read_bytes()

    report, out = run(tmp_path, src)

    assert out.status == "imported" and out.rows_imported == 2
    assert any("semicolon" in n for n in out.notes) and "decimal comma" in out.notes
    df = stored(tmp_path)
    assert df[["open", "high", "low", "close", "volume"]].values.tolist() == [
        [10.5, 11.25, 10.0, 10.75, 1234567.0], [1234.5, 1240.0, 1230.0, 1235.0, 100.0]]
    assert src.read_bytes() == before


def test_tab_and_pipe_separated_files(tmp_path):
    for sep, name in (("\t", "TAB"), ("|", "PIPE")):
        src = write(tmp_path / f"{name}.txt", [row(d, c=f"10.{i}") for i, d in enumerate(OCT[:3])], sep=sep)
        report = ingest(src, tmp_path / "store", quarantine=tmp_path / "q")
        assert report.files[0].rows_imported == 3, report.summary()
    df = stored(tmp_path)
    assert sorted(df["symbol"].unique()) == ["PIPE", "TAB"]
    assert df[df["symbol"] == "TAB"]["close"].tolist() == [10.0, 10.1, 10.2]


def test_quoted_decimal_commas_in_a_comma_file_are_read_as_decimals(tmp_path):
    rows = [row(OCT[0], '"10,5"', '"11,5"', '"10,0"', '"10,75"'), row(OCT[1], '"1.234,5"', '"1.240"', '"1.230"', '"1.235,25"')]
    report, out = run(tmp_path, write(tmp_path / "Q.csv", rows))
    assert out.status == "imported" and "decimal comma" in out.notes
    assert stored(tmp_path)["close"].tolist() == [10.75, 1235.25]


def test_quoted_thousands_commas_in_a_comma_file_with_decimal_points(tmp_path):
    rows = [row(OCT[0], '"1,234.50"', '"1,240"', '"1,230.25"', '"1,235.75"', '"1,234,567"'),
            row(OCT[1], "1234.5", "1240", "1230", "1235.5", "100")]
    report, out = run(tmp_path, write(tmp_path / "US.csv", rows))
    assert out.status == "imported"
    df = stored(tmp_path)
    assert df["open"].tolist() == [1234.5, 1234.5] and df["volume"].tolist() == [1234567.0, 100.0]


def test_a_file_mixing_decimal_comma_and_point_is_refused_naming_both(tmp_path):
    rows = [row(OCT[0], c='"10,5"'), row(OCT[1], c="10.25")]
    src = write(tmp_path / "MIX.csv", rows)
    report, out = run(tmp_path, src)
    assert_refused(tmp_path, out, "MIX.csv", "column `close` value '10,5' uses a decimal comma", "'10.25'",
                   "decimal point", "decimal mark")
    assert (tmp_path / "q" / "MIX.csv").read_bytes() == src.read_bytes()


def test_ambiguous_numbers_in_a_semicolon_file_are_refused_naming_the_separator(tmp_path):
    # Every price has one '.' and three digits after it: 10.125 or 10125? Nothing tells.
    rows = [row(d, "10.125", "11.250", "9.500", "10.750", "100") for d in OCT[:3]]
    report, out = run(tmp_path, write(tmp_path / "AMB.csv", rows, sep=";"))
    assert_refused(tmp_path, out, "AMB.csv", "column `open` value '10.125' is ambiguous", "semicolon-separated",
                   "`decimal`")
    # Told the decimal mark, the same file is read.
    report = ingest(tmp_path / "AMB.csv", tmp_path / "store", quarantine=tmp_path / "q2", decimal=".")
    assert report.files[0].rows_imported == 3 and stored(tmp_path)["open"].tolist() == [10.125] * 3


def test_semicolon_file_with_unknown_headers_names_the_separator(tmp_path):
    src = write(tmp_path / "DE.csv", [["2024-10-01", "10,5", "11", "9", "10,75"]], sep=";",
                header=["Datum", "Eröffnung", "Hoch", "Tief", "Schluss"])
    report, out = run(tmp_path, src)
    assert_refused(tmp_path, out, "DE.csv", "missing column", "semicolon-separated (';')", "Datum")


def test_a_decimal_comma_row_in_a_decimal_point_file_is_rejected_not_read_as_105(tmp_path):
    # Given sep=',' and decimal='.', an unquoted-looking "10,5" can only be a wrong value.
    rows = [row(d, c="10.5") for d in OCT[:4]]
    rows[2] = row(OCT[2], c='"10,5"')
    report = ingest(write(tmp_path / "ONE.csv", rows), tmp_path / "store", quarantine=tmp_path / "q", decimal=".")
    out = report.files[0]
    assert out.status == "partial" and out.rows_imported == 3
    rejected = pd.read_csv(tmp_path / "q" / "ONE.csv.rejected.csv", dtype=str, keep_default_na=False)
    assert rejected["close"].tolist() == ["10,5"]
    assert "non-numeric value in `close`: '10,5'" in rejected["reason"].item()
    assert "decimal comma" in rejected["reason"].item()
    assert 105.0 not in stored(tmp_path)["close"].tolist()


# -- dates -------------------------------------------------------------------------------------
def _dmy(d: str, sep: str = "/") -> str:
    y, m, day = d.split("-")
    return f"{day}{sep}{m}{sep}{y}"


def _mdy(d: str) -> str:
    y, m, day = d.split("-")
    return f"{m}/{day}/{y}"


@pytest.mark.parametrize("fmt, sep", [(_dmy, "/"), (lambda d: _dmy(d, "."), "."), (_mdy, "/")],
                         ids=["day-first-slash", "day-first-dot", "month-first"])
def test_day_month_order_is_decided_from_the_whole_column(tmp_path, fmt, sep):
    # 2024-10-07 and 2024-10-10 have day <= 12: read per value they would become July / October 7.
    days = ["2024-10-07", "2024-10-10", "2024-10-11", "2024-10-21"]
    report, out = run(tmp_path, write(tmp_path / "D.csv", [row(fmt(d)) for d in days]))
    assert out.status == "imported" and out.rows_imported == 4, out
    assert dates_of(stored(tmp_path)) == days
    first = "day-first" if fmt is not _mdy else "month-first"
    assert any(first in n for n in out.notes), out.notes


def test_ambiguous_day_month_dates_are_refused_with_the_fix(tmp_path):
    days = ["2024-10-07", "2024-10-08", "2024-10-09"]  # every field <= 12
    report, out = run(tmp_path, write(tmp_path / "AMB.csv", [row(_dmy(d)) for d in days]))
    assert_refused(tmp_path, out, "AMB.csv", "column `date` value '07/10/2024'", "day-first or month-first",
                   "YYYY-MM-DD")
    report = ingest(tmp_path / "AMB.csv", tmp_path / "store", quarantine=tmp_path / "q2", dayfirst=True)
    assert dates_of(stored(tmp_path)) == days


def test_dates_mixing_day_first_and_month_first_are_refused(tmp_path):
    rows = [row("21/10/2024"), row("10/22/2024")]
    report, out = run(tmp_path, write(tmp_path / "MIXD.csv", rows))
    assert_refused(tmp_path, out, "MIXD.csv", "mixes day-first '21/10/2024' and month-first '10/22/2024'", "YYYY-MM-DD")


def test_two_digit_years_are_refused(tmp_path):
    report, out = run(tmp_path, write(tmp_path / "YY.csv", [row("21/10/24"), row("22/10/24")]))
    assert_refused(tmp_path, out, "YY.csv", "column `date` value '21/10/24'", "YYYY-MM-DD")


def test_year_first_slash_dates_are_read_as_written(tmp_path):
    report, out = run(tmp_path, write(tmp_path / "YMD.csv", [row("2024/10/07"), row("2024/10/21")]))
    assert dates_of(stored(tmp_path)) == ["2024-10-07", "2024-10-21"]


def test_utc_midnight_stamps_are_the_trading_day_and_intraday_stamps_are_dated_in_new_york(tmp_path):
    stamps = {
        "2024-10-21T00:00:00Z": "2024-10-21",       # vendor daily stamp: not Sunday the 20th in New York
        "2024-10-22T00:00:00+00:00": "2024-10-22",
        "2024-10-23 00:00:00-04:00": "2024-10-23",  # yfinance, New York midnight
        "2024-10-24T00:00:00+0900": "2024-10-24",   # midnight in its own zone: still that date
        "2024-10-26T01:00:00Z": "2024-10-25",       # an instant: 21:00 on Friday the 25th in New York
        "2024-10-28T15:30:00+02:00": "2024-10-28",  # 09:30 in New York
        "2024-10-29T20:00:00Z": "2024-10-29",
    }
    report, out = run(tmp_path, write(tmp_path / "Z.csv", [row(s, c=f"10.{i}") for i, s in enumerate(stamps)]))
    assert out.status == "imported" and out.rows_imported == len(stamps), out
    df = stored(tmp_path)
    assert dates_of(df) == list(stamps.values())
    assert df["close"].tolist() == [float(f"10.{i}") for i in range(len(stamps))]


def test_parquet_utc_midnight_timestamps_keep_their_date(tmp_path):
    frame = pd.DataFrame({"date": pd.to_datetime(["2024-10-21", "2024-10-22"]).tz_localize("UTC"),
                          "open": [10.0, 10.0], "high": [11.0, 11.0], "low": [9.0, 9.0], "close": [10.5, 10.6]})
    frame.to_parquet(tmp_path / "PQ.parquet")
    report, out = run(tmp_path, tmp_path / "PQ.parquet")
    assert dates_of(stored(tmp_path)) == ["2024-10-21", "2024-10-22"]


# -- values the float32 panel cannot hold --------------------------------------------------------
BAD_VALUES = [  # (field, text, expected reason words)
    ("high", "1e308", ["`high` out of range: 1e+308", "1e-06..1e+09"]),
    ("low", "1e-300", ["`low` out of range: 1e-300", "1e-06..1e+09"]),
    ("close", "5e9", ["`close` out of range: 5e+09"]),
    ("open", "inf", ["non-finite value in `open`"]),
    ("close", "1e400", ["non-finite value in `close`"]),
    ("volume", "1e20", ["`volume` out of range: 1e+20", "0 or 1e-06..1e+15"]),
    ("volume", "1e-300", ["`volume` out of range: 1e-300"]),
]


@pytest.mark.parametrize("field, text, words", BAD_VALUES, ids=[f"{f}={t}" for f, t, _ in BAD_VALUES])
def test_values_the_panel_cannot_hold_are_rejected(tmp_path, field, text, words):
    rows = [row(d, c=f"10.{i}") for i, d in enumerate(OCT[:4])]
    k = HEADER.index(field.capitalize())
    rows[1][k] = text
    report, out = run(tmp_path, write(tmp_path / "BIG.csv", rows))
    assert out.status == "partial" and out.rows_imported == 3 and out.rows_rejected == 1
    rejected = pd.read_csv(tmp_path / "q" / "BIG.csv.rejected.csv", dtype=str, keep_default_na=False)
    for word in words:
        assert word in rejected["reason"].item(), (word, rejected["reason"].item())
    panel = pt.load_panel(tmp_path / "store")
    assert np.isfinite(panel.close).all() and (panel.close > 0).all()
    assert dates_of(stored(tmp_path)) == [OCT[0], OCT[2], OCT[3]]


def test_zero_volume_is_kept(tmp_path):
    report, out = run(tmp_path, write(tmp_path / "Z0.csv", [row(d, v="0") for d in OCT[:2]]))
    assert out.rows_imported == 2 and stored(tmp_path)["volume"].tolist() == [0.0, 0.0]


def test_parquet_1e308_is_rejected(tmp_path):
    frame = pd.DataFrame({"date": pd.to_datetime(OCT[:3]), "open": [10.0, 10.0, 10.0], "high": [11.0, 1e308, 11.0],
                          "low": [9.0, 9.0, 9.0], "close": [10.5, 10.5, 10.5]})
    frame.to_parquet(tmp_path / "P.parquet")
    report, out = run(tmp_path, tmp_path / "P.parquet")
    assert out.reasons == {"`high` out of range": 1}


def test_a_huge_bad_value_is_cut_in_the_reasons(tmp_path):
    junk = "X" * 1_000_000
    rows = [row(d) for d in OCT[:3]] + [row(OCT[3], c=junk), row(junk)]
    src = write(tmp_path / "HUGE.csv", rows)

    report, out = run(tmp_path, src)

    assert out.status == "partial" and out.rows_imported == 3
    reason_txt = reason_file(tmp_path, "HUGE.csv")
    assert len(reason_txt) < 2000, len(reason_txt)
    assert "1,000,000 characters" in reason_txt and "'XXXX" in reason_txt
    assert len(report.summary()) < 2000
    rejected = pd.read_csv(tmp_path / "q" / "HUGE.csv.rejected.csv", dtype=str, keep_default_na=False)
    assert (rejected["reason"].str.len() < 200).all()
    assert sorted(rejected["close"].str.len()) == [4, 1_000_000], "rejected rows keep the file's values"


def test_a_huge_bad_header_is_cut_in_the_reason_file(tmp_path):
    src = write(tmp_path / "HDR.csv", [["1"]], header=["Y" * 500_000])
    report, out = run(tmp_path, src)
    assert out.status == "quarantined" and "missing column" in out.reason
    assert len(reason_file(tmp_path, "HDR.csv")) < 1000


# -- encodings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding, bom", [("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE),
                                           ("utf-8", codecs.BOM_UTF8), ("utf-16-le", b""),
                                           ("utf-32-le", codecs.BOM_UTF32_LE)],
                         ids=["utf-16-le-bom", "utf-16-be-bom", "utf-8-bom", "utf-16-le-no-bom", "utf-32-le-bom"])
def test_unicode_encodings_are_decoded(tmp_path, encoding, bom):
    text = ",".join(HEADER) + "\n" + "".join(",".join(row(d, c=f"10.{i}")) + "\n" for i, d in enumerate(OCT[:3]))
    src = tmp_path / "ENC.csv"
    src.write_bytes(bom + text.encode(encoding))
    report, out = run(tmp_path, src)
    assert out.status == "imported" and out.rows_imported == 3, out
    assert stored(tmp_path)["close"].tolist() == [10.0, 10.1, 10.2]
    if "16" in encoding:
        assert any("UTF-16" in n for n in out.notes), out.notes


def test_gzipped_utf16_semicolon_file(tmp_path):
    text = ";".join(HEADER) + "\n" + "".join(";".join(row(d, c=f"10,{i}")) + "\n" for i, d in enumerate(OCT[:2]))
    src = tmp_path / "GZ.csv.gz"
    src.write_bytes(gzip.compress(text.encode("utf-16")))
    report, out = run(tmp_path, src)
    assert out.rows_imported == 2 and stored(tmp_path)["close"].tolist() == [10.0, 10.1]


def test_broken_utf16_is_named_as_utf16(tmp_path):
    src = tmp_path / "BAD16.csv"
    src.write_bytes(codecs.BOM_UTF16_LE + "Date,Open".encode("utf-16-le") + b"\x00\xd8\x00\xd8" * 50)  # lone surrogates
    report, out = run(tmp_path, src)
    assert_refused(tmp_path, out, "BAD16.csv", "unreadable", "not UTF-16 text")


def test_latin1_file_is_refused_as_not_utf8(tmp_path):
    src = write(tmp_path / "L1.csv", [row(OCT[0])], header=["Datum", "Eröffnung"], encoding="latin-1")
    report, out = run(tmp_path, src)
    assert_refused(tmp_path, out, "L1.csv", "unreadable", "not UTF-8 text", "save it as UTF-8")


def test_dialect_arguments_are_checked():
    with pytest.raises(DataError, match="`sep` = ':'"):
        ingest(ROOT, "/nonexistent-store", sep=":")
    with pytest.raises(DataError, match="`decimal` = ';'"):
        ingest(ROOT, "/nonexistent-store", decimal=";")
    with pytest.raises(DataError, match="`dayfirst`"):
        ingest(ROOT, "/nonexistent-store", dayfirst="yes")


# -- disk full ------------------------------------------------------------------------------------
def _enospc_for(monkeypatch, suffix: str) -> None:
    """Every atomic write of a file whose name ends with `suffix` fails as on a full disk."""
    real = atomic.write_bytes_atomic

    def failing(path, data, perms=None):
        if str(path).endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data, perms)

    monkeypatch.setattr(atomic, "write_bytes_atomic", failing)


def _good_store(tmp_path: Path) -> tuple[Path, list[str], pd.DataFrame]:
    store = tmp_path / "store"
    files = [write(tmp_path / "v1" / f"{s}.csv", [row(d, c=f"10.{i}") for i, d in enumerate(OCT[:5])]) for s in ("AAA", "BBB")]
    ingest(files, store, quarantine=tmp_path / "q0")
    return store, pt.Store.open(store).symbols(), stored(tmp_path)


def test_disk_full_at_the_store_commit_is_a_store_error_and_loses_nothing(tmp_path, monkeypatch):
    store, symbols, frame = _good_store(tmp_path)
    src = write(tmp_path / "v2" / "CCC.csv", [row(d) for d in OCT[:5]])
    before = src.read_bytes()
    _enospc_for(monkeypatch, "manifest.json")

    with pytest.raises(StoreError) as info:
        ingest(src, store, quarantine=tmp_path / "q")

    assert info.value.exit_code == 1
    message = str(info.value)
    assert "no space left on device" in message.lower() and str(store) in message and "\n" not in message
    monkeypatch.undo()
    assert pt.Store.open(store).symbols() == symbols
    pd.testing.assert_frame_equal(stored(tmp_path), frame)
    assert pt.load_panel(store).symbols == symbols
    assert src.read_bytes() == before


def test_disk_full_in_the_quarantine_is_reported_and_exits_1(tmp_path, monkeypatch):
    store, symbols, _ = _good_store(tmp_path)
    (tmp_path / "v2").mkdir()
    bad = tmp_path / "v2" / "BAD.csv"
    bad.write_bytes(b"\x00\x01\x02" * 100)
    good = write(tmp_path / "v2" / "CCC.csv", [row(d) for d in OCT[:5]])
    _enospc_for(monkeypatch, ".reason.txt")

    with pytest.raises(QuarantineError) as info:
        ingest(tmp_path / "v2", store, quarantine=tmp_path / "q")

    err = info.value
    assert isinstance(err, PitoolsError) and err.exit_code == 1
    message = str(err)
    assert "BAD.csv" in message and "no space left on device" in message and "binary" in message
    assert "BAD.csv.reason.txt" in message and "\n" not in message
    (out_bad, out_good) = err.report.files
    assert out_bad.status == "quarantined" and "binary" in out_bad.reason and out_bad.quarantine_error
    assert "NOT RECORDED" in err.report.summary()
    assert out_good.status == "imported" and err.report.new_rows == 5
    # No half records: the copy without its reason was removed again.
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").iterdir())
    monkeypatch.undo()
    assert pt.Store.open(store).symbols() == symbols + ["CCC"]
    assert bad.read_bytes() == b"\x00\x01\x02" * 100 and good.exists()


def test_cli_disk_full_prints_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
    store, symbols, frame = _good_store(tmp_path)
    src = write(tmp_path / "v2" / "CCC.csv", [row(d) for d in OCT[:5]])
    _enospc_for(monkeypatch, "manifest.json")
    code = cli.main(["ingest", str(src), "--store", str(store), "--quarantine", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("ingest", "["))]
    (line,) = [ln for ln in lines if "error" in ln]
    assert "no space left on device" in line.lower() and str(store) in line and "Traceback" not in err
    monkeypatch.undo()
    pd.testing.assert_frame_equal(stored(tmp_path), frame)


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 512 KiB tmpfs (root only); skipped where mounting is not permitted."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_cli_on_a_really_full_disk_exits_1_and_keeps_the_store(tiny_fs, tmp_path):
    store = tiny_fs / "store"
    files = [write(tmp_path / "v1" / f"{s}.csv", [row(d, c=f"10.{i}") for i, d in enumerate(OCT[:5])]) for s in ("AAA", "BBB")]
    ingest(files, store, quarantine=tiny_fs / "q0")
    frame = pt.Store.open(store).read_frame()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "BAD.csv").write_bytes(b"\x00\x01\x02" * 100)
    write(tmp_path / "v2" / "CCC.csv", [row(d) for d in OCT[:5]])
    before = {p.name: p.read_bytes() for p in (tmp_path / "v2").iterdir()}
    _fill(tiny_fs)

    r = subprocess.run([sys.executable, "-m", "pitools", "ingest", str(tmp_path / "v2"), "--store", str(store),
                        "--quarantine", str(tiny_fs / "q")], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert "no space left on device" in line.lower() and str(store) in line
    assert "BAD.csv" in line and "binary" in line, "the reason the full quarantine could not keep is in the message"
    assert pt.Store.open(store).symbols() == ["AAA", "BBB"]
    pd.testing.assert_frame_equal(pt.Store.open(store).read_frame(), frame)
    assert {p.name: p.read_bytes() for p in (tmp_path / "v2").iterdir()} == before


def test_cli_quarantine_write_failure_exits_1_naming_the_file_and_its_reason(tmp_path, monkeypatch, capsys):
    store, symbols, _ = _good_store(tmp_path)
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "EMPTY.csv").write_text("")
    _enospc_for(monkeypatch, ".reason.txt")
    code = cli.main(["ingest", str(tmp_path / "v2"), "--store", str(store), "--quarantine", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if "error" in ln]
    assert "EMPTY.csv" in line and "empty file" in line and "no space left on device" in line
    monkeypatch.undo()
    assert pt.Store.open(store).symbols() == symbols


def test_a_date_beyond_the_nanosecond_range_is_one_rejected_row(tmp_path):
    rows = [row(d) for d in OCT[:3]] + [row("3906-01-02")]
    report, out = run(tmp_path, write(tmp_path / "FAR.csv", rows))
    assert out.status == "partial" and out.rows_imported == 3
    assert out.reasons == {"date out of range": 1}

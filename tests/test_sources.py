"""Refresh sources of the nightly 01_data notebook: a real loopback HTTP server, real files.

The HTTP server answers each ``s=`` query with a response recorded here (CSV rows that
continue the store's last close, an HTML page, a truncated body, an error status, a hang)
and records every query that arrives. Expected rows are computed from the text written here.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from pitools.config import load_profile
from pitools.data import sources
from pitools.data.ingest import ingest
from pitools.data.sources import refresh, stooq_symbol
from pitools.errors import ConfigError, MixedDataError, NoStoreError

END = "2026-11-13"  # a Friday: the store's last session
# Friday 2026-11-20, after the close in New York: Mon 16 … Fri 20 are missing (no holiday that week).
NOW = datetime(2026, 11, 20, 18, 0, tzinfo=ZoneInfo("America/New_York"))
MISSING = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
HEADER = "Date,Open,High,Low,Close,Volume"


# -- a loopback server with recorded responses ----------------------------------------------
class Recorded:
    """Responses by Stooq symbol and the queries that arrived."""

    def __init__(self):
        self.routes: dict[str, tuple[str, object]] = {}
        self.queries: list[dict[str, str]] = []
        self.lock = threading.Lock()


def _handler(rec: Recorded):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

        def _send(self, status: int, body: bytes, ctype: str = "text/csv", length: int | None = None):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_GET(self):
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            with rec.lock:
                rec.queries.append(query)
            kind, payload = rec.routes.get(query.get("s", ""), ("status", 404))
            try:
                if kind == "csv":
                    self._send(200, payload.encode())
                elif kind == "html":
                    self._send(200, payload.encode(), "text/html; charset=utf-8")
                elif kind == "status":
                    self._send(payload, b"server error", "text/plain")
                elif kind == "truncate":  # announce more than is sent, then hang up
                    self._send(200, payload.encode(), length=len(payload) + 400)
                    self.close_connection = True
                elif kind == "sleep":
                    time.sleep(payload)
                    self._send(200, (HEADER + "\r\n").encode())
            except (BrokenPipeError, ConnectionResetError):  # the client gave up: expected for "sleep"
                pass

    return Handler


@pytest.fixture(scope="module")
def server():
    rec = Recorded()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    rec.port = httpd.server_address[1]
    yield rec
    httpd.shutdown()
    httpd.server_close()


def imported_store(path: Path, n_symbols: int, seed: int) -> pt.Store:
    """A store of imported bars ("source": "ingest") shaped like the demo universe: the demo's
    bars exported to one long parquet file and imported, as downloaded bars would be (a
    refresh never brings real bars into a store that `pitools demo-data` built)."""
    demo = pt.make_demo_store(path.with_name(path.name + "-demo"), n_symbols=n_symbols, years=1, seed=seed, end=END)
    export = path.with_name(path.name + "-bars.parquet")
    demo.read_frame().to_parquet(export)
    report = ingest(export, path, quarantine=path.with_name(path.name + "-q"))
    assert report.ok and report.imported_rows == demo.n_rows, report.summary()
    shutil.rmtree(demo.root)
    export.unlink()
    store = pt.Store.open(path)
    assert store.info["source"] == "ingest" and store.symbols(None) == demo.symbols(None)
    return store


@pytest.fixture(scope="module")
def base_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "store"
    store = imported_store(path, n_symbols=4, seed=1)
    # Every series ends on END, so each one lacks exactly MISSING (checked, not assumed).
    assert {str(store.symbol_info(s).last.date()) for s in store.symbols(None)} == {END}
    return path


@pytest.fixture
def env(tmp_path, base_store, server):
    shutil.copytree(base_store, tmp_path / "store")
    server.routes.clear()
    server.queries.clear()
    profile = load_profile("ci").replace(data_dir=str(tmp_path), data_source="http",
                                         http_base_url=f"http://127.0.0.1:{server.port}/q/d/l/")
    store = pt.Store.open(tmp_path / "store")
    return profile, store, server


def bars_csv(store, symbol: str, dates=MISSING, seed: int = 0, volume: bool = True) -> str:
    """Plausible Stooq rows continuing `symbol`'s last close (CRLF, as Stooq sends)."""
    rng = np.random.default_rng(seed)
    close = float(store.read_frame([symbol])["close"].iloc[-1])
    lines = [HEADER if volume else HEADER.rsplit(",", 1)[0]]
    for d in dates:
        o = close * (1 + rng.normal(0, 0.003))
        close = o * (1 + rng.normal(0, 0.01))
        row = [d, f"{o:.4f}", f"{max(o, close) * 1.004:.4f}", f"{min(o, close) * 0.996:.4f}", f"{close:.4f}"]
        lines.append(",".join(row + ([str(int(rng.integers(1e5, 1e6)))] if volume else [])))
    return "\r\n".join(lines) + "\r\n"


def serve_good(server, store, symbols) -> dict[str, str]:
    texts = {}
    for k, sym in enumerate(symbols):
        texts[sym] = bars_csv(store, sym, seed=k, volume=sym != "^VIX")
        server.routes[stooq_symbol(sym)] = ("csv", texts[sym])
    return texts


def expected_rows(text: str) -> pd.DataFrame:
    rows = [line.split(",") for line in text.strip().splitlines()[1:]]
    return pd.DataFrame({"date": pd.to_datetime([r[0] for r in rows]),
                         "close": [float(r[4]) for r in rows]})


def problem_of(report, symbol: str) -> dict:
    found = [p for p in report.problems if p["symbol"] == symbol]
    assert len(found) == 1, report.summary()
    return found[0]


# -- http -----------------------------------------------------------------------------------
def test_http_appends_exactly_the_missing_sessions(env):
    profile, store, server = env
    symbols = store.symbols(None)
    current = symbols[0]  # made up to date first: it must not be requested
    fresh = bars_csv(store, current, seed=99)
    (profile.data_dir / "own").mkdir()
    (profile.data_dir / "own" / f"{current}.csv").write_text(fresh)
    ingest(profile.data_dir / "own", profile.store_dir, fmt="stooq")
    before = pt.Store.open(profile.store_dir).read_frame()
    texts = serve_good(server, store, symbols[1:])
    # One response also repeats two sessions the store has (other values): they are not taken.
    repeated = bars_csv(store, symbols[1], dates=["2026-11-12", END], seed=5).split("\r\n")[1:3]
    head, *rows = texts[symbols[1]].split("\r\n")
    server.routes[stooq_symbol(symbols[1])] = ("csv", "\r\n".join([head, *repeated, *rows]))
    ticks = []

    report = refresh(profile, now=NOW, progress=lambda d, t: ticks.append((d, t)))

    assert report.ok, report.summary()
    assert report.checked == 6 and report.up_to_date == 1
    assert report.updated == sorted(symbols[1:]) and report.rows_added == 5 * 5
    assert report.through == "2026-11-20" and ticks[-1] == (5, 5)
    asked = {q["s"]: q for q in server.queries}
    assert len(server.queries) == 5 and set(asked) == {stooq_symbol(s) for s in symbols[1:]}
    assert stooq_symbol(current) not in asked and "^spx" in asked and "^vix" in asked
    assert all(q["d1"] == "20261116" and q["d2"] == "20261120" and q["i"] == "d" for q in asked.values())
    after = pt.Store.open(profile.store_dir)
    assert after.verify() == []
    frame = after.read_frame()
    old = frame[frame["date"] <= END].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, before[before["date"] <= END].reset_index(drop=True))
    for sym, text in texts.items():
        got = frame[(frame["symbol"] == sym) & (frame["date"] > END)].reset_index(drop=True)
        want = expected_rows(text)
        assert list(got["date"].dt.strftime("%Y-%m-%d")) == MISSING
        np.testing.assert_allclose(got["close"], want["close"], rtol=1e-12)
    assert "added:" in report.summary() and "+5" in report.summary()
    record = report.to_dict()
    assert record["ok"] is True and record["rows_added"] == 25

    server.queries.clear()
    again = refresh(profile, now=NOW)
    assert server.queries == [] and again.up_to_date == 6 and again.rows_added == 0 and again.ok


def test_http_truncated_bodies_are_quarantined_and_the_rest_appended(env):
    profile, store, server = env
    symbols = store.symbols(None)
    cut_short, cut_mid_row = symbols[0], symbols[1]
    serve_good(server, store, symbols[2:])
    server.routes[stooq_symbol(cut_short)] = ("truncate", bars_csv(store, cut_short))
    server.routes[stooq_symbol(cut_mid_row)] = ("csv", bars_csv(store, cut_mid_row)[:-30])

    report = refresh(profile, now=NOW)

    assert not report.ok and len(report.problems) == 2
    short = problem_of(report, cut_short)
    assert "truncated" in short["reason"] and "400 more" in short["reason"]
    assert "cut mid-row" in problem_of(report, cut_mid_row)["reason"]
    for p in report.problems:
        path = Path(p["quarantined"])
        assert path.is_file() and path.stat().st_size > 0
        assert path.parent.parent == profile.data_dir / "quarantine"
        assert "truncated" in Path(str(path) + ".reason.txt").read_text()
    after = pt.Store.open(profile.store_dir)
    assert after.verify() == []
    assert report.updated == sorted(symbols[2:]) and report.rows_added == 4 * 5
    assert str(after.symbol_info(cut_short).last.date()) == END
    assert str(after.symbol_info(cut_mid_row).last.date()) == END
    assert str(after.symbol_info(symbols[2]).last.date()) == "2026-11-20"
    assert "problem:" in report.summary() and "quarantine:" in report.summary()


def test_http_html_no_data_and_bad_rows(env):
    profile, store, server = env
    symbols = store.symbols(None)
    html, nodata, badrow = symbols[:3]
    serve_good(server, store, symbols[3:])
    server.routes[stooq_symbol(html)] = ("html", "<!DOCTYPE html><html><head><title>Stooq - maintenance</title>"
                                                 "</head><body>Try later</body></html>")
    server.routes[stooq_symbol(nodata)] = ("csv", "No data")
    lines = bars_csv(store, badrow).split("\r\n")
    f = lines[2].split(",")
    lines[2] = ",".join([f[0], f[1], f[3], f[2], *f[4:]])  # high and low swapped: high < low
    server.routes[stooq_symbol(badrow)] = ("csv", "\r\n".join(lines))

    report = refresh(profile, now=NOW)

    p = problem_of(report, html)
    assert "HTML" in p["reason"] and "maintenance" in p["reason"] and p["quarantined"].endswith(".html")
    assert Path(p["quarantined"]).read_text().startswith("<!DOCTYPE html>")
    p = problem_of(report, nodata)
    assert "No data" in p["reason"] and Path(p["quarantined"]).read_text() == "No data"
    p = problem_of(report, badrow)
    assert "1 row(s) failed validation" in p["reason"] and "high < low" in p["reason"]
    assert MISSING[1] in Path(p["quarantined"]).read_text()
    after = pt.Store.open(profile.store_dir)
    assert after.verify() == []
    got = after.read_frame([badrow])
    assert list(got[got["date"] > END]["date"].dt.strftime("%Y-%m-%d")) == [MISSING[0], *MISSING[2:]]
    assert badrow in report.updated and html not in report.updated and nodata not in report.updated


def test_http_error_status_and_timeout_are_reported(env):
    profile, store, server = env
    profile = profile.replace(http_timeout_s=0.3)
    symbols = store.symbols(None)
    serve_good(server, store, symbols[3:])
    server.routes[stooq_symbol(symbols[0])] = ("status", 500)
    server.routes[stooq_symbol(symbols[1])] = ("sleep", 2.0)
    # symbols[2] has no recorded response: the server answers 404

    report = refresh(profile, now=NOW)

    assert "HTTP 500" in problem_of(report, symbols[0])["reason"]
    slow = problem_of(report, symbols[1])
    assert "timed out after 0.3 s" in slow["reason"]
    assert Path(slow["quarantined"]).name == f"{symbols[1]}.reason.txt"  # nothing arrived: only the reason
    assert "HTTP 404" in problem_of(report, symbols[2])["reason"]
    assert report.updated == sorted(symbols[3:]) and report.rows_added == 3 * 5
    assert pt.Store.open(profile.store_dir).verify() == []


def test_http_gives_up_when_the_service_is_down(tmp_path, server):
    server.routes.clear()
    server.queries.clear()
    store = imported_store(tmp_path / "store", n_symbols=12, seed=1)
    symbols = store.symbols(None)
    for sym in symbols:  # every request hangs: as if the service were down
        server.routes[stooq_symbol(sym)] = ("sleep", 1.0)
    profile = load_profile("ci").replace(data_dir=str(tmp_path), data_source="http", http_timeout_s=0.3,
                                         http_base_url=f"http://127.0.0.1:{server.port}/q/d/l/")

    report = refresh(profile, now=NOW)

    assert sources.GIVE_UP_AFTER < len(symbols)
    assert len(report.problems) == len(symbols) and report.rows_added == 0
    skipped = [p for p in report.problems if p["reason"].startswith("not requested")]
    assert skipped and all(p["quarantined"] is None for p in skipped)
    assert len(server.queries) == len(symbols) - len(skipped) < len(symbols)
    assert "gave up after" in report.summary()
    assert pt.Store.open(tmp_path / "store").verify() == []


def test_http_never_downloads_real_bars_for_a_demo_store(tmp_path, server):
    server.routes.clear()
    server.queries.clear()
    store = pt.make_demo_store(tmp_path / "store", n_symbols=3, years=1, seed=1, end=END)
    serve_good(server, store, store.symbols(None))
    manifest = (tmp_path / "store" / "manifest.json").read_bytes()
    profile = load_profile("ci").replace(data_dir=str(tmp_path), data_source="http",
                                         http_base_url=f"http://127.0.0.1:{server.port}/q/d/l/")

    with pytest.raises(MixedDataError, match=r"built by `pitools demo-data`.*'http' \(5 symbol\(s\) to download\)"):
        refresh(profile, now=NOW)

    assert server.queries == []  # refused before the first request
    assert (tmp_path / "store" / "manifest.json").read_bytes() == manifest
    assert not (tmp_path / "quarantine").exists()


# -- drop folder ----------------------------------------------------------------------------
def test_drop_folder_imports_moves_and_quarantines(env):
    profile, store, _ = env
    profile = profile.replace(data_source="drop_folder")
    drop = profile.drop_path

    first = refresh(profile, now=NOW)  # no drop folder yet: created, nothing to do
    assert drop.is_dir() and first.ok and first.rows_added == 0 and "no new files" in first.summary()

    symbols = store.symbols()
    (drop / "sub").mkdir()
    (drop / f"{symbols[0]}.csv").write_text(bars_csv(store, symbols[0]))
    (drop / "sub" / f"{symbols[1]}.csv").write_text(bars_csv(store, symbols[1], seed=3))
    (drop / "broken.csv").write_text("this is not,a bar file\n1,2\n")
    (drop / "README.md").write_text("not bars")
    late = drop / f"{symbols[2]}.csv"

    def arrives_meanwhile(done, total):
        if done == 1:  # another tool drops a file while ingest runs
            late.write_text(bars_csv(store, symbols[2]))

    report = refresh(profile, now=NOW, progress=arrives_meanwhile)

    assert report.checked == 3 and report.rows_added == 10
    assert report.updated == sorted(symbols[:2])
    bad = [p for p in report.problems if p["file"] == "broken.csv"]
    assert len(bad) == 1 and "missing column" in bad[0]["reason"]
    assert Path(bad[0]["quarantined"]).read_text().startswith("this is not")
    moved = Path(report.moved_to)
    assert moved.parent == drop / "imported"
    assert sorted(str(p.relative_to(moved)) for p in moved.rglob("*") if p.is_file()) == \
        sorted(["broken.csv", f"{symbols[0]}.csv", f"sub/{symbols[1]}.csv"])
    assert late.is_file() and (drop / "README.md").is_file()  # not ingested: left where it was
    assert not (drop / f"{symbols[0]}.csv").exists()
    after = pt.Store.open(profile.store_dir)
    assert after.verify() == []
    assert str(after.symbol_info(symbols[0]).last.date()) == "2026-11-20"

    again = refresh(profile, now=NOW)  # only the late file is new
    assert again.checked == 1 and again.updated == [symbols[2]] and again.ok
    third = refresh(profile, now=NOW)
    assert third.checked == 0 and third.rows_added == 0 and "no new files" in third.summary()


# -- configuration --------------------------------------------------------------------------
def test_unknown_source_missing_store_and_none(env, tmp_path):
    profile, _, server = env
    with pytest.raises(ConfigError, match=r"'htpp'.*Did you mean 'http'\?.*drop_folder, http, none"):
        sources.get("htpp")
    with pytest.raises(ConfigError, match="'ftp'"):
        refresh(dataclasses.replace(profile, data_source="ftp"), now=NOW)
    with pytest.raises(NoStoreError, match="no bar store"):
        refresh(profile, store=tmp_path / "nowhere", now=NOW)
    with pytest.raises(ConfigError, match="overlaps the store"):
        refresh(profile.replace(data_source="drop_folder", drop_dir="."), now=NOW)
    report = refresh(profile.replace(data_source="none"), now=NOW)
    assert report.ok and report.rows_added == 0 and "nothing was fetched" in report.summary()
    assert server.queries == []
    assert stooq_symbol("BRK.B") == "brk-b.us" and stooq_symbol("^GSPC") == "^spx"
    assert stooq_symbol("^FTSE") == "^ftse"

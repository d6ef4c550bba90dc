"""The nightly run, end to end: the real notebooks through papermill on a tiny universe,
a real trades.db, real subprocesses for the lock and for kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, run_cli

NIGHT = "2026-11-20"
STANDARD = '''profile = "demo"
overrides = []
night = None
store = None
run_dir = None
run_id = None'''

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(numba_cache_dir) -> dict:
    return {"NUMBA_CACHE_DIR": numba_cache_dir, "PITOOLS_HOME": str(ROOT)}


def make_data_dir(path: Path, n_symbols: int = 12) -> Path:
    import pitools as pt

    pt.make_demo_store(path / "store", n_symbols=n_symbols, years=2, seed=5, end=NIGHT)
    return path


def profile_args(data_dir: Path, *extra: str) -> list[str]:
    return ["--profile", "ci", "--set", f"data_dir={data_dir}", "--set", "population_size=4", "--set", "generations=2",
            *extra]


def notebook(path: Path, *cells: str) -> Path:
    """A small notebook with the standard parameters cell and `cells` of code."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "pitools", "display_name": "Python 3 (pitools)", "language": "python"}}
    nb.cells = [nbformat.v4.new_code_cell(STANDARD, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells]
    nbformat.write(nb, str(path))
    return path


def notebook_list(path: Path, entries: list[dict]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"notebooks": entries}))
    return path


def run_record(outputs: Path, run: str = NIGHT) -> dict:
    return json.loads((outputs / run / "run.json").read_text())


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs += [v for k, v in attrs if k == "href"]


def hrefs(page: Path) -> list[str]:
    parser = Links()
    parser.feed(page.read_text())
    return parser.hrefs


# ---------------------------------------------------------------- a whole real night

@pytest.fixture()
def real_night(tiny_night, tmp_path):
    """The shipped notebook list, run by `pitools nightly` (conftest's tiny_night, shared with the
    browser tests): a copy of its data folder and outputs that a test may run more nights in."""
    import shutil

    src, src_outputs, night = tiny_night
    assert night == NIGHT
    data = tmp_path / "data"
    shutil.copytree(src, data, ignore=shutil.ignore_patterns("outputs", "*.lock"))
    shutil.copytree(src_outputs, data / "outputs", ignore=shutil.ignore_patterns("*.lock"))
    return data, data / "outputs", (data / "nightly.stdout").read_text()


def test_a_real_night_writes_every_report_the_record_and_the_index(tiny_night):
    data, outputs, _ = tiny_night
    stdout = (data / "nightly.stdout").read_text()
    run = outputs / NIGHT
    names = ["01_data", "02_regime", "03_research", "04_signals", "05_report"]
    rec = run_record(outputs)
    assert rec["status"] == "ok" and [n["name"] for n in rec["notebooks"]] == names
    for nb in rec["notebooks"]:
        assert nb["status"] == "ok", nb
        assert (run / f"{nb['name']}.ipynb").is_file() and (run / f"{nb['name']}.html").is_file()
        assert nb["peak_pss_bytes"] > 50 * 2**20  # a real kernel was measured (pandas alone is more)
        assert nb["duration_s"] > 0 and set(nb["timings"]) == {"startup_s", "cells_s", "html_s"}
        assert nb["parameters"]["night"] == NIGHT and nb["parameters"]["run_id"] == rec["run_id"]
    assert rec["versions"]["papermill"] and rec["versions"]["numba"]
    # the breakdown the command prints names every notebook with its split
    for name in names:
        assert name in stdout
    assert "start-up" in stdout and "html" in stdout and "index:" in stdout
    # code hidden, plotly drawn from the local copy, nothing from a CDN
    research = (run / "03_research.html").read_text()
    assert "Plotly.newPlot" in research and '../assets/plotly-' in research
    assert "cdn.plot.ly" not in research and "cdnjs" not in research and "require.min.js" not in research
    assert "evolve(" not in research  # the code of the cells is not in the report
    assert "evolve(" in (run / "03_research.ipynb").read_text()
    src = research.split('../assets/', 1)[1].split('"', 1)[0]
    assert (outputs / "assets" / src).stat().st_size > 1_000_000
    # trades.db: the run row, tomorrow's signals, tonight's evaluations
    with sqlite3.connect(data / "trades.db") as db:
        status, night = db.execute("SELECT status, night FROM runs WHERE id = ?", (rec["run_id"],)).fetchone()
        assert (status, night) == ("ok", NIGHT)
        assert db.execute("SELECT COUNT(DISTINCT strategy) FROM signals WHERE run_id = ?", (rec["run_id"],)).fetchone()[0] == 8
        assert db.execute("SELECT COUNT(DISTINCT strategy) FROM evaluations WHERE night = ?", (NIGHT,)).fetchone()[0] == 8
    # the index links every report, and every link resolves
    index = outputs / "index.html"
    links = [h for h in hrefs(index) if not h.startswith("#")]
    for name in names:
        assert f"{NIGHT}/{name}.html" in links
    for h in links:
        assert (outputs / h).exists(), h
    assert 'http-equiv="refresh"' not in index.read_text()  # nothing in progress


# ---------------------------------------------------------------- failures

def test_a_failing_notebook_gives_exit_1_its_error_in_html_and_skips_dependants(tmp_path, env):
    data = make_data_dir(tmp_path, n_symbols=3)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    lst = notebook_list(tmp_path / "list.yaml", [
        {"name": "01_fine", "path": str(notebook(nbs / "a.ipynb", "print('first is fine')"))},
        {"name": "02_broken", "path": str(notebook(nbs / "b.ipynb", "print('about to fail')",
                                                   "raise ValueError('the broken notebook fails here')")),
         "needs": ["01_fine"]},
        {"name": "03_dependant", "path": str(notebook(nbs / "c.ipynb", "print('never runs')")), "needs": ["02_broken"]},
        {"name": "04_independent", "path": str(notebook(nbs / "d.ipynb", "print('runs anyway')")),
         "needs": ["01_fine"]},
    ])
    outputs = tmp_path / "out"
    proc = run_cli("nightly", *profile_args(data), "--date", NIGHT, "--outputs", str(outputs),
                   "--notebooks", str(lst), env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rec = run_record(outputs)
    status = {n["name"]: n["status"] for n in rec["notebooks"]}
    assert status == {"01_fine": "ok", "02_broken": "failed", "03_dependant": "skipped", "04_independent": "ok"}
    assert rec["status"] == "failed"
    broken = next(n for n in rec["notebooks"] if n["name"] == "02_broken")
    assert "ValueError" in broken["error"] and "fails here" in broken["error"]
    page = (outputs / NIGHT / "02_broken.html").read_text()
    assert "ValueError" in page and "the broken notebook fails here" in page and "about to fail" in page
    assert not (outputs / NIGHT / "03_dependant.ipynb").exists()
    assert "skipped" in next(n for n in rec["notebooks"] if n["name"] == "03_dependant")["error"]
    assert "02_broken" in proc.stdout and "failed" in proc.stdout
    with sqlite3.connect(data / "trades.db") as db:
        assert db.execute("SELECT status FROM runs WHERE id = ?", (rec["run_id"],)).fetchone()[0] == "failed"
    index = (outputs / "index.html").read_text()
    assert "failed" in index and f"{NIGHT}/02_broken.html" in index


def test_a_notebook_over_its_wall_clock_limit_is_stopped_and_reported(tmp_path, env):
    data = make_data_dir(tmp_path, n_symbols=3)
    lst = notebook_list(tmp_path / "list.yaml", [
        {"name": "01_slow", "path": str(notebook(tmp_path / "slow.ipynb", "print('started')",
                                                 "import time\ntime.sleep(120)")), "timeout_s": 6},
        {"name": "02_after", "path": str(notebook(tmp_path / "after.ipynb", "print('x')")), "needs": ["01_slow"]},
    ])
    outputs = tmp_path / "out"
    t0 = time.monotonic()
    proc = run_cli("nightly", *profile_args(data), "--date", NIGHT, "--outputs", str(outputs),
                   "--notebooks", str(lst), env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 90
    rec = run_record(outputs)
    assert [n["status"] for n in rec["notebooks"]] == ["timeout", "skipped"]
    page = (outputs / NIGHT / "01_slow.html").read_text()
    assert "Stopped" in page and "wall-clock limit" in page and "started" in page


def test_two_concurrent_runs_one_refuses_with_a_clear_message(tmp_path, env):
    data = make_data_dir(tmp_path, n_symbols=3)
    lst = notebook_list(tmp_path / "list.yaml", [
        {"name": "01_slow", "path": str(notebook(tmp_path / "slow.ipynb", "import time\ntime.sleep(6)"))}])
    outputs = tmp_path / "out"
    args = [sys.executable, "-m", "pitools", "nightly", *profile_args(data), "--date", NIGHT, "--outputs", str(outputs),
            "--notebooks", str(lst)]
    first = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (outputs / NIGHT / "run.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before the second started"
        index = outputs / "index.html"
        while time.monotonic() < deadline and not (index.exists() and "01_slow" in index.read_text()):
            time.sleep(0.1)
        assert 'http-equiv="refresh" content="10"' in index.read_text()  # in progress: it reloads itself
        second = run_cli("nightly", *profile_args(data), "--date", NIGHT, "--outputs", str(outputs),
                         "--notebooks", str(lst), env=env)
        assert second.returncode == 1
        assert "another nightly run holds" in second.stderr and "nightly.lock" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, out + err
    finally:
        if first.poll() is None:
            first.kill()
    assert sorted(p.name for p in outputs.iterdir() if p.is_dir() and p.name != "assets") == [NIGHT]


def test_kill_9_mid_run_then_the_next_run_succeeds_and_nothing_earlier_is_damaged(real_night, env):
    data, outputs, first = real_night
    assert "nightly 2026-11-20 (profile ci): ok" in first
    before = tree_digest(outputs / NIGHT)
    args = [sys.executable, "-m", "pitools", "nightly", *profile_args(data), "--date", NIGHT, "--outputs",
            str(outputs)]
    victim = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    log = data / "evolve" / "sma_cross" / "evaluations.jsonl"
    lines = len(log.read_text().splitlines())
    try:
        deadline = time.monotonic() + 240
        # wait until the evolution of this run has written part of its work, then pull the plug
        while time.monotonic() < deadline and victim.poll() is None:
            if len(log.read_text().splitlines()) > lines:
                break
            time.sleep(0.05)
        assert victim.poll() is None, "the run finished before it could be killed"
        os.killpg(victim.pid, signal.SIGKILL)  # the whole run, as systemd or a power cut would
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
    killed = sorted(p.name for p in outputs.iterdir() if p.name.startswith(NIGHT + "."))
    assert killed == [f"{NIGHT}.2"]
    assert run_record(outputs, f"{NIGHT}.2")["status"] == "running"  # it never got to say otherwise

    again = run_cli("nightly", *profile_args(data), "--date", NIGHT, "--outputs", str(outputs), env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert run_record(outputs, f"{NIGHT}.3")["status"] == "ok"
    assert run_record(outputs, f"{NIGHT}.2")["status"] == "interrupted"
    assert tree_digest(outputs / NIGHT) == before  # the earlier night is untouched
    with sqlite3.connect(data / "trades.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for state in (data / "evolve").iterdir():
        with open(state / "optimizer.pkl", "rb") as fh:
            pickle.load(fh)
        for line in (state / "evaluations.jsonl").read_text().splitlines()[:-1]:
            json.loads(line)
    index = (outputs / "index.html").read_text()
    assert "interrupted" in index and f"{NIGHT}.3/05_report.html" in index


# ---------------------------------------------------------------- bad input: exit 2, nothing written

@pytest.mark.parametrize("case", ["unknown_profile", "malformed_yaml", "unknown_parameter", "missing_store",
                                  "bad_date", "unknown_needs", "outputs_is_a_file", "path_not_a_string"])
def test_bad_input_exits_2_names_the_thing_and_writes_nothing(tmp_path, env, case):
    data = tmp_path / "data"
    if case != "missing_store":
        make_data_dir(data, n_symbols=2)
    outputs = tmp_path / "out"
    args = ["nightly", *profile_args(data), "--date", NIGHT, "--outputs", str(outputs)]
    fine = notebook(tmp_path / "fine.ipynb", "print(1)")
    if case == "unknown_profile":
        args[args.index("ci")] = "pi_saf"
        expect = ["'pi_saf'", "pi_safe"]
    elif case == "malformed_yaml":
        bad = tmp_path / "list.yaml"
        bad.write_text("notebooks:\n  - name: 01_x\n    needs: [\n")
        args += ["--notebooks", str(bad)]
        expect = ["list.yaml", "not valid YAML"]
    elif case == "unknown_parameter":
        lst = notebook_list(tmp_path / "list.yaml", [{"name": "01_fine", "path": str(fine),
                                                      "parameters": {"lookback_dayz": 5}}])
        args += ["--notebooks", str(lst)]
        expect = ["01_fine", "'lookback_dayz'", "unknown parameter"]
    elif case == "missing_store":
        expect = [str(data / "store")]
    elif case == "bad_date":
        args[args.index(NIGHT)] = "2026-13-01"
        expect = ["--date", "'2026-13-01'", "YYYY-MM-DD"]
    elif case == "outputs_is_a_file":
        outputs.write_text("not a folder")
        expect = ["--outputs", "is a file"]
    elif case == "path_not_a_string":
        lst = notebook_list(tmp_path / "list.yaml", [{"name": "01_fine", "path": 5}])
        args += ["--notebooks", str(lst)]
        expect = ["01_fine", "`path` = 5"]
    else:
        lst = notebook_list(tmp_path / "list.yaml", [{"name": "01_fine", "path": str(fine), "needs": ["00_dta"]}])
        args += ["--notebooks", str(lst)]
        expect = ["01_fine", "'00_dta'", "needs"]
    proc = run_cli(*args, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    for text in expect:
        assert text in proc.stderr, (text, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not outputs.exists() or outputs.is_file() or not any(outputs.iterdir())
    if case == "outputs_is_a_file":
        assert outputs.read_text() == "not a folder"


def test_the_shipped_notebooks_declare_every_standard_parameter():
    import papermill as pm

    from pitools.box.nightly import STANDARD_PARAMETERS, load_nightly

    specs = load_nightly()
    assert [s.name for s in specs] == ["01_data", "02_regime", "03_research", "04_signals", "05_report"]
    for spec in specs:
        declared = pm.inspect_notebook(str(spec.path))
        assert set(STANDARD_PARAMETERS) <= set(declared), spec.name
        assert nbformat.read(str(spec.path), as_version=4).metadata["kernelspec"]["name"] == "pitools"


# ---------------------------------------------------------------- retention and the failure hook

def fake_run(outputs: Path, name: str, night: str, status: str, started: str) -> Path:
    run = outputs / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"night": night, "status": status, "started_at": started,
                                              "notebooks": []}))
    (run / "01_data.html").write_text("<html></html>")
    return run


def test_retention_keeps_the_last_nights_and_always_the_newest_successful_one(tmp_path):
    from pitools.box.nightly.retention import _retention

    out = tmp_path / "out"
    fake_run(out, "2026-11-02", "2026-11-02", "ok", "2026-11-02T22:00:00")
    fake_run(out, "2026-11-03", "2026-11-03", "failed", "2026-11-03T22:00:00")
    fake_run(out, "2026-11-04", "2026-11-04", "failed", "2026-11-04T22:00:00")
    fake_run(out, "2026-11-04.2", "2026-11-04", "failed", "2026-11-04T23:00:00")
    current = fake_run(out, "2026-11-05", "2026-11-05", "failed", "2026-11-05T22:00:00")
    (out / "assets").mkdir()
    (out / "notes").mkdir()  # not a run: never touched
    removed = _retention(out, keep_nights=2, current=current)
    assert sorted(removed) == ["2026-11-03"]
    left = sorted(p.name for p in out.iterdir())
    assert left == ["2026-11-02", "2026-11-04", "2026-11-04.2", "2026-11-05", "assets", "notes"]


def test_the_failure_hook_marks_dead_runs_and_the_index_shows_a_banner(tmp_path, env):
    out = tmp_path / "out"
    fake_run(out, "2026-11-19", "2026-11-19", "ok", "2026-11-19T22:00:00")
    rec = json.loads((fake_run(out, "2026-11-20", "2026-11-20", "running", "2026-11-20T22:00:00") / "run.json").read_text())
    rec["pid"] = 2**22 + 12345  # no such process
    (out / "2026-11-20" / "run.json").write_text(json.dumps(rec))
    proc = run_cli("nightly-failed", "--profile", "ci", "--outputs", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "failures").glob("*.json"))) == 1
    assert json.loads((out / "2026-11-20" / "run.json").read_text())["status"] == "interrupted"
    page = (out / "index.html").read_text()
    assert "The nightly service failed" in page and "pitools-nightly.service" in page

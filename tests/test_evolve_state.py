"""The evolve state under damage: one run at a time, a night reads only its past, a log that
keeps working past bad and torn lines, a full disk and a read-only data folder."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import pitools.search.evolve_state as evolve_state
import pitools.search.evolution_log as evolution_log
from conftest import ROOT, run_cli
from pitools.config import load_profile
from pitools.data import atomic
from pitools.errors import PitoolsError
from pitools.search.evolution_log import append_evaluations, read_evaluation_log, read_evaluations, torn_path
from pitools.search.evolve import DataFolderNotWritable, EvolveError, evolve, load_search_config
from pitools.locks import LockHeld, exclusive_lock, read_holder
from pitools.market.signals import best_params

STRATEGY = "sma_cross"


@pytest.fixture(scope="module")
def config():
    return load_search_config(ROOT / "params" / "strategies.yaml")


def _profile(data_dir: Path):
    return load_profile("ci", overrides=[f"data_dir={data_dir}", "population_size=4", "generations=1",
                                         "n_workers=1"])


def _night(data_dir: Path, store: Path, config, night: str):
    return evolve(_profile(data_dir), strategies=[STRATEGY], store=store, night=night, config=config,
                  backend="serial", progress=False)


def _log_path(data_dir: Path) -> Path:
    return data_dir / "evolve" / STRATEGY / "evaluations.jsonl"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _record(night: str, fitness, **params) -> dict:
    return {"night": night, "params": params or {"fast": 5, "slow": 40}, "fitness": fitness}


# ---------------------------------------------------------------- the lock helper

def _hold_lock_in_a_child(path: Path) -> subprocess.Popen:
    """A second process that holds `path` through the helper until its stdin closes."""
    code = ("import sys; from pitools.locks import exclusive_lock\n"
            f"with exclusive_lock({str(path)!r}, {{'profile': 'ci'}}, 'a test'):\n"
            "    print('held', flush=True); sys.stdin.read()\n")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline() == "held\n"
    return child


def test_a_held_lock_is_refused_naming_the_file_and_the_holder(tmp_path):
    path = tmp_path / "x" / ".lock"
    child = _hold_lock_in_a_child(path)
    try:
        with pytest.raises(LockHeld) as err:
            with exclusive_lock(path, {}, "another evolve run", hint="wait for it"):
                pass
        assert err.value.exit_code == 1
        message = str(err.value)
        assert f"another evolve run holds the lock {str(path)!r}" in message
        assert f"pid {child.pid}, started 20" in message and "profile ci" in message and message.endswith("wait for it")
        assert read_holder(path)["pid"] == child.pid
    finally:
        child.stdin.close()
        child.wait(30)
    with exclusive_lock(path, {"night": "2026-11-20"}, "x"):  # released when its holder ends
        assert read_holder(path)["pid"] == os.getpid() and read_holder(path)["night"] == "2026-11-20"


def test_a_holder_killed_by_sigkill_releases_the_lock(tmp_path):
    path = tmp_path / ".lock"
    child = _hold_lock_in_a_child(path)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    with exclusive_lock(path, {}, "x"):
        pass


def test_read_holder_reads_the_old_text_format_and_an_empty_file(tmp_path):
    path = tmp_path / "nightly.lock"
    path.write_text("pid 12, started 2026-11-20T22:00:00")
    assert read_holder(path) == {"holder": "pid 12, started 2026-11-20T22:00:00"}
    path.write_text("")
    assert read_holder(path) == {} and read_holder(tmp_path / "none") == {}


def test_a_second_pitools_evolve_exits_1_and_changes_nothing(tmp_path, demo_store):
    """Two runs on one data folder: the second is refused before it reads or writes anything."""
    state = tmp_path / "evolve" / STRATEGY
    state.mkdir(parents=True)
    (state / "optimizer.pkl").write_bytes(b"the first run's optimizer")
    _log_path(tmp_path).write_text(json.dumps(_record("2026-11-19", 1.0)) + "\n")
    with exclusive_lock(tmp_path / "evolve.lock", {"profile": "ci"}, "x"):  # this process is the first run
        before = _snapshot(tmp_path / "evolve")
        out = run_cli("evolve", "--profile", "ci", "--set", f"data_dir={tmp_path}", "--set", "population_size=4",
                      "--set", "generations=1", "--strategy", STRATEGY, "--store", str(demo_store))
        after = _snapshot(tmp_path / "evolve")
    assert out.returncode == 1, out.stderr
    error = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "Traceback" not in out.stderr
    assert f"another evolve run holds the lock {str(tmp_path / 'evolve.lock')!r}" in error[0]
    assert f"pid {os.getpid()}, started 20" in error[0] and "--set data_dir=DIR" in error[0]
    assert after == before


def test_evolve_runs_while_the_nightly_holds_its_own_lock(tmp_path, demo_store, config):
    """The nightly's 03_research calls evolve() while the nightly holds <data_dir>/nightly.lock:
    a different file, so no self-deadlock."""
    with exclusive_lock(tmp_path / "nightly.lock", {"profile": "ci"}, "another nightly run"):
        rep = _night(tmp_path, demo_store, config, "2026-11-20")
    assert rep.evaluations == 4


# ---------------------------------------------------------------- one reader of the log

def test_lines_that_are_not_records_are_skipped_with_one_warning(tmp_path, caplog):
    path = _log_path(tmp_path)
    path.parent.mkdir(parents=True)
    good = [_record("2026-11-19", 2.0, fast=5, slow=40), _record("2026-11-20", 0.5, fast=8, slow=30),
            _record("2026-11-20", None, fast=9, slow=31)]
    lines = [json.dumps(good[0]), "[1, 2]", '"a string"', json.dumps(good[1]),
             json.dumps({"night": "2026-11-20", "params": [5, 40], "fitness": 1.0}),
             json.dumps({"night": "2026-11-20", "params": {"fast": 5}, "fitness": True}),
             json.dumps({"night": "20 Nov", "params": {"fast": 5}, "fitness": 1.0}),
             json.dumps(good[2]), '{"night": "2026-11-20", "params": {"fa']  # the last one torn
    path.write_text("\n".join(lines))
    caplog.set_level("WARNING", logger="pitools")
    assert read_evaluations(path) == good
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and str(path) in warnings[0]
    assert "lines 2, 3 are not a JSON object" in warnings[0] and "line 9 is not JSON" in warnings[0]
    assert "line 5 is without `params`" in warnings[0] and "line 6 is without `fitness`" in warnings[0]
    assert "line 7 is without `night`" in warnings[0]
    # the other readers read through it, and do not break on the same lines
    assert best_params(tmp_path, STRATEGY) == ({"fast": 8, "slow": 30}, "evolved, night 2026-11-20, fitness 0.500")
    assert list(read_evaluation_log(tmp_path, night="2026-11-20")["fitness"].fillna(-1)) == [0.5, -1]


def test_an_unreadable_log_is_one_error_naming_it(tmp_path):
    path = _log_path(tmp_path)
    path.mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(PitoolsError, match=f"cannot read the evaluation log {str(path)!r}") as err:
        read_evaluations(path)
    assert err.value.exit_code == 1


def test_a_night_reads_only_its_past(tmp_path):
    path = _log_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        _record("2026-11-19", 1.0, fast=5, slow=40), _record("2026-11-20", 0.8, fast=6, slow=41),
        _record("2100-01-01", 9.0, fast=7, slow=42)]))
    assert [r["night"] for r in read_evaluations(path, night="2026-11-20")] == ["2026-11-19", "2026-11-20"]
    assert best_params(tmp_path, STRATEGY, night="2026-11-20")[1] == "evolved, night 2026-11-20, fitness 0.800"
    assert best_params(tmp_path, STRATEGY, night="2026-11-19")[0] == {"fast": 5, "slow": 40}
    assert read_evaluation_log(tmp_path, night="2026-11-20")["night"].tolist() == ["2026-11-20"]
    with pytest.raises(PitoolsError, match="`night` = '20/11/2026' must be a date 'YYYY-MM-DD'"):
        read_evaluations(path, night="20/11/2026")


def test_a_night_in_the_future_does_not_steer_the_nights_before_it(tmp_path, demo_store, config):
    _night(tmp_path, demo_store, config, "2026-11-19")
    first = read_evaluations(_log_path(tmp_path))
    _night(tmp_path, demo_store, config, "2026-11-30")  # a later night run first (a typo'd --date)
    rep = _night(tmp_path, demo_store, config, "2026-11-20")
    # its checkpoint is the later night's: rebuilt from the log up to 2026-11-20, i.e. from the first night
    assert rep.leaderboard.loc[0, "optimizer_state"] == "rebuilt from log"
    assert rep.leaderboard.loc[0, "trials"] == len(first) + 4
    tonight = [r for r in read_evaluations(_log_path(tmp_path)) if r["night"] == "2026-11-20"]
    rescored = [r["params"] for r in tonight if r["incumbent"]]
    best_first = sorted((r for r in first if r["fitness"] is not None), key=lambda r: -r["fitness"])
    assert rescored == [r["params"] for r in best_first[:len(rescored)]] and rescored
    assert "night 2026-11-20" in best_params(tmp_path, STRATEGY, night="2026-11-20")[1]


# ---------------------------------------------------------------- torn lines

def test_a_torn_last_line_is_moved_aside_before_the_next_append(tmp_path, demo_store, config, caplog):
    _night(tmp_path, demo_store, config, "2026-11-19")
    path = _log_path(tmp_path)
    fragment = '{"night": "2026-11-19", "generation": 1, "params": {"fast": 1'
    with open(path, "a") as fh:
        fh.write(fragment)  # a crash mid-append
    caplog.set_level("WARNING", logger="pitools")
    _night(tmp_path, demo_store, config, "2026-11-20")
    assert torn_path(path).read_text() == fragment + "\n"  # kept, not lost
    text = path.read_text()
    assert text.endswith("\n") and fragment not in text
    assert [r["night"] for r in map(json.loads, text.splitlines())] == ["2026-11-19"] * 4 + ["2026-11-20"] * 4
    assert sum("moved its" in r.getMessage() for r in caplog.records) == 1
    caplog.clear()
    _night(tmp_path, demo_store, config, "2026-11-23")  # the warning does not come back
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text


def test_a_whole_record_without_its_newline_stays_in_the_log(tmp_path):
    path = tmp_path / "evaluations.jsonl"
    path.write_text(json.dumps(_record("2026-11-19", 1.0)))
    append_evaluations(path, [_record("2026-11-20", 2.0)])
    assert [r["night"] for r in read_evaluations(path)] == ["2026-11-19", "2026-11-20"]
    assert not torn_path(path).exists()


# ---------------------------------------------------------------- a full disk

def _no_space(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_disk_full_while_appending_the_log_keeps_the_last_night(tmp_path, demo_store, config, monkeypatch):
    _night(tmp_path, demo_store, config, "2026-11-19")
    before = _snapshot(tmp_path / "evolve")

    def half_then_full(fd, data):
        os.write(fd, data[:len(data) // 2])
        raise _no_space(_log_path(tmp_path))

    monkeypatch.setattr(evolution_log, "_write_all", half_then_full)
    with pytest.raises(EvolveError) as err:
        _night(tmp_path, demo_store, config, "2026-11-20")
    assert err.value.exit_code == 1
    assert str(err.value).startswith(f"no space left on the device to write {str(_log_path(tmp_path))!r}")
    assert _snapshot(tmp_path / "evolve") == before  # the half record was rolled back
    monkeypatch.undo()
    assert _night(tmp_path, demo_store, config, "2026-11-20").leaderboard.loc[0, "optimizer_state"] == "checkpoint"


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, demo_store, config, monkeypatch):
    _night(tmp_path, demo_store, config, "2026-11-19")
    state = tmp_path / "evolve" / STRATEGY
    before = {name: (state / name).read_bytes() for name in ("optimizer.pkl", "state.json")}

    def full(path, data, perms=None):  # the real atomic write, running out of space half way
        with atomic.atomic_write(path, "wb", perms=perms) as fh:
            fh.write(data[:len(data) // 2])
            fh.flush()
            raise _no_space(path)

    monkeypatch.setattr(evolve_state, "write_bytes_atomic", full)
    with pytest.raises(EvolveError, match=f"^no space left on the device to write {str(state / 'optimizer.pkl')!r}"):
        _night(tmp_path, demo_store, config, "2026-11-20")
    assert {name: (state / name).read_bytes() for name in before} == before
    pickle.loads(before["optimizer.pkl"])
    assert not [p for p in state.iterdir() if p.name.startswith(atomic.TMP_PREFIX)]
    monkeypatch.undo()
    # the log has the failed night's generation; the checkpoint does not know it: rebuilt, nothing lost
    rep = _night(tmp_path, demo_store, config, "2026-11-23")
    assert rep.leaderboard.loc[0, "optimizer_state"] == "rebuilt from log" and rep.leaderboard.loc[0, "trials"] == 12


# ---------------------------------------------------------------- a read-only data folder

def _read_only_argv(folder: Path, argv: list[str]) -> list[str]:
    """`argv` run with `folder` read-only: as root (who writes through any mode bits) under a
    read-only bind mount in a private mount namespace, which vanishes with the process;
    otherwise every file 0444 and folder 0555."""
    if os.geteuid() != 0:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        return argv
    if not shutil.which("unshare"):
        pytest.skip("running as root without `unshare`: cannot make a folder read-only for root")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "--bind", str(folder),
                            str(folder)], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root without the right to mount (a read-only bind mount): {probe.stderr.strip()}")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(folder), *argv]


def test_a_read_only_data_folder_exits_2_naming_it(tmp_path, demo_store, config):
    _night(tmp_path, demo_store, config, "2026-11-19")
    folder = tmp_path / "evolve"
    before = _snapshot(folder)
    argv = [sys.executable, "-m", "pitools", "evolve", "--profile", "ci", "--set", f"data_dir={tmp_path}",
            "--set", "population_size=4", "--set", "generations=1", "--strategy", STRATEGY,
            "--store", str(demo_store)]
    try:
        out = subprocess.run(_read_only_argv(folder, argv), cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert out.returncode == 2, out.stderr
    error = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "Traceback" not in out.stderr
    assert f"data folder {str(folder)!r} is not writable" in error[0] and "--set data_dir=" in error[0]
    assert _snapshot(folder) == before


def test_a_data_folder_that_cannot_be_made_is_the_same_error(tmp_path, config, monkeypatch):
    def refused(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "mkdir", refused)
    with pytest.raises(DataFolderNotWritable, match=f"data folder {str(tmp_path / 'd')!r} is not writable") as err:
        evolve(_profile(tmp_path / "d" / "data"), strategies=[STRATEGY], config=config, panel=object())
    assert err.value.exit_code == 2

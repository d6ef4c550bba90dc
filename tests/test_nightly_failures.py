"""The nightly run when the machine lets it down: a disk that fills up mid-night, trades.db
held by another process, a read-only data folder. Each ends in one line that names the file
and says what is wrong, the right exit code, and records that tell the truth; nothing earlier
is lost (trades.db passes `PRAGMA integrity_check`, the earlier night is byte-identical).

Real files and real processes: a small tmpfs that a notebook really fills, a second Python
process holding trades.db, a read-only mount (chmod when not root: it does not stop root).
Where a real full disk cannot be made, ENOSPC is injected at the write call in-process."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, run_cli
from test_nightly import NIGHT, make_data_dir, notebook, notebook_list, profile_args, run_record, tree_digest

pytestmark = pytest.mark.slow

LATER = f"{NIGHT}.2"  # where a second run of the night lands


@pytest.fixture(scope="module")
def env(numba_cache_dir) -> dict:
    return {"NUMBA_CACHE_DIR": numba_cache_dir, "PITOOLS_HOME": str(ROOT)}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, env):
    """One real night (a one-cell notebook) whose outputs and trades.db the tests copy: what a
    failing later night must not damage. Returns (data_dir, outputs)."""
    tmp = tmp_path_factory.mktemp("earlier")
    data = make_data_dir(tmp / "data", n_symbols=2)
    lst = notebook_list(tmp / "list.yaml", [{"name": "01_fine", "path": str(notebook(tmp / "fine.ipynb", "print(1)"))}])
    proc = run_cli("nightly", *profile_args(data), "--date", NIGHT, "--outputs", str(tmp / "out"),
                   "--notebooks", str(lst), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return data, tmp / "out"


def copy_earlier(earlier, data: Path, outputs: Path) -> None:
    shutil.copytree(earlier[0], data, dirs_exist_ok=True)
    shutil.copytree(earlier[1], outputs, dirs_exist_ok=True)


def runs_rows(db: Path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT id, night, status, details FROM runs ORDER BY id").fetchall()


def integrity(db: Path, immutable: bool = False) -> str:
    uri = f"file:{db}?mode=ro" + ("&immutable=1" if immutable else "")
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def outputs_digest(outputs: Path) -> dict[str, str]:
    """Every file under outputs/ but the run lock, whose holder line each run rewrites."""
    return {k: v for k, v in tree_digest(outputs).items() if k != ".nightly.lock"}


def assert_index_true(outputs: Path, run: str, status: str) -> None:
    """The index lists `run` with `status`, and nothing says a run is still in progress."""
    page = (outputs / "index.html").read_text()
    row = page.split(f"<small>{run} ·", 1)[1].split("</tr>", 1)[0]
    assert f'<span class="status {status}">{status}</span>' in row, row
    assert "status running" not in page and 'http-equiv="refresh"' not in page


@contextlib.contextmanager
def small_filesystem(path: Path, size: str):
    """A real tmpfs of `size` mounted at `path` (skips where mounting is not permitted)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def main_in_process(monkeypatch, capsys, env: dict, *args: str) -> tuple[int, str, str]:
    """`pitools ARGS` in this process, so a test can inject a failure at a write call."""
    from pitools.cli import main

    for k, v in env.items():
        monkeypatch.setenv(k, v)  # run_nightly only sets them when unset: nothing leaks
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- a full disk

FILL = '''
import errno, os
with open(os.path.join(run_dir, "filler.bin"), "wb", buffering=0) as fh:
    try:
        while True:
            fh.write(b"\\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
print("the disk is full now")
'''


def test_a_disk_that_fills_up_mid_notebook_ends_the_night_failed_and_the_records_true(tmp_path, earlier, env):
    """A real 16 MB tmpfs as --outputs; the notebook fills it, then prints more than fits, so
    papermill's rewrite of the output notebook is cut short (truncated) and every write after
    it meets ENOSPC — until the run gives back the space it had set aside for its record."""
    data, outputs = tmp_path / "data", tmp_path / "out"
    with small_filesystem(outputs, "16m"):
        copy_earlier(earlier, data, outputs)
        before, rows = tree_digest(outputs / NIGHT), runs_rows(data / "trades.db")
        lst = notebook_list(tmp_path / "list.yaml", [
            {"name": "01_fill", "path": str(notebook(tmp_path / "fill.ipynb", FILL, "print('x' * 200_000)"))},
            {"name": "02_after", "path": str(notebook(tmp_path / "after.ipynb", "print(2)")), "needs": ["01_fill"]}])
        proc = run_cli("nightly", *profile_args(data), "--date", NIGHT, "--outputs", str(outputs),
                       "--notebooks", str(lst), env=env)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        out_nb = outputs / LATER / "01_fill.ipynb"
        rec = run_record(outputs, LATER)
        assert rec["status"] == "failed"
        assert [n["status"] for n in rec["notebooks"]] == ["failed", "skipped"]
        error = rec["notebooks"][0]["error"]
        assert f"output notebook {str(out_nb)!r} is truncated or unreadable" in error, error
        assert "No space left on device" in error
        assert "01_fill" in proc.stdout and "is truncated or unreadable" in proc.stdout
        with pytest.raises(Exception):
            nbformat.read(str(out_nb), as_version=4)  # really cut short, and kept as the run left it
        assert not (outputs / LATER / ".space-reserve").exists()
        assert_index_true(outputs, LATER, "failed")
        assert tree_digest(outputs / NIGHT) == before
    assert runs_rows(data / "trades.db")[:-1] == rows
    assert runs_rows(data / "trades.db")[-1][2] == "failed"
    assert integrity(data / "trades.db") == "ok"


def test_a_truncated_output_notebook_and_a_failed_record_write_are_named_not_raised(tmp_path, earlier, env,
                                                                                   monkeypatch, capsys):
    """ENOSPC injected at the write calls: papermill's write of the output notebook leaves half
    of it and fails; the first write of the final run.json fails once. The notebook is
    `failed` with its file named, the run `failed` with run.json named, and run.json, the
    trades.db row and the index all end up saying so."""
    from papermill.iorw import LocalHandler

    from pitools.box.nightly import RunRecord

    data, outputs = tmp_path / "data", tmp_path / "out"
    copy_earlier(earlier, data, outputs)
    before, rows = tree_digest(outputs / NIGHT), runs_rows(data / "trades.db")
    lst = notebook_list(tmp_path / "list.yaml", [
        {"name": "01_cut", "path": str(notebook(tmp_path / "cut.ipynb", "print('never saved whole')"))}])
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    write, save, failed_saves = LocalHandler.write, RunRecord.save, []

    def cut_short(self, buf, path):
        if not path.endswith("01_cut.ipynb"):
            return write(self, buf, path)
        with open(path, "w") as fh:
            fh.write(buf[:len(buf) // 2])
        raise full

    def save_fails_once_at_the_end(self):
        if self.finished_at and not failed_saves:
            failed_saves.append(self.status)
            raise full
        save(self)

    monkeypatch.setattr(LocalHandler, "write", cut_short)
    monkeypatch.setattr(RunRecord, "save", save_fails_once_at_the_end)
    code, out, err = main_in_process(monkeypatch, capsys, env, "nightly", *profile_args(data), "--date", NIGHT,
                                     "--outputs", str(outputs), "--notebooks", str(lst))
    assert code == 1, out + err
    assert "Traceback" not in err
    out_nb = outputs / LATER / "01_cut.ipynb"
    rec = run_record(outputs, LATER)
    nb = rec["notebooks"][0]
    assert nb["status"] == "failed"
    assert nb["error"].startswith(f"output notebook {str(out_nb)!r} is truncated or unreadable ("), nb["error"]
    assert "No space left on device" in nb["error"]
    assert out_nb.stat().st_size > 0 and (outputs / LATER / "01_cut.html").is_file()  # the report says why
    assert "is truncated or unreadable" in (outputs / LATER / "01_cut.html").read_text()
    assert failed_saves == ["failed"] and rec["status"] == "failed"
    assert f"run record {str(outputs / LATER / 'run.json')!r}: the disk is full" in rec["error"], rec["error"]
    assert "error: " in out and "run.json" in out and "is truncated or unreadable" in out
    details = json.loads(runs_rows(data / "trades.db")[-1][3])
    assert runs_rows(data / "trades.db")[-1][2] == "failed" and "run.json" in details["error"]
    assert runs_rows(data / "trades.db")[:-1] == rows
    assert integrity(data / "trades.db") == "ok"
    assert_index_true(outputs, LATER, "failed")
    assert tree_digest(outputs / NIGHT) == before


# ---------------------------------------------------------------- trades.db held by another process

HOLD = '''
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
'''


@pytest.mark.parametrize("journal", ["wal", "delete"])  # WAL: writes wait; the old rollback journal: reads too
def test_trades_db_locked_by_another_process_refuses_the_night_before_any_notebook(tmp_path, earlier, env,
                                                                                  monkeypatch, capsys, journal):
    import pitools.market.db

    data, outputs = tmp_path / "data", tmp_path / "out"
    copy_earlier(earlier, data, outputs)
    db = data / "trades.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA journal_mode = {journal}")
    before, rows = outputs_digest(outputs), runs_rows(db)
    lst = notebook_list(tmp_path / "list.yaml", [
        {"name": "01_never", "path": str(notebook(tmp_path / "never.ipynb", "print('must not run')"))}])
    monkeypatch.setattr(pitools.market.db, "BUSY_TIMEOUT_S", 0.5)  # 30 s in production
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        code, out, err = main_in_process(monkeypatch, capsys, env, "nightly", *profile_args(data), "--date", NIGHT,
                                         "--outputs", str(outputs), "--notebooks", str(lst))
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert code == 1, out + err
    assert f"pitools nightly: error: trades.db at {str(db)!r} is locked by another process (" in err, err
    assert "try again when it finishes" in err and "Traceback" not in err
    # refused before anything was written: no run folder, no notebook skipped, the index as it was
    assert sorted(p.name for p in outputs.iterdir() if p.is_dir()) == [NIGHT, "assets"]
    assert outputs_digest(outputs) == before
    assert runs_rows(db) == rows  # no row left `running`
    assert integrity(db) == "ok"


# ---------------------------------------------------------------- a read-only data folder

def test_a_read_only_data_folder_is_bad_input_named_before_anything_is_written(tmp_path, earlier, env):
    data, outputs = tmp_path / "data", tmp_path / "out"
    lst = notebook_list(tmp_path / "list.yaml", [
        {"name": "01_never", "path": str(notebook(tmp_path / "never.ipynb", "print('must not run')"))}])
    with contextlib.ExitStack() as stack:
        if os.geteuid() == 0:  # chmod does not stop root: a read-only mount does
            stack.enter_context(small_filesystem(data, "16m"))
            copy_earlier(earlier, data, outputs)
            subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)
        else:
            copy_earlier(earlier, data, outputs)
            data.chmod(0o555)
            stack.callback(data.chmod, 0o755)
        before, data_before = tree_digest(outputs), tree_digest(data)
        proc = run_cli("nightly", *profile_args(data), "--date", NIGHT, "--outputs", str(outputs),
                       "--notebooks", str(lst), env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"data folder {str(data)!r} is not writable (" in proc.stderr, proc.stderr
        assert "choose another with --set data_dir=" in proc.stderr and "Traceback" not in proc.stderr
        assert ("Read-only file system" if os.geteuid() == 0 else "Permission denied") in proc.stderr
        assert tree_digest(outputs) == before  # not even the run lock: the check comes first
        assert tree_digest(data) == data_before
        assert integrity(data / "trades.db", immutable=True) == "ok"


def test_a_killed_nights_kernel_that_still_holds_the_evolve_lock_is_stopped_by_the_next_night(tmp_path):
    """A kernel outlives its runner's kill -9 (its own session) and keeps evolving under the
    evolve lock; the next night stops it. A person's `pitools evolve` (no runner) is left alone."""
    import subprocess
    import sys

    from pitools.locks import LockHeld, exclusive_lock, read_holder
    from pitools.box.nightly.watch import _stop_leftovers

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a runner pid that no longer exists
    hold = ("import sys, time\nfrom pitools.locks import exclusive_lock\n"
            "info = {'nightly': int(sys.argv[2])} if sys.argv[2] != '-' else {}\n"
            "with exclusive_lock(sys.argv[1], info, 'x'):\n    print('held', flush=True)\n    time.sleep(60)\n")
    lock = tmp_path / "evolve.lock"

    def holder(runner: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", hold, str(lock), runner], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        return proc

    person = holder("-")
    try:
        _stop_leftovers(tmp_path, wait_s=1)
        assert person.poll() is None  # not a night's: left alone
        with pytest.raises(LockHeld):
            with exclusive_lock(lock, {}, "x"):
                pass
    finally:
        person.kill()
        person.wait()

    leftover = holder(str(gone.pid))
    try:
        assert read_holder(lock)["nightly"] == gone.pid
        _stop_leftovers(tmp_path)
        assert leftover.wait(timeout=10) != 0  # killed
        with exclusive_lock(lock, {}, "x"):  # and the lock is free for tonight's evolve
            pass
    finally:
        leftover.kill()
        leftover.wait()

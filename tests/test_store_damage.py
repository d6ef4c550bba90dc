"""A damaged store is refused, never wiped, and `pitools store repair` rebuilds it (issue 12: 1, 4, 7).

Real stores on disk, the real CLI in a subprocess; afterwards a check proves nothing was lost.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import pitools as pt
from pitools.data import store_writer as store_mod  # the writer commits the manifest
from pitools.data.ingest import ingest
from pitools.data.repair import repair
from pitools.errors import DamagedStoreError, StoreError


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "store"
    pt.make_demo_store(path, n_symbols=6, years=3, seed=3, end="2026-11-20")
    return path


@pytest.fixture
def store(template, tmp_path) -> Path:
    path = tmp_path / "store"
    shutil.copytree(template, path)
    return path


def _files(root: Path) -> dict[str, str]:
    """Every data file under the store and the sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "bars").rglob("*.parquet"))}


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pitools", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def _good_csv(tmp_path: Path) -> Path:
    path = tmp_path / "NEWCO.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2026-11-18,10,11,9,10.5,100\n2026-11-19,10.5,11,10,10.8,120\n")
    return path


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def test_missing_manifest_is_refused_by_ingest_and_demo_data_and_nothing_is_deleted(store, tmp_path):
    before_frame = pt.Store.open(store).read_frame()
    (store / "manifest.json").unlink()
    files = _files(store)
    assert len(files) >= 3
    proc = _cli("ingest", _good_csv(tmp_path), "--store", store, "--quarantine", tmp_path / "q")
    assert proc.returncode == 2
    assert "no manifest.json" in _one_line_error(proc) and "pitools store repair" in proc.stderr
    proc = _cli("demo-data", "--if-missing", "--store", store, "--symbols", "3", "--years", "1")
    assert proc.returncode == 2 and "damaged" in _one_line_error(proc)
    proc = _cli("demo-data", "--force", "--store", store, "--symbols", "3", "--years", "1")
    assert proc.returncode == 2 and "damaged" in _one_line_error(proc)
    assert _files(store) == files  # not one byte of data touched

    proc = _cli("store", "repair", "--store", store)
    assert proc.returncode == 0, proc.stderr
    assert "manifest rebuilt" in proc.stdout
    after = pt.Store.open(store)
    assert after.verify() == []
    pd.testing.assert_frame_equal(after.read_frame(), before_frame)
    assert _files(store) == files


@pytest.mark.parametrize("content, fragment", [
    ("null", "holds a NoneType"),
    ("[1, 2]", "holds a list"),
    ('{"format": "pitools-store", "version": 1, "partitions": {"2025": {}}}', "partition '2025' is malformed"),
    ('{"format": "pitools-store", "version": 1, "partitions": []}', "`partitions` is a list"),
    ("{not json", "cannot be read"),
])
def test_manifest_of_the_wrong_shape_is_a_damaged_store(store, tmp_path, content, fragment):
    before_frame = pt.Store.open(store).read_frame()
    files = _files(store)
    (store / "manifest.json").write_text(content)
    with pytest.raises(DamagedStoreError, match=fragment):
        pt.Store.open(store)
    proc = _cli("ingest", _good_csv(tmp_path), "--store", store, "--quarantine", tmp_path / "q")
    assert proc.returncode == 2 and fragment.split("'")[0] in _one_line_error(proc)
    assert _files(store) == files
    report = repair(store)
    assert report.complete and report.backup is not None and report.backup.read_text() == content
    pd.testing.assert_frame_equal(pt.Store.open(store).read_frame(), before_frame)


def test_manifest_that_is_a_directory_leaves_no_orphans(store, tmp_path):
    before_frame = pt.Store.open(store).read_frame()
    (store / "manifest.json").unlink()
    (store / "manifest.json").mkdir()
    files = _files(store)
    proc = _cli("ingest", _good_csv(tmp_path), "--store", store, "--quarantine", tmp_path / "q")
    assert proc.returncode == 2 and "is not a file" in _one_line_error(proc)
    assert _files(store) == files  # no orphan year file written beside the damage
    assert repair(store).complete
    pd.testing.assert_frame_equal(pt.Store.open(store).read_frame(), before_frame)


def test_a_commit_deletes_only_what_the_manifest_retired(store, tmp_path):
    foreign = store / "bars" / "2025" / "0123456789abcdef.parquet"
    foreign.write_bytes(b"somebody's file")
    first = set(_files(store))
    assert ingest(_good_csv(tmp_path), store, quarantine=tmp_path / "q", force=True).ok  # rewrites 2026
    second = set(_files(store))
    assert first <= second  # the replaced 2026 file stays one more generation
    (tmp_path / "NEWCO.csv").write_text("Date,Open,High,Low,Close,Volume\n2026-11-20,11,12,10,11.5,90\n")
    assert ingest(tmp_path / "NEWCO.csv", store, quarantine=tmp_path / "q", force=True).ok
    third = set(_files(store))
    assert foreign.exists()  # never listed: never deleted
    gone = first - third
    assert len(gone) == 1 and gone.pop().startswith("bars/2026/")  # only the retired generation
    assert pt.Store.open(store).verify() == []


def _damage(store: Path) -> tuple[str, str, str]:
    """Truncate one year file, delete another, flip bytes in the middle of a third."""
    parts = pt.Store.open(store).partitions
    years = sorted(parts)[:3]
    truncated, deleted, flipped = (store / parts[y].file for y in years)
    with open(truncated, "r+b") as fh:
        fh.truncate(truncated.stat().st_size // 2)
    deleted.unlink()
    data = bytearray(flipped.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
    flipped.write_bytes(bytes(data))
    return str(truncated), str(deleted), str(flipped)


def test_check_and_load_panel_catch_a_truncated_a_missing_and_a_bit_flipped_file(store, tmp_path):
    pt.load_panel(store)  # read (and hashed) once while healthy: the damage must still be seen
    truncated, deleted, flipped = _damage(store)
    problems = pt.Store.open(store).verify()
    assert len(problems) == 3
    for path, why in ((truncated, "bytes but the manifest says"), (deleted, "missing"), (flipped, "sha256")):
        assert any(path in p and why in p for p in problems), (path, problems)

    with pytest.raises(StoreError, match="damaged"):
        pt.load_panel(store)
    for path in (truncated, deleted, flipped):  # each one alone is refused too
        year = int(Path(path).parent.name)
        with pytest.raises(StoreError, match=str(year)):
            pt.load_panel(store, start=f"{year}-01-01", end=f"{year}-12-31")

    proc = _cli("check", "--store", store, "--set", f"data_dir={tmp_path / 'data'}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.split()[:2] == ["FAIL", "store"])
    assert "and 2 more" in line and "pitools store repair" in line


def test_repair_after_damage_keeps_every_sound_year_and_names_the_rest(store):
    before = pt.Store.open(store)
    damaged = _damage(store)
    kept = {p.file for p in before.partitions.values()} - {str(Path(d).relative_to(store)) for d in damaged}
    files = _files(store)
    proc = _cli("store", "repair", "--store", store)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # repaired, but some data could not be saved
    assert proc.stdout.count("CANNOT READ") == 3, proc.stdout
    assert "missing" in proc.stdout and "does not match its name" in proc.stdout
    after = pt.Store.open(store)
    assert {p.file for p in after.partitions.values()} == kept
    assert after.verify() == []
    assert _files(store) == files  # repair deletes nothing
    pt.load_panel(store)


def test_repair_of_a_healthy_store_changes_nothing(store):
    manifest = (store / "manifest.json").read_bytes()
    report = repair(store)
    assert report.healthy and (store / "manifest.json").read_bytes() == manifest


def test_disk_full_at_the_commit_leaves_the_store_as_it_was(store, tmp_path, monkeypatch):
    before_frame = pt.Store.open(store).read_frame()
    files = _files(store)
    manifest = (store / "manifest.json").read_bytes()

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(store_mod, "write_text_atomic", full)
    with pytest.raises(StoreError, match="No space left on device.*nothing was changed"):
        with pt.Store.open(store).writer() as w:
            w.upsert(pd.DataFrame({"symbol": ["NEWCO"], "date": ["2026-11-19"], "open": [1.0], "high": [1.0],
                                   "low": [1.0], "close": [1.0], "volume": [1.0]}))
            w.commit()
    assert _files(store) == files and (store / "manifest.json").read_bytes() == manifest
    assert not [p for p in store.rglob("*") if p.name.startswith(".tmp-")]
    pd.testing.assert_frame_equal(pt.Store.open(store).read_frame(), before_frame)

"""Real bars and demo bars never share a store by accident (issue 13, section 4).

Real files: Google's daily bars that backtesting.py ships (``backtesting.test.GOOG``) written
to a CSV, a small store written by the real ``pitools demo-data``, and the real command line
in a subprocess, as the README has a newcomer type them. Expected values come from the GOOG
frame itself, never from the code under test; a refusal is checked byte for byte (the
manifest, every data file, no quarantine folder).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pitools as pt
from conftest import END, run_cli
from pitools.config import load_profile
from pitools.data.ingest import ingest
from pitools.data.sources import refresh
from pitools.errors import MixedDataError


@pytest.fixture(scope="module")
def goog() -> pd.DataFrame:
    from backtesting.test import GOOG

    return GOOG


@pytest.fixture(scope="module")
def real_files(tmp_path_factory, goog) -> Path:
    """A download folder: GOOG.csv (real bars) and one broken file that an ingest would quarantine."""
    folder = tmp_path_factory.mktemp("downloads")
    frame = goog.rename_axis("Date").reset_index()
    frame["Date"] = frame["Date"].dt.strftime("%Y-%m-%d")
    frame.to_csv(folder / "GOOG.csv", index=False)
    (folder / "broken.csv").write_text("this is not,a bar file\n1,2\n")
    return folder


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("tpl") / "store"
    out = pt_cli(tmp_path_factory.mktemp("pdata"), "demo-data", "--store", store, "--symbols", "3", "--years", "1",
                 "--end", END)
    assert out.returncode == 0, out.stderr
    return store


def pt_cli(data_dir: Path, *args):
    """`python -m pitools ARGS` on a profile whose data_dir is `data_dir` (never the checkout's data/)."""
    command, rest = args[0], args[1:]
    return run_cli(command, *map(str, rest), "--profile", "ci", "--set", f"data_dir={data_dir}")


def tree(root: Path) -> dict[str, str]:
    """Every file of a store (its manifest included) and the sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())


def one_line_error(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def demo_store(tmp_path, demo_template) -> Path:
    store = tmp_path / "data" / "store"
    shutil.copytree(demo_template, store)
    return store


def test_the_demo_profile_has_a_data_folder_of_its_own():
    demo, pi_safe = load_profile("demo"), load_profile("pi_safe")
    assert demo.store_dir != pi_safe.store_dir and demo.data_dir != pi_safe.data_dir
    assert pi_safe.store_dir not in (demo.store_dir, *demo.store_dir.parents)  # not inside the real store
    assert demo.data_dir.name == "demo"


def test_ingest_refuses_real_bars_into_a_demo_store_and_changes_nothing(tmp_path, demo_store, real_files):
    assert manifest(demo_store)["info"]["source"] == "demo"
    before, manifest_bytes = tree(demo_store), (demo_store / "manifest.json").read_bytes()
    source_files = tree(real_files)

    proc = pt_cli(tmp_path / "pdata", "ingest", real_files, "--store", demo_store)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = one_line_error(proc)
    assert repr(str(demo_store)) in error and "`pitools demo-data`" in error and "synthetic" in error
    assert "3 symbols + 2 index series" in error  # what it holds
    assert "`--store DIR`" in error and "`--profile`" in error and "`--force`" in error  # the two ways out
    assert (demo_store / "manifest.json").read_bytes() == manifest_bytes and tree(demo_store) == before
    assert not (tmp_path / "data" / "quarantine").exists() and not (tmp_path / "pdata").exists()
    assert tree(real_files) == source_files

    # The Python API refuses alike, with the error class the command line exits 2 for.
    with pytest.raises(MixedDataError, match="built by `pitools demo-data`") as info:
        ingest(real_files / "GOOG.csv", demo_store, quarantine=tmp_path / "q")
    assert info.value.exit_code == 2 and info.value.source == "demo" and info.value.store == str(demo_store)
    assert tree(demo_store) == before and not (tmp_path / "q").exists()


def test_forced_ingest_mixes_and_says_so_in_the_manifest(tmp_path, demo_store, real_files, goog):
    demo_symbols = pt.Store.open(demo_store).symbols(None)
    demo_bars = pt.Store.open(demo_store).read_frame()

    proc = pt_cli(tmp_path / "pdata", "ingest", real_files, "--store", demo_store, "--force")

    assert proc.returncode == 0, proc.stderr
    assert '"source": "mixed"' in proc.stdout and "broken.csv" in proc.stdout
    info = manifest(demo_store)["info"]
    assert info["source"] == "mixed" and info["seed"] == 7  # the demo's settings stay: they describe its part
    store = pt.Store.open(demo_store)
    assert store.verify() == [] and sorted(store.symbols(None)) == sorted([*demo_symbols, "GOOG"])
    got = store.read_frame(["GOOG"])
    assert list(got["date"]) == list(goog.index.normalize())
    np.testing.assert_allclose(got["close"].to_numpy(float), goog["Close"].to_numpy(float), rtol=1e-6)
    pd.testing.assert_frame_equal(store.read_frame(demo_symbols).reset_index(drop=True),
                                  demo_bars.reset_index(drop=True))  # the demo's bars untouched
    # Already mixed on purpose: a later import goes in without --force and stays "mixed".
    proc = pt_cli(tmp_path / "pdata", "ingest", real_files / "GOOG.csv", "--store", demo_store)
    assert proc.returncode == 0, proc.stderr
    assert manifest(demo_store)["info"]["source"] == "mixed"


def test_demo_data_refuses_a_store_of_imported_bars_unless_forced(tmp_path, real_files):
    store = tmp_path / "real" / "store"
    proc = pt_cli(tmp_path / "pdata", "ingest", real_files / "GOOG.csv", "--store", store)
    assert proc.returncode == 0, proc.stderr
    assert manifest(store)["info"]["source"] == "ingest"
    before = tree(store)

    proc = pt_cli(tmp_path / "pdata", "demo-data", "--store", store, "--symbols", "3", "--years", "1", "--end", END)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = one_line_error(proc)
    assert repr(str(store)) in error and "imported by `pitools ingest`" in error and "(1 symbol + 0 index series" in error
    assert "`--store DIR`" in error and "`--profile`" in error and "`--force`" in error
    assert tree(store) == before

    proc = pt_cli(tmp_path / "pdata", "demo-data", "--store", store, "--if-missing")
    assert proc.returncode == 0 and "not the demo" in proc.stdout and "left as it is" in proc.stdout
    assert tree(store) == before

    # --force keeps its meaning: the store is rebuilt as the demo (and it says what it replaced).
    proc = pt_cli(tmp_path / "pdata", "demo-data", "--store", store, "--symbols", "3", "--years", "1", "--end", END,
                  "--force")
    assert proc.returncode == 0, proc.stderr
    assert "held imported bars" in proc.stderr and "Traceback" not in proc.stderr
    rebuilt = pt.Store.open(store)
    assert rebuilt.info["source"] == "demo" and "GOOG" not in rebuilt.symbols(None)
    assert (real_files / "GOOG.csv").is_file()


def test_store_dir_sends_the_quarantine_beside_that_store(tmp_path, real_files):
    store = tmp_path / "elsewhere" / "store"
    proc = pt_cli(tmp_path / "pdata", "ingest", real_files, "--store", store)
    assert proc.returncode == 0, proc.stderr
    runs = list((tmp_path / "elsewhere" / "quarantine").iterdir())
    assert len(runs) == 1 and str(runs[0]) in proc.stdout
    assert sorted(p.name for p in runs[0].iterdir()) == ["broken.csv", "broken.csv.reason.txt"]
    assert not (tmp_path / "pdata").exists()  # the profile's data folder got nothing

    # The nightly refresh (01_data passes store=) puts its quarantine beside that store too.
    drop = tmp_path / "pdata" / "incoming"
    drop.mkdir(parents=True)
    (drop / "junk.csv").write_text("not,bars\n1,2\n")
    profile = load_profile("ci", overrides=[f"data_dir={tmp_path / 'pdata'}"])
    report = refresh(profile, store=store)
    assert Path(report.quarantine_dir).parent == tmp_path / "elsewhere" / "quarantine"
    assert (Path(report.quarantine_dir) / "junk.csv.reason.txt").is_file()
    assert not (tmp_path / "pdata" / "quarantine").exists()


def test_a_refresh_never_imports_real_bars_into_the_demo_store(tmp_path, demo_template, real_files):
    profile = load_profile("ci", overrides=[f"data_dir={tmp_path}"])
    shutil.copytree(demo_template, profile.store_dir)
    assert refresh(profile).ok  # an empty drop folder: every demo night goes on as before
    shutil.copy(real_files / "GOOG.csv", profile.drop_path / "GOOG.csv")
    before = tree(profile.store_dir)

    with pytest.raises(MixedDataError, match="refreshing it from `data_source` = 'drop_folder'.*`data_source: none`"):
        refresh(profile)

    assert tree(profile.store_dir) == before
    assert (profile.drop_path / "GOOG.csv").is_file() and not (profile.drop_path / "imported").exists()


def test_a_store_without_provenance_is_unknown_and_not_refused(tmp_path, demo_store, real_files):
    # What a pitools before provenance wrote: no "source" in the manifest's info.
    raw = manifest(demo_store)
    del raw["info"]["source"]
    (demo_store / "manifest.json").write_text(json.dumps(raw))

    proc = pt_cli(tmp_path / "pdata", "ingest", real_files / "GOOG.csv", "--store", demo_store)

    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr and "mixed" not in proc.stdout
    assert manifest(demo_store)["info"]["source"] == "ingest"  # it holds imported bars now

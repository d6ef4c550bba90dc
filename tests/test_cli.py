"""The `pitools` command as a person types it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pitools as pt
from conftest import END, run_cli


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "pitools"
    assert script.exists() or shutil.which("pitools")


def test_demo_data_then_summary(tmp_path):
    store = tmp_path / "store"
    r = run_cli("demo-data", "--profile", "ci", "--store", str(store), "--symbols", "7", "--years", "1",
                "--seed", "4", "--end", END)
    assert r.returncode == 0, r.stderr
    assert "7 symbols + 2 index series" in r.stdout
    assert pt.Store.open(store).info == {"source": "demo", "seed": 4, "n_symbols": 7, "years": 1, "end": END}

    again = run_cli("demo-data", "--profile", "ci", "--store", str(store), "--if-missing")
    assert again.returncode == 0 and "left as it is" in again.stdout

    refused = run_cli("demo-data", "--profile", "ci", "--store", str(store), "--symbols", "3", "--end", END)
    assert refused.returncode == 2 and "already exists" in refused.stderr and "Traceback" not in refused.stderr

    r = run_cli("summary", "--profile", "ci", "--store", str(store), "--set", "max_symbols=5")
    assert r.returncode == 0, r.stderr
    assert "5 symbols ×" in r.stdout and "peak RSS" in r.stdout and "^VIX" in r.stdout


def test_user_errors_exit_2_with_one_line_and_no_traceback(tmp_path):
    cases = [
        ("summary", "--profile", "ci", "--set", "max_symbols=-1"),
        ("summary", "--profile", "nope"),
        ("summary", "--profile", "ci", "--store", str(tmp_path / "none")),
        ("demo-data", "--profile", "ci", "--store", str(tmp_path / "x"), "--symbols", "0"),
        ("summary", "--profile", "ci", "--set", "memory_budget_mb=64", "--store", str(tmp_path / "none")),
    ]
    for args in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and "error:" in r.stderr, (args, r.stderr)


def test_memory_budget_refusal_from_the_command_line(tmp_path):
    store = tmp_path / "store"
    pt.make_demo_store(store, n_symbols=40, years=10, seed=1, end=END)
    r = run_cli("summary", "--profile", "ci", "--store", str(store), "--set", "max_symbols=40",
                "--set", "max_years=10", "--set", "memory_budget_mb=64")
    assert r.returncode == 0, r.stderr  # 40 × 10 years fits in 64 MB
    big = tmp_path / "big"
    pt.make_demo_store(big, n_symbols=700, years=20, seed=1, end=END)  # 70 MB as float32
    r = run_cli("summary", "--profile", "ci", "--store", str(big), "--set", "max_symbols=700",
                "--set", "max_years=20", "--set", "memory_budget_mb=64")
    assert r.returncode == 2 and "memory_budget_mb" in r.stderr and "Traceback" not in r.stderr


def test_no_command_prints_help_and_exits_2():
    r = run_cli()
    assert r.returncode == 2 and "demo-data" in r.stdout

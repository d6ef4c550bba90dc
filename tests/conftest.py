"""Shared fixtures: small real demo stores built once per test session."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
END = "2026-11-20"  # a fixed last session, so fixtures do not change from day to day


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """24 symbols × 3 years of the demo universe (plus ^GSPC, ^VIX)."""
    import pitools as pt

    path = tmp_path_factory.mktemp("demo") / "store"
    pt.make_demo_store(path, n_symbols=24, years=3, seed=11, end=END)
    return path


@pytest.fixture(scope="session")
def long_store(tmp_path_factory) -> Path:
    """60 symbols × 25 years: long enough for ragged histories and many regimes."""
    import pitools as pt

    path = tmp_path_factory.mktemp("long") / "store"
    pt.make_demo_store(path, n_symbols=60, years=25, seed=3, end=END)
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None):
    """Run ``python -m pitools ARGS`` as a person would; returns CompletedProcess."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "pitools", *args], cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


def random_ohlc(n: int, seed: int, start: float, open_noise: float, missing=()):
    """A seeded random-walk OHLC series (consistent low <= open, close <= high) with NaN
    over each slice of `missing` — bars the symbol does not have."""
    import numpy as np

    rng = np.random.default_rng(seed)
    c = start * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
    o = np.r_[c[0], c[:-1]] * np.exp(rng.normal(0, open_noise, n))
    h = np.maximum(o, c) * (1 + rng.uniform(0, 0.01, n))
    lo = np.minimum(o, c) * (1 - rng.uniform(0, 0.01, n))
    for gap in missing:
        for a in (o, h, lo, c):
            a[gap] = np.nan
    return o, h, lo, c


@pytest.fixture(scope="session")
def numba_cache_dir() -> str:
    """The NUMBA_CACHE_DIR of every `pitools nightly` a test session starts: the per-user cache
    (pitools.kernels.cache_dir) that the other command-line tests use too, so the kernels compile
    once per machine (tens of seconds), not once per kind of test. Tests of a cold cache make
    their own."""
    from pitools.kernels import cache_dir

    path = cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


@pytest.fixture(scope="session")
def tiny_night(tmp_path_factory, numba_cache_dir):
    """One real ``pitools nightly`` (the shipped notebook list) on 6 symbols × 2 years,
    population 4, one generation: the cheapest real night, for tests that only read its
    outputs. Returns ``(data_dir, outputs, night)``; fails here if the run did not succeed."""
    import pitools as pt

    data = tmp_path_factory.mktemp("tiny-night")
    pt.make_demo_store(data / "store", n_symbols=6, years=2, seed=5, end=END)
    outputs = data / "outputs"
    env = {"NUMBA_CACHE_DIR": numba_cache_dir, "PITOOLS_HOME": str(ROOT)}
    proc = run_cli("nightly", "--profile", "ci", "--set", f"data_dir={data}", "--set", "population_size=4",
                   "--set", "generations=1", "--date", END, "--outputs", str(outputs), env=env)
    if proc.returncode != 0:
        pytest.fail(f"pitools nightly exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    (data / "nightly.stdout").write_text(proc.stdout)  # what the command printed, for the tests that read it
    return data, outputs, END


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_lab(cfg, env: dict, log_path: Path):
    """Start a real JupyterLab from ``cfg.argv`` with `env`, wait until /api answers,
    yield ``(proc, port)``; stop it and its kernels (its process group) after: SIGTERM,
    then SIGKILL."""
    port = int(next(a for a in cfg.argv if a.startswith("--ServerApp.port=")).split("=")[1])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cfg.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:  # polling: nothing to wait on before the server listens
                if proc.poll() is not None:
                    pytest.fail(f"JupyterLab exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=5) as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not answer /api within 60 s:\n" + log_path.read_text()[-3000:])
                time.sleep(0.3)
            yield proc, port
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # its kernels too: they share the session
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)

"""The fitness map: the same results in every backend, failures recorded per candidate, the
context inherited (never pickled), no orphans after SIGTERM or Ctrl-C, memory as PSS."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

import numpy as np
import pytest

import pitools as pt
from conftest import ROOT
from pitools.errors import ConfigError
from pitools.search.fitness import FitnessResult, fitness_map
from pitools.memory import pss_bytes

MB = 2**20


# ---------------------------------------------------------------- module-level evaluation functions

@dataclass(frozen=True)
class BacktestContext:
    panel: object
    fees: float


def backtest_sharpe(candidate: dict, ctx: BacktestContext):
    """A real evaluation: one sma_cross backtest of the panel, its portfolio Sharpe."""
    res = pt.backtest("sma_cross", ctx.panel, candidate, fees=ctx.fees, per_symbol_stats=False)
    return float(res.portfolio["sharpe"]), {"n_trades": int(res.n_trades), "pid": os.getpid()}


def arithmetic(candidate: dict, ctx: dict):
    """A cheap one, with failures on request."""
    x = candidate["x"]
    if candidate.get("fail") == "raise":
        raise ValueError(f"no good: x={x}")
    if candidate.get("fail") == "nan":
        return math.nan
    if candidate.get("fail") == "text":
        return "high"
    if candidate.get("fail") == "details":
        return 1.0, {"fn": lambda: None}  # details that cannot travel back from a worker
    return x * ctx["scale"] + math.sin(x), {"x2": x * x, "pid": os.getpid()}


def zero(candidate, ctx):
    return 0.0


def slow_pid(candidate, ctx):
    time.sleep(ctx)
    return float(candidate["x"]), {"pid": os.getpid()}


def touch(candidate, ctx):
    """Reads every page of the (large) context array, and stays a while for the sampler."""
    time.sleep(0.25)
    return float(ctx.sum(dtype=np.float64)) + candidate["x"], {"pid": os.getpid()}


def hold(candidate, nbytes):
    """Holds `nbytes` of fresh memory for a while."""
    block = np.ones(nbytes // 8)
    time.sleep(0.3)
    return float(block[-1]), {"pid": os.getpid()}


def die_in_worker(candidate, parent_pid):
    if candidate["x"] == 5 and os.getpid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does
    return float(candidate["x"])


class Unpicklable:
    """A context that refuses to be pickled: the process backend must never try."""

    scale = 3.0

    def __getitem__(self, key):
        return self.scale

    def __reduce__(self):
        raise TypeError("this context must not be pickled")


@pytest.fixture(scope="module")
def small(demo_store) -> BacktestContext:
    panel = pt.load_panel(demo_store, symbols=pt.Store.open(demo_store).symbols()[:8],
                          fields=("open", "high", "low", "close"))
    return BacktestContext(panel, 0.001)


SMA = [{"fast": f, "slow": s} for f, s in [(5, 20), (10, 30), (3, 50), (20, 60), (8, 21), (12, 40), (15, 90),
                                           (2, 10), (30, 100), (6, 18), (9, 45)]]


# ---------------------------------------------------------------- results

@pytest.mark.parametrize("chunksize", [None, 1, 4])
def test_process_pool_gives_bitwise_the_serial_results(small, chunksize):
    serial = fitness_map(backtest_sharpe, SMA, small, backend="serial", progress=False)
    pool = fitness_map(backtest_sharpe, SMA, small, n_workers=2, chunksize=chunksize, progress=False)
    assert (serial.backend, pool.backend, pool.n_workers) == ("serial", "process", 2)
    assert serial.values.dtype == np.float64 and np.isfinite(serial.values).all()
    assert serial.values.tobytes() == pool.values.tobytes()
    strip = [{k: v for k, v in d.items() if k != "pid"} for d in pool.details]
    assert strip == [{k: v for k, v in d.items() if k != "pid"} for d in serial.details]
    assert serial.errors == pool.errors == {}
    # the first candidate ran in the parent (numba warm before the fork), the rest in workers
    pids = [d["pid"] for d in pool.details]
    assert pids[0] == os.getpid() and os.getpid() not in pids[1:]


@pytest.mark.parametrize("chunksize", [None, 1, 3, 7, 100])
def test_candidate_order_is_kept_whatever_the_chunks(chunksize):
    cands = [{"x": x} for x in range(50)]
    res = fitness_map(arithmetic, cands, {"scale": 2.0}, n_workers=2, chunksize=chunksize, progress=False)
    expected = [x * 2.0 + math.sin(x) for x in range(50)]
    assert res.values.tolist() == expected
    assert [d["x2"] for d in res.details] == [x * x for x in range(50)]
    # the result behaves like its fitnesses
    assert isinstance(res, FitnessResult) and len(res) == 50 and list(res) == expected
    assert res[3] == expected[3] and np.asarray(res).tolist() == expected and np.argmax(res) == 49


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_a_failing_candidate_gets_minus_inf_and_its_error_while_the_rest_succeed(backend):
    fails = {3: "raise", 4: "nan", 7: "text", 9: "details"}
    cands = [{"x": x, **({"fail": fails[x]} if x in fails else {})} for x in range(12)]
    res = fitness_map(arithmetic, cands, {"scale": 1.0}, n_workers=2, backend=backend, progress=False)
    assert sorted(res.errors) == [3, 4, 7, 9]
    assert all(res.values[i] == -math.inf for i in fails)
    ok = [i for i in range(12) if i not in fails]
    assert res.values[ok].tolist() == [x + math.sin(x) for x in ok]
    assert res.errors[3].startswith("ValueError: no good: x=3") and "test_fitness.py" in res.errors[3]
    assert "non-finite" in res.errors[4] and "nan" in res.errors[4]
    assert res.errors[7].startswith("TypeError") and "'high'" in res.errors[7]
    assert res.errors[9].startswith("TypeError") and "picklable" in res.errors[9]
    assert res.details[3] is None and res.details[5]["x2"] == 25


def test_serial_and_process_record_the_same_errors():
    cands = [{"x": x, "fail": "raise" if x % 5 == 0 else None} for x in range(20)]
    a = fitness_map(arithmetic, cands, {"scale": 1.0}, backend="serial", progress=False)
    b = fitness_map(arithmetic, cands, {"scale": 1.0}, n_workers=2, chunksize=3, progress=False)
    assert a.values.tobytes() == b.values.tobytes() and a.errors == b.errors
    assert list(a.errors) == [0, 5, 10, 15]


def test_the_context_and_fn_are_inherited_not_pickled():
    cands = [{"x": x} for x in range(16)]
    res = fitness_map(arithmetic, cands, Unpicklable(), n_workers=2, chunksize=2, progress=False)
    assert res.errors == {} and res.values.tolist() == [x * 3.0 + math.sin(x) for x in range(16)]
    assert len({d["pid"] for d in res.details} - {os.getpid()}) >= 1  # evaluated in workers
    scale = 5.0  # a closure: what the old system's pool could not pickle
    res = fitness_map(lambda c, ctx: c["x"] * scale, cands, Unpicklable(), n_workers=2, progress=False)
    assert res.values.tolist() == [x * 5.0 for x in range(16)]


def test_one_or_no_candidates_and_one_worker_run_in_process():
    assert len(fitness_map(zero, [], None, progress=False)) == 0
    one = fitness_map(arithmetic, [{"x": 2}], {"scale": 1.0}, n_workers=4, progress=False)
    assert one.backend == "serial" and one.details[0]["pid"] == os.getpid()
    single = fitness_map(arithmetic, [{"x": x} for x in range(5)], {"scale": 1.0}, n_workers=1, progress=False)
    assert single.backend == "serial" and single.n_workers == 1


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_progress_is_reported_as_chunks_complete(caplog, backend):
    caplog.set_level(logging.INFO, logger="pitools")
    fitness_map(zero, [{"x": x} for x in range(20)], None, n_workers=2, backend=backend, desc="gen 3/5")
    lines = [r.getMessage() for r in caplog.records if r.name == "pitools"]
    assert lines and lines[-1] == "gen 3/5: 20/20 eval"  # not a terminal here: plain log lines


def test_numpy_numbers_and_mappings_are_accepted():
    from types import MappingProxyType

    res = fitness_map(lambda c, ctx: np.float32(c["x"]), [MappingProxyType({"x": 1.5}), {"x": 2}], None,
                      n_workers=2, progress=False)
    assert res.values.tolist() == [1.5, 2.0] and res.errors == {}


@pytest.mark.parametrize("backend,n_workers", [("serial", 1), ("process", 2)])
def test_sleep_between_evals_is_honoured(backend, n_workers):
    n, pause = 8, 0.05
    res = fitness_map(zero, [{"x": x} for x in range(n)], None, n_workers=n_workers, backend=backend,
                      sleep_between_evals=pause, progress=False)
    assert res.elapsed_s >= 0.9 * n * pause / n_workers


def test_a_killed_worker_fails_its_candidates_instead_of_hanging():
    res = fitness_map(die_in_worker, [{"x": x} for x in range(12)], os.getpid(), n_workers=2, chunksize=1,
                      progress=False)
    assert res.values[0] == 0.0 and 5 in res.errors
    assert "WorkerLost" in res.errors[5] and "-9" in res.errors[5]
    assert set(res.errors) == {i for i in range(12) if res.values[i] == -math.inf}


def test_sigterm_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    fitness_map(zero, [{"x": x} for x in range(6)], None, n_workers=2, progress=False)
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------- memory

def _virtual_bytes() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))


def test_peak_pss_is_the_pss_of_parent_and_workers_not_virtual_size():
    parent = pss_bytes()
    res = fitness_map(hold, [{"x": x} for x in range(5)], 32 * MB, n_workers=2, chunksize=1, progress=False)
    assert res.errors == {} and len({d["pid"] for d in res.details}) == 3
    # two workers holding 32 MB each at once are counted; virtual size (GBs here) is not
    assert parent + 48 * MB <= res.peak_pss_bytes < _virtual_bytes()
    serial = fitness_map(zero, [{"x": 1}], None, backend="serial", progress=False)
    assert 0.5 * parent < serial.peak_pss_bytes < _virtual_bytes()


def test_the_context_is_shared_copy_on_write():
    big = np.ones(64 * MB // 8)  # 64 MB in the parent, read through by every worker
    parent = pss_bytes()
    res = fitness_map(touch, [{"x": x} for x in range(5)], big, n_workers=2, chunksize=1, progress=False)
    assert res.errors == {} and len({d["pid"] for d in res.details}) == 3
    assert res.peak_pss_bytes < parent + 32 * MB  # a copy per worker would add 128 MB


# ---------------------------------------------------------------- signals: no orphans

_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pitools.search.fitness import fitness_map

    def slow(candidate, log):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        time.sleep(0.2)
        return 0.0

    fitness_map(slow, [{"i": i} for i in range(400)], sys.argv[1], n_workers=2, chunksize=1, progress=False)
    print("finished")
""")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["SIGTERM to the parent", "Ctrl-C to the process group"])
def test_stopping_a_map_leaves_no_orphan_workers(tmp_path, how):
    log = tmp_path / "pids.txt"
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(log)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            workers = {int(p) for p in log.read_text().split()} - {proc.pid} if log.exists() else set()
        assert len(workers) == 2, f"the workers did not start: {proc.communicate(timeout=5)}"
        if how.startswith("SIGTERM"):
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "finished" not in out
    assert proc.returncode == (143 if how.startswith("SIGTERM") else -signal.SIGINT), err
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if _alive(pid)], "orphaned workers are still running"


# ---------------------------------------------------------------- dask

@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as lc:
        yield lc


def test_dask_backend_gives_the_serial_results(cluster, small):
    from distributed import Client

    serial = fitness_map(backtest_sharpe, SMA, small, backend="serial", progress=False)
    with Client(cluster) as client:
        res = fitness_map(backtest_sharpe, SMA, small, backend="dask", scheduler=client, progress=False)
        assert res.backend == "dask" and res.n_workers == 2
        assert res.values.tobytes() == serial.values.tobytes()
        assert [d["n_trades"] for d in res.details] == [d["n_trades"] for d in serial.details]
        assert len({d["pid"] for d in res.details}) >= 1 and os.getpid() not in {d["pid"] for d in res.details}
        assert res.peak_pss_bytes > pss_bytes()  # the parent plus the local workers
        default = fitness_map(zero, [{"x": x} for x in range(4)], None, backend="dask", progress=False)
        assert default.values.tolist() == [0.0] * 4  # scheduler=None: the default client


def test_dask_backend_records_failures_and_takes_an_address(cluster):
    fails = {2: "raise", 6: "nan"}
    cands = [{"x": x, **({"fail": fails[x]} if x in fails else {})} for x in range(10)]
    serial = fitness_map(arithmetic, cands, {"scale": 2.0}, backend="serial", progress=False)
    res = fitness_map(arithmetic, cands, {"scale": 2.0}, backend="dask", scheduler=cluster.scheduler_address,
                      chunksize=3, sleep_between_evals=0.01, progress=False)
    assert res.values.tobytes() == serial.values.tobytes()
    assert res.errors == serial.errors and sorted(res.errors) == [2, 6]


def test_dask_without_a_scheduler_says_how_to_get_one():
    distributed = pytest.importorskip("distributed")
    try:
        distributed.default_client()
        pytest.skip("a default dask client exists in this process")
    except ValueError:
        pass
    with pytest.raises(ConfigError, match="`scheduler` = None.*distributed.Client"):
        fitness_map(zero, [{"x": 1}], None, backend="dask", progress=False)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs,fragment", [
    ({"backend": "proces"}, r"`backend` = 'proces'.*Did you mean 'process'.*Allowed: 'process', 'serial', 'dask'"),
    ({"backend": None}, r"`backend` = None"),
    ({"n_workers": 0}, r"`n_workers` = 0 must be an integer >= 1"),
    ({"n_workers": 2.5}, r"`n_workers` = 2.5"),
    ({"n_workers": True}, r"`n_workers` = True"),
    ({"chunksize": 0}, r"`chunksize` = 0"),
    ({"fn": None}, r"`fn` = None is not callable"),
    ({"candidates": "abc"}, r"`candidates` = 'abc' must be a list"),
    ({"candidates": {"x": 1}}, r"`candidates` = \{'x': 1\} must be a list"),
    ({"candidates": (c for c in [{"x": 1}])}, r"`candidates` = <generator"),
    ({"candidates": [{"x": 1}, 3]}, r"`candidates\[1\]` = 3 must be a dict"),
    ({"sleep_between_evals": -0.5}, r"`sleep_between_evals` = -0.5 must be seconds >= 0"),
    ({"sleep_between_evals": "1"}, r"`sleep_between_evals` = '1'"),
    ({"sleep_between_evals": math.inf}, r"`sleep_between_evals` = inf"),
    ({"scheduler": "tcp://127.0.0.1:8786"}, r"`scheduler` = 'tcp://127.0.0.1:8786' is only used by backend='dask'"),
    ({"backend": "dask", "scheduler": 42}, r"`scheduler` = 42 must be a distributed.Client"),
])
def test_bad_input_is_named(kwargs, fragment):
    args = {"fn": zero, "candidates": [{"x": 1}, {"x": 2}], "context": None, "progress": False, **kwargs}
    with pytest.raises(ConfigError, match=fragment) as info:
        fitness_map(**args)
    assert isinstance(info.value, ValueError)


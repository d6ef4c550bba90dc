"""The fitness map: ``fn(candidate, context)`` for many candidates, serially, on a forked
process pool, or on a dask.distributed cluster.

The pool is forked once per map *after* ``(fn, context)`` is put in a module global: workers
inherit the context (a panel of hundreds of MB) copy-on-write, tasks carry only candidate
dicts, and neither `fn` nor `context` is ever pickled. The first candidate is evaluated in
the parent before the fork, so numba kernels are compiled or loaded once and inherited.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import numbers
import os
import pickle
import signal
import socket
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pitools.errors import ConfigError, did_you_mean
from pitools.memory import PeakSampler
from pitools.progress import reporter

__all__ = ["fitness_map", "FitnessResult", "BACKENDS"]

BACKENDS = ("process", "serial", "dask")
_JOB = None  # (fn, context, sleep_s) of the running process map: what forked workers inherit
_JOB_LOCK = threading.RLock()  # process maps of one process share _JOB: one at a time
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class FitnessResult:
    """What :func:`fitness_map` returns; behaves like the array of its fitnesses.

    Attributes
    ----------
    values : numpy.ndarray
        float64 in candidate order; ``-inf`` where the candidate failed.
    details : list
        The dict `fn` returned beside the fitness, or None, per candidate.
    errors : dict
        ``{index: "ExceptionType: message (at file.py:12 in fn)"}`` of the failed candidates.
    elapsed_s, peak_pss_bytes : float, int
        Wall-clock seconds of the whole map (pool start and stop included); the peak PSS
        summed over the parent and its workers on this machine, sampled every 0.2 s.
    n_workers, backend : int, str
        Workers that evaluated (1 for serial) and the backend that ran.
    """

    __slots__ = ("values", "details", "errors", "elapsed_s", "peak_pss_bytes", "n_workers", "backend",
                 "_tick", "_done")

    def __init__(self, n: int, backend: str, tick=None):
        """Every candidate failed until its chunk comes in (`tick(done, n)`: progress)."""
        self.values, self.details, self.errors = np.full(n, -math.inf), [None] * n, {}
        self.elapsed_s, self.peak_pss_bytes, self.n_workers, self.backend = 0.0, 0, 1, backend
        self._tick, self._done = tick, 0

    def _add(self, start: int, values: list, details: list, errors: dict) -> None:
        self.values[start:start + len(values)] = values
        self.details[start:start + len(values)] = details
        self.errors.update(errors)
        self._done += len(values)
        if self._tick:
            self._tick(self._done, len(self.values))

    def _lost(self, start: int, n: int, why: str) -> None:
        self._add(start, [-math.inf] * n, [None] * n, {start + k: why for k in range(n)})

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self):
        return iter(self.values)

    def __getitem__(self, i):
        return self.values[i]

    def __array__(self, dtype=None, copy=None):
        arr = self.values if dtype is None else self.values.astype(dtype)
        return arr.copy() if copy else arr

    def __repr__(self) -> str:
        ok = self.values[np.isfinite(self.values)]
        best = f"{ok.max():.4g}" if ok.size else None
        return (f"FitnessResult(n={len(self)}, failed={len(self.errors)}, best={best}, backend={self.backend!r}, "
                f"n_workers={self.n_workers}, elapsed_s={self.elapsed_s:.2f}, "
                f"peak_pss={self.peak_pss_bytes / 2**20:.1f} MB)")


def _error_text(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in traceback.format_exception_only(type(exc), exc))
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        text += f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})"
    return text


def _evaluate(fn, candidate, context) -> tuple[float, dict | None, str | None]:
    """(value, details, error) of one candidate; never raises an Exception."""
    try:
        out = fn(candidate, context)
    except Exception as exc:  # a bad candidate must not stop the map
        return -math.inf, None, _error_text(exc)
    details = None
    if isinstance(out, tuple) and len(out) == 2:
        out, details = out
        if details is not None:
            try:  # a pool or a cluster must send them back: the same check in every backend
                details = dict(details)
                pickle.dumps(details)
            except Exception as exc:
                return -math.inf, None, f"TypeError: fn returned details that are not a picklable dict ({exc})"
    if isinstance(out, bool) or not isinstance(out, numbers.Real):
        return -math.inf, details, f"TypeError: fn returned {out!r:.80}; expected a float or (float, dict)"
    if not math.isfinite(out):
        return -math.inf, details, f"ValueError: fn returned a non-finite fitness {float(out)!r}"
    return float(out), details, None


def _run_chunk(job: tuple, start: int, chunk: list) -> tuple[int, list, list, dict]:
    """Evaluate `chunk` (candidates `start`, `start` + 1, …) with ``job = (fn, context, sleep_s)``;
    the task of every backend (dask passes `job` as a scattered future)."""
    fn, context, sleep_s = job
    values, details, errors = [], [], {}
    for k, candidate in enumerate(chunk):
        value, det, err = _evaluate(fn, candidate, context)
        values.append(value)
        details.append(det)
        if err is not None:
            errors[start + k] = err
        if sleep_s:
            time.sleep(sleep_s)  # thermal throttle on the Pi: let the SoC cool between evaluations
    return start, values, details, errors


def _worker_init() -> None:
    # Ctrl-C reaches the whole foreground process group: only the parent should react. The
    # parent's SIGTERM handler (inherited) would make pool.terminate() raise, not kill.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by the parent while forking


def _worker_chunk(task: tuple[int, list]):
    """Pool task: one chunk, with the job inherited at fork time (never pickled)."""
    return _run_chunk(_JOB, *task)


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises in the main thread meanwhile, so the pool is terminated, not orphaned;
    the old handler is restored afterwards (and called, if it is a function)."""
    old = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or old in (signal.SIG_IGN, None):
        yield  # handlers belong to the main thread; whoever ignores SIGTERM keeps doing so
        return

    fired = []

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, lambda *_: None)  # a second SIGTERM must not cut the cleanup short
        fired.append(signum)
        raise SystemExit(128 + signum)  # unwinds through the pool's cleanup; exit status 143

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except SystemExit:
        if fired and callable(old):
            old(signal.SIGTERM, None)  # the caller's own handler still hears of it
        raise
    finally:
        signal.signal(signal.SIGTERM, old)


def _process_map(out: FitnessResult, job, cands, n_workers, chunksize, sampler) -> int:
    """Warm up in the parent, fork the pool, gather chunks as they finish; returns workers used."""
    global _JOB
    out._add(*_run_chunk(job, 0, cands[:1]))  # numba compiles here, once, before the fork
    n_workers = min(n_workers, len(cands) - 1)
    size = chunksize or math.ceil((len(cands) - 1) / (n_workers * 4))  # ~4 chunks a worker: balance vs IPC
    tasks = [(s, cands[s:s + size]) for s in range(1, len(cands), size)]
    pending, failures = {s: len(chunk) for s, chunk in tasks}, []
    with _JOB_LOCK, _sigterm_raises():
        previous, _JOB = _JOB, job
        pool = None
        try:
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # not halfway through forking
            try:
                pool = mp.get_context("fork").Pool(n_workers, initializer=_worker_init)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a signal that came meanwhile lands now
            procs = list(pool._pool)  # the original workers: any exit means a lost chunk
            sampler.pids[:] = [p.pid for p in procs]
            sampler.start()  # only now: no thread of ours runs while forking
            results = pool.imap_unordered(_worker_chunk, tasks)
            while len(pending) > len(failures):
                try:
                    start, values, details, errors = results.next(timeout=0.25)
                except mp.TimeoutError:  # a killed worker's task never comes back: Pool would wait forever
                    dead = next((p for p in procs if p.exitcode is not None), None)
                    if dead is None:
                        continue
                    failures = [f"WorkerLost: worker process {dead.pid} ended with exit code {dead.exitcode} (-9: "
                                "killed, on a Pi most likely by the out-of-memory killer); its chunk was lost and "
                                "the map stopped"]
                    break
                except Exception as exc:  # a chunk whose candidates or results could not be pickled
                    failures.append(f"chunk lost: {_error_text(exc)}")
                    continue
                out._add(start, values, details, errors)
                del pending[start]
            if not sampler.taken:  # a map shorter than one period: catch the workers at least once
                sampler.sample()
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
            _JOB = previous
    for start, n in pending.items():
        out._lost(start, n, failures[0])
    return n_workers


def _dask_map(out: FitnessResult, job, cands, n_workers, chunksize, scheduler, sampler) -> int:
    """Scatter (fn, context) to every worker once, submit chunks, gather as they finish."""
    from distributed import Client, as_completed, default_client

    allowed = "a distributed.Client, a scheduler address such as 'tcp://pi.local:8786', or None (the default client)"
    if scheduler is not None and not isinstance(scheduler, (str, Client)):
        raise ConfigError(f"`scheduler` = {scheduler!r:.80} must be {allowed}")
    own = isinstance(scheduler, str)  # a client opened here is closed here
    try:
        client = Client(scheduler, timeout=15) if own else scheduler if scheduler is not None else default_client()
    except ValueError:  # from default_client()
        raise ConfigError("`scheduler` = None but there is no default dask client: pass scheduler=distributed."
                          "Client(...) or an address such as 'tcp://pi.local:8786', or create a distributed.Client "
                          "first (it becomes the default)") from None
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"`scheduler` = {scheduler!r}: no dask scheduler answers there ({exc}). Start one "
                          "(`dask scheduler`) or pass another address or a distributed.Client") from None
    futures, shared = {}, []
    try:
        threads = sum(client.nthreads().values())
        if not threads:
            raise ConfigError(f"`scheduler` = {scheduler!r:.80}: the dask cluster has no workers")
        n_workers = n_workers or threads
        hosts, pids = client.run(socket.gethostname), client.run(os.getpid)  # workers on this machine count
        sampler.pids[:] = [pids[w] for w, host in hosts.items() if host == socket.gethostname()]
        sampler.start()
        size = chunksize or math.ceil(len(cands) / (n_workers * 4))
        shared = client.scatter([job], broadcast=True, hash=False)  # in a list: one future, not one per item
        for s in range(0, len(cands), size):
            futures[client.submit(_run_chunk, shared[0], s, cands[s:s + size], pure=False)] = s
        for fut in as_completed(futures):
            start = futures[fut]
            try:
                out._add(*fut.result())
            except Exception as exc:  # a lost worker or unpicklable data: the chunk fails, not the map
                out._lost(start, len(cands[start:start + size]), f"chunk lost: {_error_text(exc)}")
    finally:
        if futures or shared:
            client.cancel([*futures, *shared])
        if own:
            client.close()
    return n_workers


def _check(fn, candidates, n_workers, backend, chunksize, sleep_s, scheduler) -> list[dict]:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ConfigError(f"`backend` = {backend!r} is not a fitness-map backend.{did_you_mean(str(backend), BACKENDS)}"
                          f" Allowed: {', '.join(map(repr, BACKENDS))}")
    if not callable(fn):
        raise ConfigError(f"`fn` = {fn!r:.80} is not callable: pass fn(candidate: dict, context) -> float")
    if isinstance(candidates, (str, bytes, Mapping)) or not isinstance(candidates, Sequence):
        raise ConfigError(f"`candidates` = {candidates!r:.80} must be a list (or tuple) of dicts, one per candidate")
    for i in (i for i, c in enumerate(candidates) if not isinstance(c, Mapping)):
        raise ConfigError(f"`candidates[{i}]` = {candidates[i]!r:.80} must be a dict of parameters")
    for name, value in (("n_workers", n_workers), ("chunksize", chunksize)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ConfigError(f"`{name}` = {value!r} must be an integer >= 1, or None for the default")
    if isinstance(sleep_s, bool) or not isinstance(sleep_s, numbers.Real) or not 0 <= sleep_s < math.inf:
        raise ConfigError(f"`sleep_between_evals` = {sleep_s!r} must be seconds >= 0 (0: no pause)")
    if scheduler is not None and backend != "dask":
        raise ConfigError(f"`scheduler` = {scheduler!r:.80} is only used by backend='dask' (`backend` = "
                          f"{backend!r}): pass backend='dask' or leave `scheduler` out")
    return [c if type(c) is dict else dict(c) for c in candidates]


def fitness_map(fn, candidates, context, n_workers=None, backend="process", *, chunksize=None,
                sleep_between_evals=0.0, progress=True, desc="fitness", scheduler=None) -> FitnessResult:
    """Evaluate ``fn(candidate, context)`` for every candidate; fitnesses in candidate order.

    Parameters
    ----------
    fn : callable
        ``fn(candidate: dict, context) -> float`` or ``-> (float, dict)`` (a fitness and
        picklable details). Module-level for dask; any callable for the process pool.
    candidates : sequence of dict
        One parameter dict per candidate.
    context : object
        Shared by all evaluations (a panel, settings). Forked workers inherit it (never
        pickled); dask scatters it once.
    n_workers : int, optional
        Worker processes, default the CPUs this process may use (for dask: the chunking
        target, default the cluster's threads). ``1`` with ``"process"`` runs serially.
    backend : {"process", "serial", "dask"}
        A fork pool made for this map, a loop in this process, or a dask.distributed cluster.
    chunksize : int, optional
        Candidates per task; default ``ceil(n / (n_workers * 4))``.
    sleep_between_evals : float
        Seconds of pause after each evaluation, in every backend (a thermal throttle).
    progress, desc : bool, str
        Report progress as chunks complete (:func:`pitools.progress.reporter`), labelled `desc`.
    scheduler : distributed.Client or str, optional
        For ``"dask"``: a client, a scheduler address, or None for the default client.

    Returns
    -------
    FitnessResult
        ``-inf`` where a candidate raised or returned a non-finite or non-number fitness,
        the reason in ``.errors[index]``; the map goes on. Bad arguments raise ConfigError.

    Examples
    --------
    >>> import pitools as pt
    >>> def score(candidate, context):
    ...     return -(candidate["x"] - context) ** 2
    >>> res = pt.fitness_map(score, [{"x": x} for x in range(5)], 2, n_workers=2, progress=False)
    >>> res.values.tolist(), res.backend
    ([-4.0, -1.0, 0.0, -1.0, -4.0], 'process')
    """
    cands = _check(fn, candidates, n_workers, backend, chunksize, sleep_between_evals, scheduler)
    t0, job = time.perf_counter(), (fn, context, float(sleep_between_evals))
    out = FitnessResult(len(cands), backend, reporter(desc, unit="eval") if progress and cands else None)
    sampler = PeakSampler([])  # PSS of this process + the workers (pids filled in once forked)
    workers = n_workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    if backend == "process" and (workers == 1 or len(cands) <= 1):
        backend = "serial"  # nothing to run in parallel: no pool to fork
    try:
        if backend == "process":
            used = _process_map(out, job, cands, workers, chunksize, sampler)
        elif backend == "dask" and cands:
            used = _dask_map(out, job, cands, n_workers, chunksize, scheduler, sampler)
        else:
            sampler.start()
            used = 1
            for i, candidate in enumerate(cands if backend == "serial" else ()):
                out._add(*_run_chunk(job, i, [candidate]))
    finally:
        peak = sampler.stop()
    out.errors, out._tick = dict(sorted(out.errors.items())), None
    out.elapsed_s, out.peak_pss_bytes, out.n_workers, out.backend = time.perf_counter() - t0, peak, used, backend
    return out

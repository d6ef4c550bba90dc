"""The run: checks before anything is written, the locks, the notebooks in order, and the closing steps."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from pitools.box.nightly.execute import _ipc_kernel_manager, _run_notebook, _socket_dir
from pitools.box.nightly.lock import OUTPUTS_LOCK, _nightly_lock
from pitools.box.nightly.notebooks import NotebookSpec, _check_parameters, load_nightly
from pitools.box.nightly.record import RunRecord, _describe, _mark_interrupted, _now, _run_dir, _versions
from pitools.box.nightly.retention import _retention
from pitools.box.nightly.space import RESERVE_NAME, _release_space, _reserve_space
from pitools.box.nightly.watch import _stop_leftovers
from pitools.box.reports import LOG_NAME, RUN_FILE, plotly_asset, write_index
from pitools.config import Profile, project_root
from pitools.data.freshness import resolve_night
from pitools.errors import ConfigError, NightlyError
from pitools.locks import NIGHTLY_PID_ENV
from pitools.box.kernel_quiet import quiet_shutdown
from pitools.box.kernelspec import ensure_kernel
from pitools.data import Store
from pitools.kernels import cache_dir
from pitools.market.db import open_trades_db

log = logging.getLogger("pitools.box.nightly")  # one logger name for the whole runner (nightly.log lines)


def _check_outputs(outputs: Path) -> None:
    """The outputs folder must be a folder we can write: found out before anything runs."""
    probe = outputs
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"`--outputs` = {str(outputs)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"`--outputs` = {str(outputs)!r}: {str(probe)!r} is not writable by this user")


def _check_data_dir(data_dir: Path) -> None:
    """The data folder takes the run's lock, trades.db and the optimizer state: one this
    process cannot write (a read-only mount, another user's folder) is bad input, found
    before anything is written. A real probe — an unnamed temporary file, gone at once —
    rather than os.access, which cannot see an immutable folder or a server's refusal."""
    fix = "choose another with --set data_dir=PATH"
    probe = data_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"data folder {str(data_dir)!r} cannot be made: {str(probe)!r} is a file, "
                          f"not a folder; {fix}")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        what = (f"data folder {str(data_dir)!r} is not writable" if probe == data_dir else
                f"data folder {str(data_dir)!r} cannot be made: {str(probe)!r} is not writable")
        raise ConfigError(f"{what} ({exc.strerror or exc}); {fix}") from None


class _RunLog(logging.FileHandler):
    """``<run>/nightly.log``. A line it cannot write (a full disk) is said once on stderr, in
    one line — not logging's traceback for every record — and later lines still try: the
    space the run set aside comes back before its last lines."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._told = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self._told:
            self._told = True
            sys.stderr.write(f"pitools nightly: cannot write {self.baseFilename!r} ({_describe(sys.exc_info()[1])}); "
                             "lines of this run may be missing from it\n")


def _papermill_log(run_dir: Path) -> logging.Handler:
    """Cell output and our own lines go to ``<run>/nightly.log``; papermill's cell echo stays
    out of the journal (the log file and the HTML have it)."""
    handler = _RunLog(run_dir / LOG_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    pm_log = logging.getLogger("papermill")
    pm_log.setLevel(logging.INFO)
    pm_log.propagate = False
    for name in ("papermill", "pitools"):
        logging.getLogger(name).addHandler(handler)
    return handler


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """systemd stops a unit with SIGTERM: unwind like Ctrl-C, so the record says so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_nightly(profile: Profile, night=None, store=None, outputs=None, overrides=(), notebooks=None,
                root: Path | None = None) -> RunRecord:
    """Run the nightly notebook list for `profile`; returns the run record.

    Parameters
    ----------
    profile : Profile
        The run profile (``overrides`` are the ``--set`` strings it was built with; they are
        passed on to the notebooks).
    night : str, optional
        ``YYYY-MM-DD``; default: the last closed NYSE session.
    store, outputs : path, optional
        Default: the profile's store and ``<project>/outputs``.
    notebooks : path, optional
        Another notebook list than ``params/nightly.yaml``.
    """

    root = root or project_root()
    specs = load_nightly(notebooks, root)
    _check_parameters(specs)
    store_dir = Path(store) if store is not None else profile.store_dir
    Store.open(store_dir)  # a missing or damaged store is bad input: nothing is written yet
    night = str(resolve_night(night).date())  # a future or closed day is bad input: nothing written yet
    outputs = Path(outputs) if outputs is not None else root / "outputs"
    _check_outputs(outputs)
    _check_data_dir(profile.data_dir)

    lock_info = {"pid": os.getpid(), "started": _now(), "profile": profile.name, "night": night}
    with _nightly_lock(profile.data_dir, lock_info), _nightly_lock(outputs, lock_info, OUTPUTS_LOCK), \
            _sigterm_as_interrupt():
        os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir()))
        os.environ.setdefault("PITOOLS_HOME", str(root))
        kernel = ensure_kernel()
        os.environ[NIGHTLY_PID_ENV] = str(os.getpid())  # the kernels' locks name this runner
        _mark_interrupted(outputs, profile.db_path)
        _stop_leftovers(profile.data_dir)
        run_id = _start_db_run(profile.db_path, night, profile.name)
        run_dir = _run_dir(outputs, night)
        base = {"profile": profile.name, "overrides": list(overrides), "night": night, "store": str(store_dir),
                "run_dir": str(run_dir), "run_id": run_id}
        rec = _new_record(profile, specs, base, overrides)
        t0 = time.perf_counter()
        deadline = t0 + 60.0 * profile.nightly_timeout_min  # the whole run's limit, systemd or not
        handler = sock_dir = None
        try:  # from here on the trades.db row exists: whatever happens, _close_run finishes it
            run_dir.mkdir(parents=True)
            handler = _papermill_log(run_dir)
            _reserve_space(run_dir)
            sock_dir = _socket_dir(profile.data_dir)
            kernel_manager = quiet_shutdown(_ipc_kernel_manager(sock_dir))  # no SIGINT before shutdown
            plotly_src = "../" + plotly_asset(outputs)
            _save_progress(rec, outputs)
            log.info("nightly %s: %d notebooks, profile %s, outputs %s", night, len(specs), profile.name, run_dir)

            def run_one(spec: NotebookSpec, left_s: float) -> dict:
                return _run_notebook(spec, {**base, **spec.parameters}, run_dir, kernel, root,
                                     min(float(spec.timeout_s or profile.notebook_timeout_s), left_s), plotly_src,
                                     kernel_manager)

            _run_notebooks(rec, specs, outputs, deadline, profile.nightly_timeout_min, run_one)
        except BaseException as exc:
            _stopped(rec, exc, outputs)
            if isinstance(exc, OSError):  # a full disk, a folder gone read-only: one line, the record says it too
                raise NightlyError(f"nightly {night} stopped: {rec.error}") from None
            raise
        finally:
            _end_run(rec, time.perf_counter() - t0, outputs, profile, handler, sock_dir)
    return rec


def _new_record(profile: Profile, specs: list[NotebookSpec], base: dict, overrides) -> RunRecord:
    """The run's record before its first notebook: every notebook pending."""
    return RunRecord(night=base["night"], profile=profile.name, run_dir=Path(base["run_dir"]), started_at=_now(),
                     parameters={"profile_values": {k: str(v) for k, v in dataclasses.asdict(profile).items()},
                                 **base},
                     overrides=list(overrides), versions=_versions(), run_id=base["run_id"],
                     notebooks=[{"name": s.name, "status": "pending", "needs": list(s.needs)} for s in specs])


def _end_run(rec: RunRecord, took_s: float, outputs: Path, profile: Profile, handler, sock_dir: Path | None) -> None:
    """Whatever ended the run: its record, trades.db row, index and retention closed
    (:func:`_close_run`), the log handler detached, the kernels' socket folder removed."""
    rec.duration_s = round(took_s, 3)
    rec.finished_at = _now()
    _close_run(rec, outputs, profile.db_path, profile.keep_nights)
    _detach_log(handler)
    if sock_dir is not None:
        shutil.rmtree(sock_dir, ignore_errors=True)


def _start_db_run(db_path: Path, night: str, profile: str) -> int:
    """The run's trades.db row, taken before anything is written under outputs/. A database
    another process holds past the busy timeout (DatabaseLocked, exit 1), or one on a full or
    read-only disk, refuses the night with nothing to undo: no run folder, no notebook marked
    skipped, the index as it was (under systemd the OnFailure hook adds the refusal to it), and
    a retry lands in ``outputs/<night>/``, not ``<night>.2``."""

    with open_trades_db(db_path) as db:
        return db.start_run(night, profile)


def _run_notebooks(rec: RunRecord, specs: list[NotebookSpec], outputs: Path, deadline: float, limit_min: int,
                   run_one) -> None:
    """Each notebook in order (``run_one(spec, seconds_left)``); one whose `needs` did not
    succeed, or that the run's wall-clock limit leaves no time for, is skipped. run.json and
    the live index follow every step."""
    done: dict[str, str] = {}
    for i, spec in enumerate(specs):
        blocked = [n for n in spec.needs if done.get(n) != "ok"]
        left_s = deadline - time.perf_counter()
        if left_s < 1.0:
            rec.notebooks[i] = {**rec.notebooks[i], "status": "skipped",
                                "error": f"skipped: the run's wall-clock limit of {limit_min} min "
                                         "(nightly_timeout_min) was reached"}
            done[spec.name] = "skipped"
            log.warning("%s: skipped (the run's wall-clock limit was reached)", spec.name)
        elif blocked:
            rec.notebooks[i] = {**rec.notebooks[i], "status": "skipped",
                                "error": f"skipped: needs {', '.join(blocked)}, which did not succeed"}
            done[spec.name] = "skipped"
            log.warning("%s: skipped (needs %s)", spec.name, ", ".join(blocked))
        else:
            rec.notebooks[i] = {**rec.notebooks[i], "status": "running", "started_at": _now()}
            _save_progress(rec, outputs)
            log.info("%s: running", spec.name)
            result = run_one(spec, left_s)
            rec.notebooks[i] = {**rec.notebooks[i], **result}
            done[spec.name] = result["status"]
            rec.peak_pss_bytes = max(rec.peak_pss_bytes, result["peak_pss_bytes"])
            rec.peak_rss_bytes = max(rec.peak_rss_bytes, result["peak_rss_bytes"])
            log.info("%s: %s in %.1f s%s", spec.name, result["status"], result["duration_s"],
                     f" — {result['error']}" if result.get("error") else "")
        _save_progress(rec, outputs)
    rec.status = "ok" if all(v == "ok" for v in done.values()) else "failed"


def _stopped(rec: RunRecord, exc: BaseException, outputs: Path) -> None:
    """The record of a run cut short: `interrupted` (Ctrl-C, SIGTERM) or `failed`, with why;
    the notebook that was running is `interrupted`, those not started are `skipped`."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    rec.status = "interrupted" if interrupted else "failed"
    rec.error = f"interrupted ({exc or 'Ctrl-C'})" if interrupted else _describe(exc, where=outputs)
    for nb in rec.notebooks:
        if nb["status"] in ("pending", "running"):
            nb["status"] = "interrupted" if nb["status"] == "running" else "skipped"


def _attempt(what: str, step, level: int = logging.ERROR) -> str | None:
    """Run one step of the run's bookkeeping; its failure comes back as one line (and is
    logged), never raised, so the steps after it still run."""
    try:
        step()
    except Exception as exc:
        problem = f"{what}: {_describe(exc)}"
        log.log(level, "%s", problem)
        return problem
    return None


def _save_progress(rec: RunRecord, outputs: Path) -> None:
    """run.json and the live index during the run. A failure (a full disk) is logged, not
    raised: the notebooks go on, and the run's end writes both again with the truth."""
    _attempt(f"run record {str(rec.run_dir / RUN_FILE)!r}", rec.save, logging.WARNING)
    _attempt(f"index {str(outputs / 'index.html')!r}", lambda: write_index(outputs, live=True), logging.WARNING)


def _finish_db_run(db_path: Path, rec: RunRecord) -> None:
    if rec.run_id is None:
        return
    with open_trades_db(db_path) as db:
        db.finish_run(rec.run_id, "ok" if rec.status == "ok" else "failed", rec.duration_s, rec.peak_pss_bytes,
                      {"run_dir": str(rec.run_dir), "status": rec.status, "error": rec.error,
                       "notebooks": {n["name"]: n["status"] for n in rec.notebooks}})


def _close_run(rec: RunRecord, outputs: Path, db_path: Path, keep_nights: int) -> None:
    """The end of a run: run.json, the trades.db row, the index — each its own step.

    One that fails does not skip the others: it makes the run `failed` with the step and
    the file named, and then every step writes again, so those that had already written the
    old status carry the final one (and a step that failed gets a second try: space may be back).
    Retention is housekeeping: old nights it cannot delete are a warning, not a failed run.
    """
    # first: the space set aside is for these writes
    _attempt(f"space reserve {str(rec.run_dir / RESERVE_NAME)!r}", lambda: _release_space(rec.run_dir),
             logging.WARNING)
    _attempt("retention", lambda: _retention(outputs, keep_nights, rec.run_dir), logging.WARNING)
    steps = [(f"run record {str(rec.run_dir / RUN_FILE)!r}", rec.save),
             (f"the trades.db row of run {rec.run_id} ({str(db_path)!r})", lambda: _finish_db_run(db_path, rec)),
             (f"index {str(outputs / 'index.html')!r}", lambda: write_index(outputs, live=False))]
    log.info("nightly %s: %s in %.1f s", rec.night, rec.status, rec.duration_s)  # before the index: its log view
    problems = [p for what, step in steps if (p := _attempt(what, step))]
    if problems:
        rec.status = "failed"
        rec.error = "; ".join([*([rec.error] if rec.error else []), *problems])[:1000]
        log.error("nightly %s: failed — %s", rec.night, rec.error)
        for what, step in steps:
            _attempt(what, step)


def _detach_log(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    for name in ("papermill", "pitools"):
        logging.getLogger(name).removeHandler(handler)
    with contextlib.suppress(OSError):  # its last flush may meet a full disk; stderr has said so
        handler.close()

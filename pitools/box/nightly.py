"""The nightly run: papermill executes the notebook list of ``params/nightly.yaml``.

Each notebook runs on the ``pitools`` kernel (this environment's interpreter) with the
project root as its working directory, the profile's parameters and a wall-clock limit.
It lands as ``outputs/<night>/NN_name.ipynb`` plus a code-hidden ``.html``; ``run.json``
beside them records status, timings, peak memory (PSS of the kernel and its pool
workers, sampled from /proc — never virtual size), versions and parameters, and is
rewritten after every notebook so ``outputs/index.html`` can show a run in progress.

Everything that can be checked is checked before anything is written under outputs/:
the profile, the list, every notebook's parameters (an unknown one is an error, not
papermill's warning), the store. A lock in the data directory keeps two runs from
overlapping. A failing notebook keeps its output and HTML with the error visible; the
notebooks that need it are skipped and the run exits 1. A later run of the same night
goes to ``outputs/<night>.2/`` (…), so an interrupted or failed rerun never damages an
earlier one.

The machine letting the run down is a one-line error, and the records stay true: a
read-only data folder is bad input (exit 2) found before anything is written; trades.db held
by another process past its busy timeout refuses the night before its run folder exists
(exit 1); a disk that fills up mid-run fails the notebook it cut short (its output named as
truncated), and the space set aside at the start is given back so that run.json, the
trades.db row and the index — each its own step — still say `failed`, not `running`.

>>> from pitools.config import load_profile
>>> run = run_nightly(load_profile("demo"))     # doctest: +SKIP
>>> run.status, run.run_dir                       # doctest: +SKIP
('ok', PosixPath('outputs/2026-11-20'))
"""

from __future__ import annotations

import contextlib
import datetime as dt
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


from pitools.config import Profile, project_root
from pitools.data.freshness import resolve_night
from pitools.errors import ConfigError, NightlyError, NightlyLocked, PitoolsError, did_you_mean
from pitools.locks import NIGHTLY_PID_ENV, LockHeld, exclusive_lock, read_holder
from pitools.box.reports import LOG_NAME, RUN_FILE, export_html, plotly_asset, read_runs, write_index, write_public

__all__ = ["NightlyError", "NightlyLocked", "NotebookSpec", "RunRecord", "load_nightly", "run_nightly",
           "mark_failed", "STANDARD_PARAMETERS"]

log = logging.getLogger("pitools.box.nightly")

NIGHTLY_FILE = Path("params") / "nightly.yaml"
# What every notebook of the list receives (notebooks/README.md).
STANDARD_PARAMETERS = ("profile", "overrides", "night", "store", "run_dir", "run_id")
_NAME_RE = re.compile(r"^[0-9]{2}_[A-Za-z0-9_]+$")
_ENTRY_KEYS = {"name", "path", "needs", "parameters", "timeout_s"}
_SAMPLE_S = 0.25


@dataclass(frozen=True)
class NotebookSpec:
    """One entry of ``params/nightly.yaml``."""

    name: str
    path: Path
    needs: tuple[str, ...] = ()
    parameters: dict = field(default_factory=dict)
    timeout_s: int | None = None


# ---------------------------------------------------------------- the list

def load_nightly(path: str | Path | None = None, root: Path | None = None) -> list[NotebookSpec]:
    """Read and check the notebook list (default ``params/nightly.yaml``)."""
    from pitools.params_yaml import load_params_yaml, short_repr

    root = root or project_root()
    file = Path(path) if path is not None else root / NIGHTLY_FILE
    if not file.is_file():
        raise ConfigError(f"notebook list {str(file)!r} does not exist")
    raw = load_params_yaml(file)
    entries = raw.get("notebooks") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        got = short_repr(raw.get("notebooks") if isinstance(raw, dict) else raw)
        raise ConfigError(f"{str(file)!r} must hold `notebooks:`, a list of entries like "
                          f"{{name: 01_data, needs: []}}, got {got}")
    unknown = [k for k in raw if k != "notebooks"]
    if unknown:
        raise ConfigError(f"{file.name}: unknown top-level key {short_repr(unknown[0])}; "
                          "the file holds only `notebooks:`")
    specs: list[NotebookSpec] = []
    for i, entry in enumerate(entries):
        where = f"{file.name}: notebook {i + 1}"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a name or a mapping with `name`, got {short_repr(entry)}")
        unknown = sorted(set(entry) - _ENTRY_KEYS, key=str)  # key=str: YAML keys may be numbers
        if unknown:
            key = unknown[0]
            raise ConfigError(f"{where}: unknown key {short_repr(key)}.{did_you_mean(str(key), _ENTRY_KEYS)} "
                              f"Allowed: {', '.join(sorted(_ENTRY_KEYS))}")
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"{where}: `name` = {short_repr(name)} must look like NN_name (two digits, an "
                              "underscore, letters/digits), e.g. '03_research'")
        where = f"{file.name}: notebook {name!r}"
        if any(s.name == name for s in specs):
            raise ConfigError(f"{where} is listed twice")
        specs.append(_entry(where, name, entry, specs, root))
    return specs


def _entry(where: str, name: str, entry: dict, earlier: list[NotebookSpec], root: Path) -> NotebookSpec:
    """One checked entry of the list; `earlier`: the entries before it."""
    from pitools.params_yaml import short_repr

    raw_path = entry.get("path")
    if raw_path is not None and (not isinstance(raw_path, str) or not raw_path.strip()):
        raise ConfigError(f"{where}: `path` = {short_repr(raw_path)} must be a notebook path, "
                          f"e.g. notebooks/{name}.ipynb")
    nb_path = Path(raw_path or Path("notebooks") / f"{name}.ipynb")
    nb_path = nb_path if nb_path.is_absolute() else root / nb_path
    if not nb_path.is_file():
        raise ConfigError(f"{where}: `path` = {short_repr(str(nb_path), 400)} does not exist")
    # `or` would let `needs: 0` or `parameters: ""` pass as empty: only absent/null is
    needs = entry.get("needs")
    needs = [] if needs is None else needs
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        raise ConfigError(f"{where}: `needs` = {short_repr(needs)} must be a list of earlier notebook names, "
                          "e.g. [01_data]")
    names = [s.name for s in earlier]
    for n in needs:
        if n not in names:
            raise ConfigError(f"{where}: `needs` names {short_repr(n)}, which is not an earlier notebook of the "
                              f"list.{did_you_mean(n, names)} Earlier: {', '.join(names) or 'none'}")
    params = entry.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: `parameters` = {short_repr(params)} must be a mapping of name: value")
    for key in params:
        if not isinstance(key, str) or not key.isidentifier():  # papermill sets them as variables
            raise ConfigError(f"{where}: `parameters` key {short_repr(key)} must be a Python name "
                              "(letters, digits, '_'), like the variables of the notebook's `parameters` cell")
    clash = sorted(set(params) & set(STANDARD_PARAMETERS))
    if clash:
        raise ConfigError(f"{where}: `parameters` sets {clash[0]!r}, which the runner sets for every notebook "
                          f"({', '.join(STANDARD_PARAMETERS)})")
    timeout = entry.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1):
        raise ConfigError(f"{where}: `timeout_s` = {short_repr(timeout)} must be a whole number of seconds >= 1")
    return NotebookSpec(name, nb_path, tuple(needs), dict(params), timeout)


def _check_parameters(specs: list[NotebookSpec]) -> None:
    """Every parameter the runner passes must exist in the notebook's `parameters` cell."""
    from pitools.box.kernel_quiet import inspect_parameters

    for spec in specs:
        try:
            declared = inspect_parameters(spec.path)  # without papermill's "Input Notebook" INFO line
        except Exception as exc:  # a notebook papermill cannot read is bad input
            raise ConfigError(f"notebook {spec.name!r} ({spec.path}) cannot be read: {exc}") from None
        for name in (*STANDARD_PARAMETERS, *spec.parameters):
            if name not in declared:
                raise ConfigError(
                    f"notebook {spec.name!r}: unknown parameter {name!r}.{did_you_mean(name, declared)} "
                    f"Its `parameters` cell defines: {', '.join(sorted(declared)) or 'nothing'} "
                    f"({spec.path}); add it there or remove it from params/nightly.yaml")


# ---------------------------------------------------------------- memory of the kernel tree

def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # the comm field may hold spaces
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def descendants(pid: int | None = None) -> list[int]:
    """Every process below `pid` (default: this one): the kernel and its pool workers."""
    kids = _children_map()
    out, todo = [], list(kids.get(pid or os.getpid(), []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


class _KernelWatch(threading.Thread):
    """Samples the PSS of everything below this process and enforces the wall-clock limit."""

    def __init__(self, timeout_s: float, ignore: frozenset[int] = frozenset()):
        super().__init__(daemon=True, name="pitools-kernel-watch")
        self.ignore = ignore  # children the caller had before the notebook: not ours to count or kill
        from pitools.memory import pool_pss_bytes, rss_bytes

        self._pss, self._rss = pool_pss_bytes, rss_bytes
        self.timeout_s = timeout_s
        self.peak_pss = 0
        self.peak_rss = 0
        self.timed_out = False
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._halt.wait(_SAMPLE_S):
            pids = [p for p in descendants() if p not in self.ignore]
            self.peak_pss = max(self.peak_pss, self._pss(pids))
            self.peak_rss = max([self.peak_rss, *(r for r in map(self._rss, pids) if r)])
            if time.monotonic() - self._t0 > self.timeout_s and not self.timed_out:
                self.timed_out = True
                log.error("wall-clock limit of %.0f s reached: stopping the kernel", self.timeout_s)
                _kill(pids)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_leftovers(data_dir: Path, wait_s: float = 10.0) -> None:
    """Stop a killed night's kernel that still holds evolve.lock.

    A kernel runs in its own session, so only systemd's cgroup kill reaches it when its
    runner is killed; it may go on evolving and hold the lock. This run holds the nightly
    lock, so a holder that names a runner which is gone is such a leftover: kill it and its
    pool, as the cgroup kill would have, and wait for the lock. A `pitools evolve` a person
    started names no runner and is left alone (03_research will say the lock is held).
    """
    path = data_dir / "evolve.lock"
    holder = read_holder(path)
    runner, pid = holder.get("nightly"), holder.get("pid")
    if not (isinstance(runner, int) and isinstance(pid, int)) or runner == os.getpid() or _alive(runner) \
            or not _alive(pid):
        return
    log.warning("pid %d (evolving for the killed nightly run of pid %d) still holds %s: stopping it", pid, runner, path)
    _kill([*descendants(pid), pid])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with exclusive_lock(path, {"nightly": os.getpid(), "note": "checked free"}, "the killed run's kernel"):
                return
        except LockHeld:
            time.sleep(0.1)


def _kill(pids) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- the lock

OUTPUTS_LOCK = ".nightly.lock"


def _nightly_lock(folder: Path, info: dict, name: str = "nightly.lock"):
    """The run's lock on ``<folder>/<name>`` (:func:`pitools.locks.exclusive_lock`). A run takes
    one in its data directory (trades.db, optimizer state) and one in its outputs folder,
    which profiles with different data directories share."""
    return exclusive_lock(folder / name, info, "another nightly run", error=NightlyLocked,
                          hint="wait for it to finish (`systemctl status pitools-nightly` or "
                               "outputs/index.html shows it)")


# ---------------------------------------------------------------- the run record

@dataclass
class RunRecord:
    """What ``run.json`` holds; rewritten atomically after every notebook."""

    night: str
    profile: str
    run_dir: Path
    started_at: str
    parameters: dict
    overrides: list
    versions: dict
    notebooks: list[dict]
    run_id: int | None = None
    status: str = "running"
    finished_at: str | None = None
    duration_s: float | None = None
    peak_pss_bytes: int = 0
    peak_rss_bytes: int = 0
    pid: int = dataclasses.field(default_factory=os.getpid)
    error: str | None = None  # why the run itself failed or stopped (a notebook's own error is in its entry)

    def save(self) -> None:
        body = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        write_public(self.run_dir / RUN_FILE, json.dumps(body, indent=1, default=str) + "\n")

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "ok" else 1

    def breakdown(self) -> str:
        """A few lines: each notebook's time split into kernel start-up, cells and HTML export."""
        from pitools.memory import format_mb

        lines = [f"nightly {self.night} (profile {self.profile}): {self.status} in {self.duration_s or 0:.1f} s, "
                 f"peak PSS of the kernels {format_mb(self.peak_pss_bytes)} — {self.run_dir}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        for nb in self.notebooks:
            t = nb.get("timings", {})
            split = (f"start-up {t['startup_s']:.1f} s, cells {t['cells_s']:.1f} s, html {t['html_s']:.1f} s"
                     if t else "")
            lines.append(f"  {nb['name']:<14} {nb['status']:<8} {nb.get('duration_s') or 0:6.1f} s  "
                         f"{split:<48} peak {format_mb(nb.get('peak_pss_bytes'))}"
                         + (f"  — {nb['error']}" if nb.get("error") else ""))
        return "\n".join(lines)


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("pitools", "numpy", "pandas", "numba", "pyarrow", "papermill", "nbconvert", "ipykernel", "plotly",
                "nevergrad", "scikit-learn", "hmmlearn", "exchange-calendars"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def _run_dir(outputs: Path, night: str) -> Path:
    """``outputs/<night>``, or ``<night>.2``, ``.3``… when that night already ran."""
    path, n = outputs / night, 1
    while path.exists():
        n += 1
        path = outputs / f"{night}.{n}"
    return path


def _mark_interrupted(outputs: Path, db_path: Path | None = None) -> None:
    """Records still saying 'running' belong to runs that died (the caller holds the outputs
    lock); their trades.db row says so too when `db_path` is the database they wrote."""
    for rec in read_runs(outputs):
        if rec.get("status") == "running":
            path = outputs / rec["dir"] / RUN_FILE
            (outputs / rec["dir"] / RESERVE_NAME).unlink(missing_ok=True)  # the space it had set aside
            rec.pop("dir")
            rec["status"] = "interrupted"
            for nb in rec.get("notebooks", []):
                if nb.get("status") in ("running", "pending"):
                    nb["status"] = "interrupted" if nb["status"] == "running" else "skipped"
            write_public(path, json.dumps(rec, indent=1, default=str) + "\n")
            log.warning("run %s had died mid-way (status running); marked interrupted", path.parent.name)
            if db_path is not None and rec.get("run_id") is not None and db_path.exists():
                from pitools.market.db import open_trades_db

                with contextlib.suppress(Exception), open_trades_db(db_path) as db:
                    if db.run_status(int(rec["run_id"])) == "running":
                        db.finish_run(int(rec["run_id"]), "failed", details={"status": "interrupted"})


def _retention(outputs: Path, keep_nights: int, current: Path) -> list[str]:
    """Delete runs of nights older than the last `keep_nights`; never the newest successful
    run, never the current one, never a folder without a run record."""
    for left in outputs.glob(".trash-*"):  # a deletion cut short last time
        shutil.rmtree(left, ignore_errors=True)
    runs = read_runs(outputs)
    nights = sorted({str(r.get("night")) for r in runs}, reverse=True)[:keep_nights]
    newest_ok = next((r["dir"] for r in runs if r.get("status") == "ok"), None)
    removed = []
    for r in runs:
        if str(r.get("night")) in nights or r["dir"] in (newest_ok, current.name):
            continue
        # one atomic rename takes the run out of the index and the reports; the slow delete
        # after it may be cut short (SIGTERM, kill -9) and is finished by the next run
        trash = outputs / f".trash-{r['dir']}-{os.getpid()}"
        try:
            os.rename(outputs / r["dir"], trash)
        except OSError as exc:
            log.warning("retention: could not remove %s: %s", r["dir"], exc)
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(r["dir"])
    if removed:
        log.info("retention: removed %d old run(s): %s", len(removed), ", ".join(removed))
    return removed


# ---------------------------------------------------------------- one notebook

def _cells_seconds(nb) -> float:
    return sum(float(c.get("metadata", {}).get("papermill", {}).get("duration") or 0) for c in nb.cells)


def _cut(text: str, limit: int = 600) -> str:
    """An error for run.json and the summary line: whole up to `limit`, then marked as cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _error_of(nb) -> str | None:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return _cut(f"{out.get('ename')}: {out.get('evalue')}")
    return None


def _stand_in(spec: NotebookSpec, message: str):
    """The source notebook under a red banner: what the report shows when there is no
    executed notebook to show."""
    import nbformat

    nb = nbformat.read(str(spec.path), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(
        f"<span style=\"color:red;font-size:1.3em\">{message}</span>"))
    return nb


def _read_output(spec: NotebookSpec, out: Path, error: str | None):
    """The executed notebook papermill left at `out`, and None; or a stand-in and the reason
    when there is none (its kernel did not start) or it cannot be read.

    An output that cannot be read is one whose write was cut short — papermill rewrites it in
    place after every cell, so a full disk leaves it truncated. That file is kept as it is
    (what the run left; nothing is gained by overwriting it); the report shows the stand-in.
    """
    import nbformat

    if not out.exists():
        nb = _stand_in(spec, f"**This notebook did not run:** {error or 'unknown error'}")
        try:
            nbformat.write(nb, str(out))  # the ipynb beside the report says why too
        except OSError as exc:
            log.error("%s: could not write %s: %s", spec.name, out, _describe(exc))
        return nb, None
    try:
        return nbformat.read(str(out), as_version=4), None
    except Exception as exc:  # nbformat raises several kinds: NotJSONError, ValidationError, UnicodeDecodeError…
        problem = (f"output notebook {str(out)!r} is truncated or unreadable ({out.stat().st_size:,} bytes that "
                   f"nbformat cannot read: {type(exc).__name__})")
        if error:
            problem += f"; {error}"
        return _stand_in(spec, f"**Failed:** {problem}"), problem[:500]


def _ipc_kernel_manager(sock_dir: Path):
    """A kernel manager whose sockets are files in a private (0700) folder: no TCP port is
    opened for a nightly kernel, and ipykernel has nothing to warn about in the journal."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IpcKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _default_ip(self):
            return str(sock_dir / "kernel")

    return IpcKernelManager


def _run_notebook(spec: NotebookSpec, params: dict, run_dir: Path, kernel: str, cwd: Path, timeout_s: float,
                  plotly_src: str, kernel_manager=None) -> dict:
    import nbformat
    import papermill as pm

    out = run_dir / f"{spec.name}.ipynb"
    rec = {"name": spec.name, "status": "running", "ipynb": out.name, "html": None, "started_at": _now(),
           "parameters": params}
    t0 = time.perf_counter()
    before = frozenset(descendants())  # a caller's own children (a dask cluster, a server) are left alone
    watch = _KernelWatch(timeout_s, before)
    watch.start()
    error = None
    try:
        pm.execute_notebook(str(spec.path), str(out), parameters=params, kernel_name=kernel, cwd=str(cwd),
                            progress_bar=False, log_output=True, request_save_on_cell_execute=True,
                            start_timeout=120, **({"kernel_manager_class": kernel_manager} if kernel_manager else {}))
        status = "ok"
    except pm.PapermillExecutionError as exc:
        status, error = "failed", _cut(f"{exc.ename}: {exc.evalue}")
    except Exception as exc:  # the kernel died (our limit, the OOM killer), never started, or the disk is full
        status, error = "failed", _cut(_describe(exc))
    finally:
        watch.stop()
        _kill([p for p in descendants() if p not in before])  # nothing of this notebook outlives it
    if watch.timed_out:
        status, error = "timeout", f"stopped after the wall-clock limit of {timeout_s:.0f} s"
    ran_s = time.perf_counter() - t0
    nb, unreadable = _read_output(spec, out, error)
    if unreadable:
        status, error = "failed", unreadable
    elif status == "timeout":
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"<span style=\"color:red;font-size:1.3em\">**Stopped:** {error}.</span> "
            "The cells below show how far it got."))
        try:
            nbformat.write(nb, str(out))
        except OSError as exc:  # the report still gets the banner
            log.error("%s: could not write %s: %s", spec.name, out, _describe(exc))
    elif status == "failed":
        error = _error_of(nb) or error  # the cell's own exception says more than papermill's wrapper
    if not out.exists():
        rec["ipynb"] = None
    t1 = time.perf_counter()
    caption = f"{spec.name} · {status} · {ran_s:.1f} s"
    try:
        export_html(out, run_dir / f"{spec.name}.html", plotly_src=plotly_src, caption=caption,
                    failed=status != "ok", notebook=nb)
        rec["html"] = f"{spec.name}.html"
    except Exception as exc:  # the notebook is the record; a report that cannot render must not hide it
        log.error("%s: HTML export to %s failed: %s", spec.name, run_dir / f"{spec.name}.html", _describe(exc))
        if status == "ok":
            status, error = "failed", _cut(f"HTML export failed: {_describe(exc)}")
    html_s = time.perf_counter() - t1
    cells_s = _cells_seconds(nb)
    rec.update({"status": status, "error": error, "duration_s": round(ran_s + html_s, 3),
                "timings": {"startup_s": round(max(ran_s - cells_s, 0.0), 3), "cells_s": round(cells_s, 3),
                            "html_s": round(html_s, 3)},
                "peak_pss_bytes": watch.peak_pss, "peak_rss_bytes": watch.peak_rss})
    return rec


# ---------------------------------------------------------------- the run

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


def _describe(exc: BaseException | None, where: Path | None = None) -> str:
    """One line for an error of a step of the run: a full disk and an unwritable folder say
    so and name the file (or `where`, when the error does not)."""
    if isinstance(exc, OSError):
        name = exc.filename or where
        at = f" ({str(name)!r})" if name else ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"the disk is full{at}: {exc.strerror}; free space there and run again"
        return f"{exc.strerror or exc}{at}"
    if isinstance(exc, PitoolsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------- room for the record

RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 4 << 20


def _reserve_space(run_dir: Path) -> None:
    """Set aside RESERVE_BYTES in the run folder, given back before the run's closing writes
    (:func:`_close_run`): a disk that fills up during the night — a notebook's output, another
    program — still takes run.json, the trades.db row, the index and the log's last lines, so
    the night ends `failed` with the reason, not `running`. Allocated, not sparse."""
    path = run_dir / RESERVE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(fd, 0, RESERVE_BYTES)
    except OSError as exc:  # posix_fallocate's error names no file
        raise OSError(exc.errno, f"{exc.strerror} (setting aside {RESERVE_BYTES >> 20} MiB for the run's record)",
                      str(path)) from None
    finally:
        os.close(fd)


def _release_space(run_dir: Path) -> None:
    (run_dir / RESERVE_NAME).unlink(missing_ok=True)


def _socket_dir(data_dir: Path) -> Path:
    """A private folder for the kernels' sockets, one per data directory: the run holds its
    lock, so whatever a killed run left there is stale and goes. Short, under the temp dir:
    a unix socket path may not exceed 107 bytes."""
    import hashlib

    tag = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"pitools-kernels-{os.getuid()}-{tag}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    return path


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
    from pitools.data import Store
    from pitools.box.kernel_quiet import quiet_shutdown
    from pitools.box.kernelspec import ensure_kernel

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
        from pitools.kernels import cache_dir  # one numba cache for every data folder and profile
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
        rec = RunRecord(night=night, profile=profile.name, run_dir=run_dir, started_at=_now(),
                        parameters={"profile_values": {k: str(v) for k, v in dataclasses.asdict(profile).items()},
                                    **base},
                        overrides=list(overrides), versions=_versions(), run_id=run_id,
                        notebooks=[{"name": s.name, "status": "pending", "needs": list(s.needs)} for s in specs])
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
            rec.duration_s = round(time.perf_counter() - t0, 3)
            rec.finished_at = _now()
            _close_run(rec, outputs, profile.db_path, profile.keep_nights)
            _detach_log(handler)
            if sock_dir is not None:
                shutil.rmtree(sock_dir, ignore_errors=True)
    return rec


def _start_db_run(db_path: Path, night: str, profile: str) -> int:
    """The run's trades.db row, taken before anything is written under outputs/. A database
    another process holds past the busy timeout (DatabaseLocked, exit 1), or one on a full or
    read-only disk, refuses the night with nothing to undo: no run folder, no notebook marked
    skipped, the index as it was (under systemd the OnFailure hook adds the refusal to it), and
    a retry lands in ``outputs/<night>/``, not ``<night>.2``."""
    from pitools.market.db import open_trades_db

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
    from pitools.market.db import open_trades_db

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


def mark_failed(outputs: str | Path, unit: str = "pitools-nightly.service", result: str | None = None) -> Path:
    """Write a failure marker (the service's OnFailure hook) and regenerate the index.

    systemd runs this when the nightly service fails in a way the runner could not record
    itself: killed by MemoryMax, its wall-clock limit, a crash before the first notebook.
    """
    from pitools.box.reports import FAILURES_DIR

    outputs = Path(outputs)
    if result is None and os.environ.get("MONITOR_SERVICE_RESULT"):  # systemd >= 251 tells the OnFailure unit
        result = ", ".join(f"{k.removeprefix('MONITOR_').lower()}={os.environ[k]}"
                           for k in ("MONITOR_SERVICE_RESULT", "MONITOR_EXIT_CODE", "MONITOR_EXIT_STATUS")
                           if os.environ.get(k))
    if result is None and shutil.which("systemctl"):
        import subprocess

        with contextlib.suppress(Exception):
            shown = subprocess.run(["systemctl", "show", unit, "-p", "Result", "-p", "ExecMainStatus"],
                                   capture_output=True, text=True, timeout=10).stdout
            result = ", ".join(line for line in shown.split() if line) or None
    stamp = dt.datetime.now().astimezone()
    path = outputs / FAILURES_DIR / f"{stamp.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_public(path, json.dumps({"time": stamp.isoformat(timespec="seconds"), "unit": unit,
                                        "result": result}) + "\n")
    with contextlib.suppress(NightlyLocked):  # a live run holds it: its records are real
        with _nightly_lock(outputs, {"pid": os.getpid(), "hook": unit}, OUTPUTS_LOCK):
            _mark_interrupted(outputs)
    write_index(outputs)
    return path

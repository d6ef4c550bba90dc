"""One notebook through papermill: its kernel (ipc sockets), its watch, its output and HTML report."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from pitools.box.nightly.notebooks import NotebookSpec
from pitools.box.nightly.record import _describe, _now
from pitools.box.nightly.watch import _KernelWatch, _kill, descendants
from pitools.box.reports import export_html

log = logging.getLogger("pitools.box.nightly")  # one logger name for the whole runner (nightly.log lines)


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


def _socket_dir(data_dir: Path) -> Path:
    """A private folder for the kernels' sockets, one per data directory: the run holds its
    lock, so whatever a killed run left there is stale and goes. Short, under the temp dir:
    a unix socket path may not exceed 107 bytes."""

    tag = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"pitools-kernels-{os.getuid()}-{tag}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    return path

"""The run record: ``run.json`` (RunRecord), the run folder's name, marking interrupted runs,
and the one-line description of a step's error."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import json
import logging
import os
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pitools.box.nightly.space import RESERVE_NAME
from pitools.box.reports import RUN_FILE, read_runs, write_public
from pitools.errors import PitoolsError
from pitools.market.db import open_trades_db
from pitools.memory import format_mb

log = logging.getLogger("pitools.box.nightly")  # one logger name for the whole runner (nightly.log lines)


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

                with contextlib.suppress(Exception), open_trades_db(db_path) as db:
                    if db.run_status(int(rec["run_id"])) == "running":
                        db.finish_run(int(rec["run_id"]), "failed", details={"status": "interrupted"})


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

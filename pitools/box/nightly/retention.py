"""Retention: delete the runs of nights older than the profile's ``keep_nights``."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pitools.box.reports import read_runs

log = logging.getLogger("pitools.box.nightly")  # one logger name for the whole runner (nightly.log lines)


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

"""The OnFailure hook: a failure marker for a run the runner could not record itself."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

from pitools.box.nightly.lock import OUTPUTS_LOCK, _nightly_lock
from pitools.box.nightly.record import _mark_interrupted
from pitools.errors import NightlyLocked
from pitools.box.reports import FAILURES_DIR, write_index, write_public

def mark_failed(outputs: str | Path, unit: str = "pitools-nightly.service", result: str | None = None) -> Path:
    """Write a failure marker (the service's OnFailure hook) and regenerate the index.

    systemd runs this when the nightly service fails in a way the runner could not record
    itself: killed by MemoryMax, its wall-clock limit, a crash before the first notebook.
    """

    outputs = Path(outputs)
    if result is None and os.environ.get("MONITOR_SERVICE_RESULT"):  # systemd >= 251 tells the OnFailure unit
        result = ", ".join(f"{k.removeprefix('MONITOR_').lower()}={os.environ[k]}"
                           for k in ("MONITOR_SERVICE_RESULT", "MONITOR_EXIT_CODE", "MONITOR_EXIT_STATUS")
                           if os.environ.get(k))
    if result is None and shutil.which("systemctl"):

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

"""The nightly run: papermill executes the notebook list of ``params/nightly.yaml``.

Each notebook runs on the ``pitools`` kernel (this environment's interpreter) with the
project root as its working directory, the profile's parameters and a wall-clock limit.
It lands as ``outputs/<night>/NN_name.ipynb`` plus a code-hidden ``.html``; ``run.json``
beside them records status, timings, peak memory (PSS of the kernel and its pool
workers, sampled with psutil — never virtual size), versions and parameters, and is
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

# The package: notebooks (the list), watch (process tree, limits), lock, record (run.json),
# space, retention, execute (one notebook), run (run_nightly), failure (the OnFailure hook).
from pitools.box.nightly.failure import mark_failed
from pitools.box.nightly.notebooks import STANDARD_PARAMETERS, NotebookSpec, load_nightly
from pitools.box.nightly.record import RunRecord
from pitools.box.nightly.run import run_nightly
from pitools.errors import NightlyError, NightlyLocked

__all__ = ["NightlyError", "NightlyLocked", "NotebookSpec", "RunRecord", "load_nightly", "run_nightly",
           "mark_failed", "STANDARD_PARAMETERS"]

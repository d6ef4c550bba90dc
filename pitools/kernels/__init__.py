"""numba kernels: numpy in, numpy out; no pandas, no I/O, no validation.

Each kernel has a public wrapper elsewhere in pitools that validates and converts its
inputs (e.g. :mod:`pitools.indicators` for :mod:`pitools.kernels.indicators`). The
submodules are not imported here, so ``import pitools.kernels`` does not load numba.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["driver", "indicators", "metrics", "signals", "simulation", "use_cache_dir"]


def use_cache_dir(path) -> Path:
    """Have numba keep its compiled kernels in `path` (created if needed).

    numba reads ``NUMBA_CACHE_DIR`` when it is first imported, so this must run before any
    kernel is imported — the ``pitools`` commands call it with the profile's
    ``<data_dir>/numba-cache`` first thing. A process forked later (a pool worker, a
    notebook kernel started with this environment) inherits the setting.

    >>> use_cache_dir("/tmp/pitools-numba")          # doctest: +SKIP
    PosixPath('/tmp/pitools-numba')
    """
    path = Path(path).expanduser().resolve()
    if "numba" in sys.modules and os.environ.get("NUMBA_CACHE_DIR") != str(path):
        from ..errors import ConfigError

        raise ConfigError(f"numba is already imported, so its cache directory can no longer move to {str(path)!r}; "
                          "call pitools.kernels.use_cache_dir() before the first backtest, or set NUMBA_CACHE_DIR "
                          "in the environment")
    path.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    return path

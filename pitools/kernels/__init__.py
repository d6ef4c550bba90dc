"""numba kernels: numpy in, numpy out; no pandas, no I/O, no validation.

Each kernel has a public wrapper elsewhere in pitools that validates and converts its
inputs (e.g. :mod:`pitools.engine.indicators` for :mod:`pitools.kernels.indicators`). The
submodules are not imported here, so ``import pitools.kernels`` does not load numba.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from pitools.errors import ConfigError

__all__ = ["driver", "indicators", "metrics", "signals", "simulation", "cache_dir", "use_cache_dir"]


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The one folder where numba keeps compiled kernels: per user, shared by every
    data folder, profile and checkout.

    ``$NUMBA_CACHE_DIR`` when it is set (the user's choice wins); otherwise
    ``$XDG_CACHE_HOME/pitools/numba``, by default ``~/.cache/pitools/numba``.

    Why per user rather than per data folder or per checkout:

    * compiled code depends on the source and the machine, not on the data, so one copy
      serves every profile and data folder (a cache per data folder made a fresh data
      folder recompile every kernel: 38 s for a 4-candidate evolve);
    * numba files each entry under a hash of its source file's folder and checks the
      file's timestamp and size, so two checkouts (or a re-clone) share the folder without
      mixing, and a changed kernel recompiles by itself;
    * a cache belongs in the user's cache folder (XDG): it stays writable where the
      checkout is not (installed read-only, owned by another login), out of git and out of
      backups of the checkout, and a ``sudo`` run writes root's own cache instead of leaving
      root-owned files the user can no longer update.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read (default ``os.environ``); `pitools install-services` passes
        the unit user's ``HOME`` to name that user's cache.

    Example
    -------
    >>> cache_dir({"HOME": "/home/pi"})
    PosixPath('/home/pi/.cache/pitools/numba')
    >>> cache_dir({"HOME": "/home/pi", "XDG_CACHE_HOME": "/var/cache/pi"})
    PosixPath('/var/cache/pi/pitools/numba')
    """
    env = os.environ if environ is None else environ
    if env.get("NUMBA_CACHE_DIR"):
        return Path(env["NUMBA_CACHE_DIR"]).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative value is invalid and ignored
        return Path(xdg) / "pitools" / "numba"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".cache" / "pitools" / "numba"


def use_cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Have numba keep its compiled kernels in `path` (default :func:`cache_dir`; created if needed).

    numba reads ``NUMBA_CACHE_DIR`` when it is first imported, so this must run before any
    kernel is imported — the ``pitools`` commands call it first thing. A process forked
    later (a pool worker, a notebook kernel started with this environment) inherits the
    setting.

    >>> use_cache_dir("/tmp/pitools-numba")          # doctest: +SKIP
    PosixPath('/tmp/pitools-numba')
    """
    path = Path(cache_dir() if path is None else path).expanduser().resolve()
    if "numba" in sys.modules and os.environ.get("NUMBA_CACHE_DIR") != str(path):

        raise ConfigError(f"numba is already imported, so its cache directory can no longer move to {str(path)!r}; "
                          "call pitools.kernels.use_cache_dir() before the first backtest, or set NUMBA_CACHE_DIR "
                          "in the environment")
    path.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    return path

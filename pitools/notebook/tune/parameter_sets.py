"""``params/tuned.yaml``: the parameter sets saved by hand from the tune notebook.

``{strategy: {name: {parameter: number}}}``; :func:`read_parameter_sets` reads it (a malformed
file is named and never overwritten), :meth:`TuneSession.save_parameter_set
<pitools.notebook.tune.session.TuneSession.save_parameter_set>` adds to it.
"""

from __future__ import annotations

from pathlib import Path

from pitools.config import project_root
from pitools.errors import ConfigError
from pitools.params_yaml import load_params_yaml, short_repr

__all__ = ["read_parameter_sets", "tuned_path"]


def read_parameter_sets(params_dir: str | Path | None = None) -> dict:
    """``params/tuned.yaml`` as ``{strategy: {name: params}}`` ({} when absent); a
    ConfigError naming the entry for a malformed file.

    Example
    -------
    >>> read_parameter_sets("params")                 # no params/tuned.yaml yet
    {}
    >>> import pathlib
    >>> _ = pathlib.Path("params").mkdir()
    >>> _ = pathlib.Path("params/tuned.yaml").write_text("sma_cross:\\n  calm_2026: {fast: 12, slow: 80}\\n")
    >>> read_parameter_sets("params")["sma_cross"]["calm_2026"]
    {'fast': 12, 'slow': 80}
    >>> _ = pathlib.Path("params/tuned.yaml").write_text("sma_cross:\\n  calm_2026: {fast: twelve}\\n")
    >>> read_parameter_sets("params")                 # a malformed file: named, never overwritten
    Traceback (most recent call last):
    ...
    pitools.errors.ConfigError: 'params/tuned.yaml' must map strategy -> name -> parameters: `sma_cross.calm_2026`:
    'fast': 'twelve' is not parameter: number; fix or move it, it was not changed
    """
    path = tuned_path(params_dir)
    if not path.exists():
        return {}
    try:
        raw = load_params_yaml(path)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; fix or move it, it was not changed") from None
    raw = {} if raw is None else raw
    problem = _tuned_problem(raw)
    if problem:
        raise ConfigError(f"{str(path)!r} must map strategy -> name -> parameters: {problem}; fix or move it, "
                          "it was not changed")
    return raw


def _tuned_problem(raw) -> str | None:
    """What is wrong with the data of tuned.yaml, or None."""
    if not isinstance(raw, dict):
        return f"got {short_repr(raw)}"
    for strategy, sets in raw.items():
        if not isinstance(strategy, str):
            return f"strategy {short_repr(strategy)} is not a name"
        if not isinstance(sets, dict):
            return f"`{strategy}` = {short_repr(sets)} is not a mapping of name -> parameters"
        for name, params in sets.items():
            if not isinstance(name, str):
                return f"`{strategy}`: set name {short_repr(name)} is not a string"
            if not isinstance(params, dict):
                return f"`{strategy}.{name}` = {short_repr(params)} is not a mapping of parameter: number"
            for key, value in params.items():
                if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
                    return f"`{strategy}.{name}`: {short_repr(key)}: {short_repr(value)} is not parameter: number"
    return None


def tuned_path(params_dir=None) -> Path:
    """`params_dir`/tuned.yaml (default: the project's params/)."""
    return Path(params_dir if params_dir is not None else project_root() / "params") / "tuned.yaml"

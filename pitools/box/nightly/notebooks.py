"""The notebook list: load and check ``params/nightly.yaml`` and every notebook's parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pitools.config import project_root
from pitools.errors import ConfigError, did_you_mean
from pitools.box.kernel_quiet import inspect_parameters
from pitools.params_yaml import load_params_yaml, short_repr

NIGHTLY_FILE = Path("params") / "nightly.yaml"
# What every notebook of the list receives (notebooks/README.md).
STANDARD_PARAMETERS = ("profile", "overrides", "night", "store", "run_dir", "run_id")
_NAME_RE = re.compile(r"^[0-9]{2}_[A-Za-z0-9_]+$")
_ENTRY_KEYS = {"name", "path", "needs", "parameters", "timeout_s"}


@dataclass(frozen=True)
class NotebookSpec:
    """One entry of ``params/nightly.yaml``."""

    name: str
    path: Path
    needs: tuple[str, ...] = ()
    parameters: dict = field(default_factory=dict)
    timeout_s: int | None = None


def load_nightly(path: str | Path | None = None, root: Path | None = None) -> list[NotebookSpec]:
    """Read and check the notebook list (default ``params/nightly.yaml``)."""

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

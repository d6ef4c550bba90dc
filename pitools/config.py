"""Run profiles: ``params/profiles.yaml`` → frozen, validated :class:`Profile`.

A profile holds the knobs of a run (how many symbols and years, workers, population,
generations, the memory budget, the data directory). Profiles may ``extends:`` another.
Every value is checked against :data:`FIELDS`; an unknown key or a bad value is a
:class:`~pitools.errors.ConfigError` that names the profile, the key, the value and what
is allowed. ``--set KEY=VALUE`` overrides go through exactly the same checks.

Example
-------
>>> from pitools.config import load_profile
>>> p = load_profile("ci", overrides=["max_symbols=10"])
>>> p.max_symbols
10
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitools.errors import ConfigError, did_you_mean
from pitools.params_yaml import load_params_yaml, parse_params_value, short_repr

__all__ = ["Profile", "FIELDS", "load_profile", "profile_names", "project_root", "parse_override"]

PROFILES_FILE = Path("params") / "profiles.yaml"


@dataclass(frozen=True)
class FieldSpec:
    kind: type
    low: float | None = None
    high: float | None = None
    help: str = ""
    default: Any = None  # None: every profile must set it (or extend one that does)
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[self.kind]
        if self.low is not None and self.high is not None:
            return f"{kind} from {self.low:g} to {self.high:g}"
        return kind


# The knobs of the old system plus what pitools adds. Ranges are what makes sense on a
# Pi-sized box up to a small cluster; widen them here, nowhere else.
FIELDS: dict[str, FieldSpec] = {
    "data_dir": FieldSpec(str, help="directory for the store, trades.db, optimizer state, numba cache"),
    "max_symbols": FieldSpec(int, 1, 100_000, "most symbols a run loads"),
    "max_years": FieldSpec(int, 1, 100, "most years of history a run loads"),
    "n_workers": FieldSpec(int, 1, 256, "processes in the fitness map"),
    "population_size": FieldSpec(int, 2, 100_000, "candidates per generation"),
    "generations": FieldSpec(int, 1, 100_000, "generations per night"),
    "sleep_between_evals": FieldSpec(float, 0.0, 60.0, "seconds a worker pauses between evaluations (thermal throttle)"),
    "memory_budget_mb": FieldSpec(int, 64, 1_048_576, "MB the panel of a run may take"),
    "seed": FieldSpec(int, 0, 2**32 - 1, "seed of every random choice of a run"),
    "demo_symbols": FieldSpec(int, 1, 100_000, "symbols in the demo universe that `make run` builds"),
    "demo_years": FieldSpec(int, 1, 60, "years of the demo universe that `make run` builds"),
    # The nightly run (pitools nightly, scheduled/): optional, with defaults for a Pi.
    "keep_nights": FieldSpec(int, 1, 3650, "nights of outputs/ kept (the newest successful one always is)",
                             default=14),
    "notebook_timeout_s": FieldSpec(int, 10, 86_400, "wall-clock limit of one nightly notebook", default=1800),
    "nightly_timeout_min": FieldSpec(int, 1, 1440, "wall-clock limit of the whole nightly service (systemd)",
                                     default=180),
    "memory_high_mb": FieldSpec(int, 64, 1_048_576, "systemd MemoryHigh of the nightly service: "
                                "reclaim and slow down above it", default=2800),
    "memory_max_mb": FieldSpec(int, 64, 1_048_576, "systemd MemoryMax of the nightly service: "
                               "the kernel's OOM killer stops the run above it", default=3300),
    "nice": FieldSpec(int, -20, 19, "scheduling priority of the nightly service (higher: nicer)", default=10),
    "schedule": FieldSpec(str, help="systemd OnCalendar of the nightly timer (after the day's bars are final)",
                          default="Mon..Fri *-*-* 18:30:00 America/New_York"),
    "data_source": FieldSpec(str, help="where 01_data gets new bars", default="drop_folder",
                             choices=("drop_folder", "http", "none")),
    "drop_dir": FieldSpec(str, help="folder another tool fills with bar files (relative: inside data_dir)",
                          default="incoming"),
    "http_base_url": FieldSpec(str, help="Stooq-style daily CSV endpoint of the http source",
                               default="https://stooq.com/q/d/l/"),
    "http_timeout_s": FieldSpec(float, 0.1, 600.0, "seconds one HTTP request of the http source may take",
                                default=30.0),
    "max_stale_sessions": FieldSpec(int, 0, 10_000, "NYSE sessions the store may lag the night before its "
                                    "signals are refused", default=1),
}


@dataclass(frozen=True)
class Profile:
    """One validated run profile (see ``params/profiles.yaml``)."""

    name: str
    data_dir: Path
    max_symbols: int
    max_years: int
    n_workers: int
    population_size: int
    generations: int
    sleep_between_evals: float
    memory_budget_mb: int
    seed: int
    demo_symbols: int
    demo_years: int
    # the nightly run's keys: their defaults live in FIELDS (filled in by _build)
    keep_nights: int
    notebook_timeout_s: int
    nightly_timeout_min: int
    memory_high_mb: int
    memory_max_mb: int
    nice: int
    schedule: str
    data_source: str
    drop_dir: str
    http_base_url: str
    http_timeout_s: float
    max_stale_sessions: int

    @property
    def store_dir(self) -> Path:
        """The parquet bar store inside the data directory."""
        return self.data_dir / "store"

    @property
    def db_path(self) -> Path:
        """trades.db inside the data directory."""
        return self.data_dir / "trades.db"

    @property
    def drop_path(self) -> Path:
        """The drop folder of the ``drop_folder`` source (``drop_dir``, relative to ``data_dir``)."""
        return self.data_dir / Path(os.path.expanduser(self.drop_dir))

    def replace(self, **changes: Any) -> "Profile":
        """A copy with `changes` applied and validated like the file."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}
        values["data_dir"] = str(values["data_dir"])
        for key, value in changes.items():
            values[key] = _check_value(self.name, key, value)
        return _build(self.name, values, project_root())


def project_root() -> Path:
    """The folder holding ``params/profiles.yaml``.

    ``$PITOOLS_HOME`` wins; otherwise the first parent of the working directory that has
    one; otherwise the checkout this package was installed from (editable install).
    """
    env = os.environ.get("PITOOLS_HOME")
    if env:
        return Path(env).expanduser().resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / PROFILES_FILE).is_file():
            return folder
    return Path(__file__).resolve().parents[1]


def _profiles_path(path: str | os.PathLike | None) -> Path:
    p = Path(path) if path is not None else project_root() / PROFILES_FILE
    if not p.is_file():
        raise ConfigError(f"profiles file {str(p)!r} does not exist; pass `path=` or set $PITOOLS_HOME "
                          "to the pitools checkout that holds params/profiles.yaml")
    return p


def _read_profiles(path: Path) -> dict[str, dict]:
    raw = load_params_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("profiles"), dict):
        got = short_repr(raw.get("profiles") if isinstance(raw, dict) else raw)
        raise ConfigError(f"{path}: must hold a mapping `profiles:` of name → settings, got {got} "
                          "(see the shipped params/profiles.yaml)")
    unknown = [k for k in raw if k != "profiles"]
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {short_repr(unknown[0])}; the file holds only `profiles:`")
    profiles = raw["profiles"]
    for name, body in profiles.items():
        # `--profile` is a string: a name YAML reads as a number or null could never be chosen
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: profile name {short_repr(name)} must be a non-empty string; quote it")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: profile {name!r} must be a mapping of settings (key: value), "
                              f"got {short_repr(body)}")
    return profiles


def profile_names(path: str | os.PathLike | None = None) -> list[str]:
    """Names of the profiles in the profiles file."""
    return list(_read_profiles(_profiles_path(path)))


def parse_override(text: str) -> tuple[str, str]:
    """Split one ``KEY=VALUE`` of ``--set``."""
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"`--set` expects KEY=VALUE, got {short_repr(text)} (for example --set max_symbols=500)")
    return key, value.strip()


def _check_key(profile: str, key: str) -> FieldSpec:
    spec = FIELDS.get(key)
    if spec is None:
        raise ConfigError(f"profile {profile!r}: unknown key {short_repr(key)}.{did_you_mean(key, FIELDS)} "
                          f"Allowed keys: {', '.join(FIELDS)}")
    return spec


def _check_value(profile: str, key: str, value: Any) -> Any:
    spec = _check_key(profile, key)
    where = f"profile {profile!r}: `{key}` = {short_repr(value)}"
    if isinstance(value, str) and spec.kind is not str:
        text = value.strip()
        try:
            value = parse_params_value(text, f"`{key}`") if text else None
        except ConfigError as exc:
            raise ConfigError(f"{where} is not {spec.allowed()} ({exc})") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            where = f"profile {profile!r}: `{key}` = {short_repr(value)}"  # show the number, not its text
    if spec.kind is str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where} must be a non-empty string ({spec.help})")
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"{where} must be {spec.allowed()}.{did_you_mean(value, spec.choices)}")
        return value
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false ({spec.help})")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be {spec.allowed()} ({spec.help})")
    if spec.kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where} must be {spec.allowed()} ({spec.help})")
        value = int(value)
    else:
        try:
            value = float(value)
        except OverflowError:  # an int of 400 digits has no float
            raise ConfigError(f"{where} is out of range: must be {spec.allowed()} ({spec.help})") from None
        if value != value:  # NaN
            raise ConfigError(f"{where} must be {spec.allowed()} ({spec.help})")
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise ConfigError(f"{where} is out of range: must be {spec.allowed()} ({spec.help})")
    return value


def _resolve(name: str, profiles: dict[str, dict], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name not in profiles:
        raise ConfigError(f"unknown profile {short_repr(name)}.{did_you_mean(str(name), profiles)} "
                          f"Profiles: {', '.join(profiles) or 'none'}")
    if name in seen:
        raise ConfigError(f"profile {name!r}: `extends` loops through {' → '.join(seen + (name,))}")
    body = dict(profiles[name])
    parent = body.pop("extends", None)
    values: dict[str, Any] = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"profile {name!r}: `extends` = {short_repr(parent)} must be a profile name")
        values.update(_resolve(parent, profiles, seen + (name,)))
    for key, value in body.items():
        values[key] = _check_value(name, str(key), value)
    return values


def _build(name: str, values: dict[str, Any], root: Path) -> Profile:
    values = {**{k: f.default for k, f in FIELDS.items() if f.default is not None}, **values}
    missing = [k for k in FIELDS if k not in values]
    if missing:
        raise ConfigError(f"profile {name!r} lacks {', '.join(f'`{k}`' for k in missing)}; "
                          "set them in the profile or in a profile it `extends`")
    if values["memory_high_mb"] >= values["memory_max_mb"]:
        raise ConfigError(f"profile {name!r}: `memory_high_mb` = {values['memory_high_mb']!r} must be below "
                          f"`memory_max_mb` = {values['memory_max_mb']!r} (the service slows down before it is killed)")
    data_dir = Path(os.path.expanduser(values["data_dir"]))
    if not data_dir.is_absolute():
        data_dir = root / data_dir
    return Profile(name=name, **{**values, "data_dir": data_dir})


def load_profile(name: str = "demo", overrides: list[str] | dict[str, Any] | None = None,
                 path: str | os.PathLike | None = None) -> Profile:
    """Load profile `name` from ``params/profiles.yaml``, apply `overrides`, validate.

    Parameters
    ----------
    name : str
        A profile of the file (``demo``, ``ci``, ``pi_safe``, ``pi_full``, …).
    overrides : list of ``"KEY=VALUE"`` or dict, optional
        Per-run changes (the CLI's ``--set``), checked exactly like the file.
    path : path, optional
        Another profiles file. Relative ``data_dir`` values are relative to the folder
        that holds ``params/``.
    """
    file = _profiles_path(path)
    values = _resolve(name, _read_profiles(file))
    items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides or [])
    for key, value in items:
        values[key] = _check_value(name, key, value)
    return _build(name, values, file.parent.parent)

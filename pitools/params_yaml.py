"""The one reader of the YAML files under ``params/``, bounded in time and memory.

A params file is a few kilobytes a person writes: profiles, search bounds, the notebook
list, tuned parameter sets. PyYAML's ``safe_load`` still accepts things such a file has no
use for and that cost without bound: aliases (a "billion laughs" of nested ``*a`` takes
gigabytes once anything walks or prints it), a document nested thousands deep (Python's
recursion limit), a file of hundreds of megabytes. :func:`load_params_yaml` refuses them
while reading, before anything is built, with a :class:`~pitools.errors.ConfigError`
(exit 2) that names the file, the line and what is allowed:

* at most :data:`MAX_BYTES` bytes;
* no anchors (``&a``) and no aliases (``*a``): write the value out (profiles share
  settings through ``extends:``);
* at most :data:`MAX_DEPTH` levels of nesting and :data:`MAX_NODES` values;
* no key set twice in one mapping (PyYAML silently keeps the last one);
* anything else PyYAML or its constructors refuse (bad syntax, bad encoding, a
  ``!!python`` tag, an integer of 5,000 digits, 2026-13-01) is "not valid YAML" with the
  line, never a traceback.

:func:`short_repr` cuts a value for an error message, so a huge value can never make the
message itself the cost.

Example
-------
>>> from pitools.config import project_root
>>> from pitools.params_yaml import load_params_yaml
>>> load_params_yaml(project_root() / "params" / "strategies.yaml")["optimizer"]
'TwoPointsDE'
"""

from __future__ import annotations

import os
import reprlib
from pathlib import Path
from typing import Any

import yaml

from pitools.errors import ConfigError

__all__ = ["load_params_yaml", "parse_params_value", "short_repr", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES"]

# The shipped files are 1-4 KB, nested 4 deep, with ~300 values; tuned.yaml grows by ~5
# values a saved set. The bounds leave room for thousands of sets while the worst accepted
# file loads in ~0.15 s (libyaml, x86 dev box; ~16 µs a value) — a few times that on a Pi.
MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 10_000


class _Refused(Exception):
    """A rule of this module broken at `mark` (turned into a ConfigError naming the file)."""

    def __init__(self, mark, what: str):
        super().__init__(what)
        self.mark, self.what = mark, what


# libyaml when PyYAML was built with it (the wheels are): it scans a 1 MB file in tens of
# milliseconds where the pure-Python scanner takes seconds on a Pi.
_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ParamsLoader(_BASE):
    """The safe loader, refusing a key set twice (the other rules are checked on the event
    stream first, by :func:`_check_events`)."""

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep=deep)
        if len(mapping) < len(node.value):  # a key came twice: find it for the message
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise _Refused(key_node.start_mark, f"key {short_repr(key)} is set twice in one mapping; "
                                   "keep one (YAML would silently use the last)")
                seen.add(key)
        return mapping


def _check_events(data: bytes | str) -> None:
    """Walk the parser's events (flat: no node is built, no alias resolved, no recursion)
    and refuse an anchor, an alias, too deep a nesting or too many values where it starts.
    A bomb thus costs what its text costs to scan, nothing more."""
    loader = _BASE(data)
    depth = nodes = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(event.start_mark, f"YAML alias `*{event.anchor}` is not allowed in a params file "
                               "(aliases can expand without bound); write the value out")
            if getattr(event, "anchor", None) is not None:
                raise _Refused(event.start_mark, f"YAML anchor `&{event.anchor}` is not allowed in a params file "
                               "(nor are aliases); write the value out")
            if isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
                nodes += 1
                if nodes > MAX_NODES:
                    raise _Refused(event.start_mark, f"more than {MAX_NODES:,} values; "
                                   "params files hold hundreds")
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise _Refused(event.start_mark, f"nested deeper than {MAX_DEPTH} levels; "
                                       "a params file needs a few")
    finally:
        loader.dispose()


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about `limit` characters, in bounded time (for messages).

    >>> short_repr("x" * 1000)[:12], len(short_repr("x" * 1000)) <= 80
    ("'xxxxxxxxxxx", True)
    """
    r = _REPR.repr(value)
    return r if len(r) <= limit else r[:limit - 1] + "…"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 6, 6, 6, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 76, 76, 40


def _line(mark) -> str:
    return f"line {mark.line + 1}: " if mark is not None else ""


def _parse(data: bytes | str, source: str) -> Any:
    loader = None
    try:
        _check_events(data)
        loader = _ParamsLoader(data)
        return loader.get_single_data()
    except _Refused as exc:
        raise ConfigError(f"{source}: {_line(exc.mark)}{exc.what}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{source}: {_line(mark)}not valid YAML: {what}") from None
    except yaml.YAMLError as exc:  # a ReaderError (bad encoding, control character): no line
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, OverflowError) as exc:  # a constructor: 5,000-digit int, 2026-13-01
        text = str(exc)
        raise ConfigError(f"{source}: not valid YAML: {text if len(text) <= 200 else text[:199] + '…'}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_params_yaml(path: str | os.PathLike) -> Any:
    """The data of the YAML file `path`, read under the rules of this module.

    Raises
    ------
    ConfigError
        The file is missing, unreadable, larger than :data:`MAX_BYTES`, uses an anchor
        or alias, nests deeper than :data:`MAX_DEPTH`, holds more than :data:`MAX_NODES`
        values, sets a key twice or is not valid YAML; the message names the file and line.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)  # never more: /dev/zero or a log written by mistake
    except FileNotFoundError:
        raise ConfigError(f"{path}: does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES // 1024} KB; a params file is a few KB "
                          "(is it the right file?)")
    return _parse(data, str(path))


def parse_params_value(text: str, source: str) -> Any:
    """One value written as YAML (the ``VALUE`` of ``--set KEY=VALUE``), under the same
    rules; `source` names it in the error."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_BYTES // 1024} KB")
    return _parse(text, source)

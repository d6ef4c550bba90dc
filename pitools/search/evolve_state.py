"""The persistent search state of one strategy under ``<data_dir>/evolve/<strategy>/``.

:class:`StrategyState` holds the nevergrad optimizer (``optimizer.pkl``, with ``state.json``
saying which versions, space and night it belongs to) and the evaluation log it was told
(:mod:`pitools.search.evolution_log`). A checkpoint that cannot be trusted for this night is
rebuilt from the log. Every write goes through :func:`saving`, which turns a full disk or a
read-only folder into a one-line error naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pickle
import zlib
from pathlib import Path

import numpy as np

from pitools.data.atomic import fsync_dir, write_bytes_atomic, write_text_atomic
from pitools.engine import strategies as _strategies
from pitools.errors import DataFolderNotWritable, EvolveError, PitoolsError
from pitools.search.evolution_log import LOG_NAME, append_evaluations, read_evaluations
from pitools.search.search_config import SearchConfig

__all__ = ["StrategyState", "saving", "check_writable"]

log = logging.getLogger("pitools")


class _Admissible:
    """A picklable cheap constraint for nevergrad: the strategy's own checks (fast < slow …)."""

    def __init__(self, strategy: str):
        self.strategy = strategy

    def __call__(self, value: dict) -> bool:
        try:
            _strategies.get(self.strategy).validate(value)
        except PitoolsError:
            return False
        return True


class StrategyState:
    """The optimizer and the evaluation log of one strategy under ``<data_dir>/evolve/<name>``."""

    def __init__(self, root: Path, strategy: str, config: SearchConfig, seed: int, population: int, night: str,
                 n_symbols: int | None = None):
        self.dir = root / strategy
        with saving(self.dir):
            self.dir.mkdir(parents=True, exist_ok=True)
        check_writable(self.dir, *(self.dir / name for name in (LOG_NAME, "optimizer.pkl", "state.json")))
        self.strategy, self.config, self.population, self.night = strategy, config, population, night
        self.space = config.space(strategy, n_symbols)
        self.seed = (seed * 1_000_003 + zlib.crc32(strategy.encode())) % 2**32
        self.log_path = self.dir / LOG_NAME
        self.records = read_evaluations(self.log_path, night=night)  # a night reads only its past
        self.optimizer, self.origin = self._load_or_build()

    @property
    def signature(self) -> dict:
        import nevergrad as ng

        return {"nevergrad": ng.__version__, "optimizer": self.config.optimizer, "population": self.population,
                "space": {k: list(v) for k, v in self.space.items()}}

    def _fresh(self):
        import nevergrad as ng

        items = {}
        for name, (lo, hi, kind) in self.space.items():
            if lo == hi:  # bounded by a small universe to one value: a constant, not searched
                items[name] = int(lo) if kind == "int" else float(lo)
                continue
            scalar = ng.p.Scalar(lower=lo, upper=hi)
            items[name] = scalar.set_integer_casting() if kind == "int" else scalar
        param = ng.p.Dict(**items)
        param.random_state = np.random.RandomState(self.seed)
        param.register_cheap_constraint(_Admissible(self.strategy))
        opt = ng.optimizers.registry[self.config.optimizer](parametrization=param, budget=None,
                                                             num_workers=self.population)
        opt.enable_pickling()  # before the first ask, or some optimizers cannot be pickled
        return opt

    def _load_or_build(self):
        pkl, meta = self.dir / "optimizer.pkl", self.dir / "state.json"
        if pkl.exists():
            try:
                self._check_checkpoint(json.loads(meta.read_text()))
                return pickle.loads(pkl.read_bytes()), "checkpoint"
            except Exception as exc:  # noqa: BLE001 — any unreadable state is rebuilt from the log
                log.warning("%s: optimizer state not usable (%s: %s); rebuilding it from %d logged evaluations",
                            self.strategy, type(exc).__name__, exc, len(self.records))
        opt = self._fresh()
        told = 0
        for rec in self.records:
            if rec.get("fitness") is not None and self._inside(rec["params"]):
                opt.tell(opt.parametrization.spawn_child(new_value=rec["params"]), -rec["fitness"])
                told += 1
        return opt, ("rebuilt from log" if told else "new")

    def _check_checkpoint(self, state: dict) -> None:
        """Raise ValueError unless the pickle was told exactly the evaluations this night may read."""
        if state.get("signature") != self.signature:
            raise ValueError("the search space, optimizer or nevergrad version changed")
        if str(state.get("night")) > self.night:  # a run dated later: its knowledge is not this night's past
            raise ValueError(f"it is of night {state.get('night')}, after {self.night}")
        if state.get("evaluations") != len(self.records):  # killed between log and pickle, or another run's
            raise ValueError(f"it was told {state.get('evaluations')} evaluations, the log has {len(self.records)} "
                             f"up to {self.night}")

    def _inside(self, params: dict) -> bool:
        return set(params) == set(self.space) and all(lo <= params[k] <= hi for k, (lo, hi, _) in self.space.items())

    def incumbents(self, k: int) -> list[dict]:
        """The `k` best distinct parameter sets of earlier nights (latest score of each)."""
        latest = {}
        for rec in self.records:
            if rec.get("fitness") is not None:
                latest[json.dumps(rec["params"], sort_keys=True)] = rec
        ranked = sorted(latest.values(), key=lambda r: -r["fitness"])
        return [r["params"] for r in ranked if self._inside(r["params"])][:k]

    def append(self, records: list[dict]) -> None:
        with saving(self.log_path):
            append_evaluations(self.log_path, records)
        self.records.extend(records)

    def checkpoint(self, generation: int, night: str) -> None:
        # The pickle first, then state.json: a failure between them leaves a state.json
        # whose count no longer matches the log, so the next night rebuilds from the log.
        with saving(self.dir / "optimizer.pkl"):
            write_bytes_atomic(self.dir / "optimizer.pkl", pickle.dumps(self.optimizer))
        with saving(self.dir / "state.json"):
            write_text_atomic(self.dir / "state.json", json.dumps(
                {"signature": self.signature, "night": night, "generation": generation,
                 "evaluations": len(self.records)}, indent=1))
            fsync_dir(self.dir)


@contextlib.contextmanager
def saving(path: Path):
    """Turn an ``OSError`` while writing `path` (a file, or a folder being made) into a one-line
    error naming it, or its folder when that is what cannot be written."""
    try:
        yield
    except OSError as exc:
        raise _write_error(path, exc) from None


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _write_error(path: Path, exc: OSError) -> PitoolsError:
    why = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return EvolveError(f"no space left on the device to write {str(path)!r} ({why}); the state of the last "
                           "whole generation is kept. Free some space (or move `data_dir`) and run again")
    if exc.errno in _NOT_WRITABLE:
        return _not_writable(Path(exc.filename).parent if exc.filename else path.parent, why)  # a mkdir, a temp file
    return EvolveError(f"cannot write {str(path)!r}: {why}; the state of the last whole generation is kept")


def check_writable(folder: Path, *files: Path) -> None:
    """Fail before the night's work, not after its first generation, when its state cannot be
    written (``os.access`` answers for a read-only mount too, and as root)."""
    if not os.access(folder, os.W_OK):
        raise _not_writable(folder, "no write permission, or a read-only file system")
    for path in files:
        if path.exists() and not os.access(path, os.W_OK):
            raise _not_writable(folder, f"{path.name} is read-only")


def _not_writable(folder: Path, why: str) -> DataFolderNotWritable:
    return DataFolderNotWritable(f"data folder {str(folder)!r} is not writable ({why}): fix its permissions, "
                                 "or choose another with --set data_dir=DIR")

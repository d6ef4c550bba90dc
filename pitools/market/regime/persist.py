"""The regime model's file: :func:`save` (JSON, atomic) and :func:`load` (checked)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pitools.errors import DataError
from pitools.market.regime.features import (FEATURES, FORMAT, FORMAT_VERSION, MAX_REGIMES, TABLE_COLUMNS, _int,
                                            _names)
from pitools.market.regime.model import RegimeModel

__all__ = ["save", "load"]


def save(model, path: str | os.PathLike) -> Path:
    """Write `model` (a :class:`RegimeModel`) to `path` as JSON, atomically (a crash leaves the
    old file); what :meth:`RegimeModel.save` does."""
    return model.save(path)

# -- loading --------------------------------------------------------------------------------

def _array(doc: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(doc[key], dtype=np.float64)
    if a.shape != shape or not np.isfinite(a).all():
        raise ValueError(f"{key!r} has shape {a.shape}, expected {shape} finite numbers")
    return a


def _probabilities(a: np.ndarray, key: str) -> np.ndarray:
    if not (a > 0).all() or not np.allclose(a.sum(axis=-1), 1.0, rtol=0, atol=1e-9):
        raise ValueError(f"{key!r} must hold positive probabilities summing to 1 (per row)")
    return a


def load(path: str | os.PathLike) -> RegimeModel:
    """Read a model written by :meth:`RegimeModel.save`.

    Raises
    ------
    DataError
        The file is missing, not JSON, not a regime model, of another format version (a
        version-1 file holds the former Gaussian mixture: retrain), or its parameters are
        inconsistent. The message names the file.

    Example
    -------
    >>> model = pt.regime.train(vix, spx)
    >>> pt.regime.save(model, "data/regime.json")
    PosixPath('data/regime.json')
    >>> loaded = pt.regime.load("data/regime.json")
    >>> loaded.regimes, loaded.trained_on["end"]
    (('calm_bull', 'volatile_bull', 'bear', 'stressed_bull'), '2026-11-20')
    >>> loaded.predict(vix, spx).equals(model.predict(vix, spx))
    True
    >>> pt.regime.load("data/missing.json")
    Traceback (most recent call last):
    ...
    pitools.errors.DataError: regime model file 'data/missing.json' does not exist; train a model with ...
    """
    path = Path(path)
    where = f"regime model file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{where} does not exist; train a model with `pt.regime.train(vix, sp500)` and "
                        "`model.save(path)` first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{where} cannot be read: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where} is not valid JSON ({exc}); it is damaged — retrain and save the model "
                        "again") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f"{where} is not a pitools regime model (its `format` is "
                        f"{doc.get('format') if isinstance(doc, dict) else None!r}, expected {FORMAT!r})")
    version = doc.get("version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        fix = "upgrade pitools to read it" if newer else "retrain and save the model again"
        raise DataError(f"{where} has format version {version!r}; this pitools reads version {FORMAT_VERSION} "
                        f"— {fix}")
    try:
        if list(doc["features"]) != list(FEATURES):
            raise ValueError(f"features {doc['features']!r} are not {list(FEATURES)!r}")
        regimes = _names(doc["regimes"], len(doc["regimes"]))
        k, d = len(regimes), len(FEATURES)
        if not 2 <= k <= MAX_REGIMES:
            raise ValueError(f"{k} regimes")
        window = _int("window", doc["window"], 2, 260)
        high_window = _int("high_window", doc["high_window"], window, 2520)
        random_state = _int("random_state", doc.get("random_state"), 0, 2**32 - 1, allow_none=True)
        n_init = _int("n_init", doc.get("n_init", 1), 1, 100)
        mean = _array(doc, "feature_mean", (d,))
        std = _array(doc, "feature_std", (d,))
        if not (std > 0).all():
            raise ValueError("feature_std must be positive")
        transmat = _probabilities(_array(doc, "transmat", (k, k)), "transmat")
        start = _probabilities(_array(doc, "start", (k,)), "start")
        means = _array(doc, "means", (k, d))
        covariances = _array(doc, "covariances", (k, d, d))
        np.linalg.cholesky(covariances)  # raises LinAlgError if a covariance is not positive definite
        table = pd.DataFrame({c: np.asarray([np.nan if v is None else v for v in doc["table"][c]], dtype=np.float64)
                              for c in TABLE_COLUMNS}, index=pd.Index(regimes, name="regime"))
        trained_on = dict(doc.get("trained_on") or {})
    except (KeyError, TypeError, ValueError, np.linalg.LinAlgError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DataError(f"{where} is damaged ({what}); retrain and save the model again") from None
    return RegimeModel(regimes, window, high_window, mean, std, transmat, start, means, covariances, table,
                       trained_on, random_state, n_init)


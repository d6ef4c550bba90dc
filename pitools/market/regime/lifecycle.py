"""The regime model's lifecycle: where it lives, the index series it needs, fit or reuse
(:func:`fit_or_update`, :func:`refit_reason`), and what 02_regime shows of it
(:func:`current_regime`, :func:`regime_table`).

A night's run keeps the model at ``regime_model_path(profile)``; here a file under ``data/``:

>>> vix, spx = index_series("data/store")
>>> model, why = fit_or_update("data/regime/model.json", vix, spx, refit_every_days=7)
>>> print(why)
fitted a new model on 2023-12-20..2026-11-20 (733 sessions), because there is no model at 'data/regime/model.json'
>>> model, why = fit_or_update("data/regime/model.json", vix, spx, refit_every_days=7)  # the next run: reused
>>> print(why)
loaded the model trained on 2023-12-20..2026-11-20 (733 sessions)
>>> current_regime(model.predict(vix, spx))
{'regime': 'bear', 'session': '2026-11-20', 'since': '2026-09-14', 'sessions': 50}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pitools.errors import DataError, PitoolsError
from pitools.market.regime.features import features
from pitools.market.regime.model import train
from pitools.market.regime.persist import load
from pitools.data import Store, load_series

__all__ = ["INDEX_SYMBOLS", "GROWTH_REFIT", "regime_model_path", "index_series", "refit_reason", "fit_or_update",
           "current_regime", "regime_table"]

INDEX_SYMBOLS = ("^VIX", "^GSPC")
GROWTH_REFIT = 1.25  # refit when the sessions the model could learn from grew by this factor


def regime_model_path(profile) -> Path:
    """Where the regime model of `profile` lives: ``<data_dir>/regime/model.json``.

    Example
    -------
    >>> from pitools.config import load_profile
    >>> regime_model_path(load_profile("demo", overrides={"data_dir": "/srv/pitools"}))
    PosixPath('/srv/pitools/regime/model.json')
    """
    return Path(profile.data_dir) / "regime" / "model.json"


def index_series(store, end=None) -> tuple[pd.Series, pd.Series]:
    """``(vix, spx)``: the ``^VIX`` and ``^GSPC`` closes of `store` up to `end`.

    Raises
    ------
    DataError
        Naming the missing series and how to get them, when the store lacks either.

    Example
    -------
    >>> vix, spx = index_series("data/store", end="2026-11-06")
    >>> vix.name, spx.name, str(vix.index[-1].date()), len(vix) == len(spx)
    ('^VIX', '^GSPC', '2026-11-06', True)
    """

    st = store if isinstance(store, Store) else Store.open(store)
    have = set(st.symbols(None))
    missing = [s for s in INDEX_SYMBOLS if s not in have]
    if missing:
        raise DataError(f"the store at {str(st.root)!r} has no {' and no '.join(missing)}: the regime model needs "
                        "daily closes of ^VIX and ^GSPC. Add them to the source (`pitools ingest FILE.csv` with "
                        "the index bars) or build a store with `pitools demo-data`, which includes both")
    return load_series(st, "^VIX", end=end), load_series(st, "^GSPC", end=end)


def refit_reason(model, vix: pd.Series, spx: pd.Series, refit_every_days: int = 7) -> str | None:
    """Why `model` should be refitted on these series, or None when it can be reused.

    A model is refitted when the data's last session is more than `refit_every_days`
    calendar days after the model's training data ends, when the sessions it could learn
    from grew by :data:`GROWTH_REFIT` or more (a backfilled history), or when it was trained
    on sessions after the data's last one (an earlier night re-run: no lookahead).

    Example
    -------
    >>> model = pt.regime.train(*index_series("data/store", end="2026-11-06"))  # trained two weeks ago
    >>> print(refit_reason(model, vix, spx))
    it was trained up to 2026-11-06, 14 days before 2026-11-20 (> 7 days)
    >>> print(refit_reason(model, vix, spx, refit_every_days=30))
    None
    >>> print(refit_reason(pt.regime.train(vix, spx), vix[:"2026-11-06"], spx[:"2026-11-06"]))
    it was trained up to 2026-11-20, after the data's last session 2026-11-06
    """
    days = _days_arg(refit_every_days)
    f = features(vix, spx, window=model.window, high_window=model.high_window).dropna()
    if f.empty:
        raise DataError("no session of ^VIX/^GSPC has defined regime features; the store's index history is too short")
    last, trained_end = f.index[-1], pd.Timestamp(model.trained_on["end"])
    n_trained = int(model.trained_on.get("n_sessions") or 0)
    if trained_end > last:
        return f"it was trained up to {trained_end.date()}, after the data's last session {last.date()}"
    age = (last - trained_end).days
    if age > days:
        return f"it was trained up to {trained_end.date()}, {age} days before {last.date()} (> {days} days)"
    if len(f) >= GROWTH_REFIT * max(n_trained, 1):
        return f"the history grew from {n_trained} to {len(f)} sessions"
    return None


def _days_arg(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or not value >= 0 \
            or float(value) != int(value):
        raise DataError(f"`refit_every_days` = {value!r} must be a whole number of days >= 0 (0: refit every night)")
    return int(value)


def fit_or_update(path, vix: pd.Series, spx: pd.Series, refit_every_days: int = 7):
    """Load the regime model at `path` if it is still good, else train a new one and save it.

    Parameters
    ----------
    path : path-like
        The model's JSON file (:func:`regime_model_path`); written atomically on a refit.
    vix, spx : pandas.Series
        ``^VIX`` and ``^GSPC`` closes by date.
    refit_every_days : int
        Refit when the model's training data ends more than this many days before the
        data's last session (0: every run). See :func:`refit_reason` for the other causes.

    Returns
    -------
    (RegimeModel, str)
        The model, and a sentence saying what was done and why.

    Example
    -------
    >>> old_vix, old_spx = index_series("data/store", end="2026-11-06")
    >>> model, why = fit_or_update("data/regime/model.json", old_vix, old_spx)
    >>> print(why)
    fitted a new model on 2023-12-20..2026-11-06 (723 sessions), because there is no model at 'data/regime/model.json'
    >>> model, why = fit_or_update("data/regime/model.json", vix, spx)  # two weeks later: too old
    >>> print(why)
    fitted a new model on 2023-12-20..2026-11-20 (733 sessions), because it was trained up to 2026-11-06,
    14 days before 2026-11-20 (> 7 days)
    >>> model, why = fit_or_update("data/regime/model.json", vix, spx)
    >>> print(why)
    loaded the model trained on 2023-12-20..2026-11-20 (733 sessions)
    """
    days = _days_arg(refit_every_days)
    path = Path(path)
    reason = None
    if not path.exists():
        reason = f"there is no model at {str(path)!r}"
    else:
        try:
            model = load(path)
        except (PitoolsError, ValueError, OSError) as exc:
            reason = f"the model at {str(path)!r} cannot be loaded ({type(exc).__name__}: {exc})"
        else:
            reason = "refit_every_days is 0" if days == 0 else refit_reason(model, vix, spx, days)
            if reason is None:
                t = model.trained_on
                return model, f"loaded the model trained on {t['start']}..{t['end']} ({t['n_sessions']} sessions)"
    model = train(vix, spx)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    t = model.trained_on
    return model, f"fitted a new model on {t['start']}..{t['end']} ({t['n_sessions']} sessions), because {reason}"


def current_regime(labels: pd.Series) -> dict | None:
    """The last label, since when it holds and how many sessions: ``{regime, session, since, sessions}``.

    `labels` is a regime per session (``model.predict`` or trades.db ``regimes``); None if empty.

    Example
    -------
    >>> labels = pt.regime.train(vix, spx).predict(vix, spx)
    >>> current_regime(labels)
    {'regime': 'bear', 'session': '2026-11-20', 'since': '2026-09-14', 'sessions': 50}
    >>> current_regime(labels[:"2026-06-30"])
    {'regime': 'stressed_bull', 'session': '2026-06-30', 'since': '2026-06-02', 'sessions': 20}
    >>> print(current_regime(labels[:0]))
    None
    """
    labels = labels.dropna().sort_index()
    if labels.empty:
        return None
    values = labels.astype(str).to_numpy()
    now = values[-1]
    other = np.flatnonzero(values != now)
    first = other[-1] + 1 if other.size else 0
    return {"regime": now, "session": str(pd.Timestamp(labels.index[-1]).date()),
            "since": str(pd.Timestamp(labels.index[first]).date()), "sessions": int(len(values) - first)}


def regime_table(model, labels: pd.Series) -> pd.DataFrame:
    """The regimes described in natural units (``model.describe()``) and how many sessions each labels.

    Parameters
    ----------
    model : RegimeModel
    labels : pandas.Series
        The model's labels (``model.predict``).

    Returns
    -------
    pandas.DataFrame
        One row per regime, calmest first: share of the training data, the component's mean
        VIX, trailing return, realised volatility and drawdown, sessions labelled.

    Example
    -------
    >>> model = pt.regime.train(vix, spx)
    >>> t = regime_table(model, model.predict(vix, spx))
    >>> list(t.columns)
    ['share of training (%)', 'VIX (level)', '20-session return (%)', 'realised volatility (% ann.)',
     'drawdown from high (%)', 'sessions labelled']
    >>> t[["VIX (level)", "drawdown from high (%)", "sessions labelled"]]
                   VIX (level)  drawdown from high (%)  sessions labelled
    regime
    calm_bull             15.6                    -1.4                300
    volatile_bull         23.4                    -3.2                247
    bear                  38.6                   -14.0                 68
    stressed_bull         51.3                    -4.1                118
    """
    d = model.describe()
    counts = labels.astype(str).value_counts().reindex(d.index, fill_value=0)
    out = pd.DataFrame({
        "share of training (%)": 100 * d["weight"],
        "VIX (level)": d["vix"],
        f"{model.window}-session return (%)": 100 * d["ret"],
        "realised volatility (% ann.)": 100 * d["rvol"],
        "drawdown from high (%)": 100 * d["drawdown"],
        "sessions labelled": counts.astype(np.int64),
    }, index=d.index)
    return out.round(1)

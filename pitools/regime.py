"""The market-regime model: VIX and S&P 500 → calm_bull … crisis, one label per session.

>>> import pitools as pt
>>> vix, spx = pt.load_series("data/store", "^VIX"), pt.load_series("data/store", "^GSPC")  # doctest: +SKIP
>>> model = pt.regime.train(vix, spx)                                # doctest: +SKIP
>>> model.regimes                                                    # doctest: +SKIP
('calm_bull', 'volatile_bull', 'bear', 'crisis')
>>> labels = model.predict(vix, spx)                                 # doctest: +SKIP
>>> codes = model.codes(vix, spx, index=panel.dates)                 # doctest: +SKIP
>>> calm = model.codes_of("calm_bull", "volatile_bull")               # doctest: +SKIP
>>> pt.backtest("sma_cross", panel, regime_filter=(codes, calm))     # doctest: +SKIP
>>> model.save("data/regime.json")                                   # doctest: +SKIP
>>> model = pt.regime.load("data/regime.json")                       # doctest: +SKIP

The model
---------
A Gaussian mixture (scikit-learn's :class:`~sklearn.mixture.GaussianMixture`, full
covariances) over four features of each session, each computed from data up to that
session only (no lookahead):

* ``log_vix`` — log of the VIX close (implied volatility: the market's own fear gauge);
* ``ret`` — log return of the S&P 500 over the last `window` sessions (default 20);
* ``log_rvol`` — log of the S&P 500's realised volatility over the last `window` daily log
  returns, annualised (√252);
* ``drawdown`` — the S&P 500 close against its highest close of the last `high_window`
  sessions (default 252; the high so far while fewer sessions exist), ≤ 0.

Features are standardised with the training mean and standard deviation (stored in the
model). The fitted components are sorted by a stress score — the component's mean VIX,
ties broken by its mean realised volatility — so code 0 is the calmest regime and the last
code the most stressed, and names are given in that order (``calm_bull``, ``volatile_bull``,
``bear``, ``crisis`` for four regimes; ``regime_0`` … otherwise, or your own `names`).

Why a Gaussian mixture and not a Markov-switching model
-------------------------------------------------------
statsmodels' ``MarkovRegression`` and hmmlearn's ``GaussianHMM`` model the persistence of
regimes directly, but they are slow to fit on a Raspberry Pi, Markov-switching fits often
fail to converge or land on degenerate states, and their ready-made labels (smoothed
probabilities, Viterbi paths) use the whole sequence, so a past day's label changes as new
days arrive unless a forward filter is written by hand. A mixture fits in a fraction of a
second, is deterministic for a given `random_state` (k-means initialisation; the best of
`n_init` starts is kept), labels new days from stored parameters without refitting, and
scikit-learn is a well-kept library. What the mixture gives up is the temporal stability of
an HMM; two cheap, causal steps buy most of it back: the features are trailing windows
(they move slowly), and a persistence rule smooths the labels:

* a change of regime is adopted once the mixture's raw label has shown the new regime for
  `persistence` consecutive sessions (default 3), except that
* a jump into the most stressed regime is adopted at once — an alarm must not wait.

On the real 2014–2018 series this cuts the regime switches from 132 to 75 and
still labels every day of the August 2015, February 2018 and December 2018 sell-offs as
``crisis`` on the day itself. ``persistence=1`` gives the raw labels.

The first sessions
------------------
The trailing features need ``window + 1`` S&P 500 closes, so the first `window` sessions of
the S&P 500 series have no features and are **excluded**: :meth:`RegimeModel.predict` returns
the dates where both series have a value and the features are defined (pass a longer S&P 500
history to label earlier dates). Labelling them with a later day's regime would be lookahead.
:meth:`RegimeModel.codes` with ``index=`` (a panel's dates) marks such dates ``-1``
(:data:`UNKNOWN`), a code no ``regime_filter`` allows, so a gated strategy stays flat until
the regime is known. The S&P 500 features are computed on the S&P 500's own sessions
(its non-missing closes) before the two series are aligned on their common dates.

Persistence
-----------
:meth:`RegimeModel.save` writes JSON (not pickle: safe to open, readable by people and by
any scikit-learn version) atomically; :func:`load` rebuilds the mixture from it, and the
predictions are identical.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data.atomic import write_text_atomic
from .errors import DataError, did_you_mean

__all__ = ["RegimeModel", "train", "load", "features", "FEATURES", "DEFAULT_NAMES", "UNKNOWN",
           "MIN_TRAIN_SESSIONS", "FORMAT", "FORMAT_VERSION"]

FEATURES = ("log_vix", "ret", "log_rvol", "drawdown")
DEFAULT_NAMES = ("calm_bull", "volatile_bull", "bear", "crisis")
UNKNOWN = -1  # code of a date the model cannot label (before the features are defined)
MIN_TRAIN_SESSIONS = 250  # about one year of sessions with defined features
MAX_REGIMES = 12
FORMAT = "pitools.regime"
FORMAT_VERSION = 1
_ANNUAL = math.sqrt(252.0)


# -- input checks ---------------------------------------------------------------------------

def _series(name: str, s) -> pd.Series:
    """`s` as a float64 Series on a sorted, tz-naive, midnight DatetimeIndex, NaNs dropped."""
    if not isinstance(s, pd.Series):
        hint = ""
        if isinstance(s, pd.DataFrame):
            hint = f" (a DataFrame with columns {list(s.columns)[:6]!r}: pass one column, e.g. `df['close']`)"
        raise DataError(f"`{name}` must be a pandas Series of closes indexed by date, got "
                        f"{type(s).__name__}{hint}")
    if not isinstance(s.index, pd.DatetimeIndex):
        raise DataError(f"`{name}` must be indexed by date (a DatetimeIndex), got a {type(s.index).__name__} "
                        f"starting {list(s.index[:3])!r}; convert it with `s.index = pd.to_datetime(s.index)`")
    try:
        values = pd.to_numeric(s, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"`{name}` must hold numbers (closes), got dtype {s.dtype!s} with values "
                        f"like {list(s.iloc[:3])!r}") from None
    idx = s.index
    if idx.tz is not None:
        idx = idx.tz_localize(None)
    idx = pd.DatetimeIndex(idx.normalize(), name="date").as_unit("ns")
    out = pd.Series(values, index=idx, name=name).sort_index()
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()][0]
        raise DataError(f"`{name}` has the date {str(dup.date())!r} more than once; one close per session "
                        "is allowed (drop duplicates, e.g. `s[~s.index.duplicated(keep='last')]`)")
    out = out.dropna()
    bad = ~(np.isfinite(out.to_numpy()) & (out.to_numpy() > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"`{name}` = {float(out.iloc[i])!r} on {str(out.index[i].date())!r}: closes must be positive "
                        f"finite numbers ({int(bad.sum())} such values); fix or drop them (missing days may be NaN)")
    return out


def _int(name: str, value, low: int, high: int | None = None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or \
            (high is not None and value > high):
        upto = f" to {high}" if high is not None else " or more"
        none = " (or None)" if allow_none else ""
        raise DataError(f"`{name}` = {value!r} must be an integer from {low}{upto}{none}")
    return int(value)


def _names(names, n: int) -> tuple[str, ...]:
    if names is None:
        return DEFAULT_NAMES if n == len(DEFAULT_NAMES) else tuple(f"regime_{i}" for i in range(n))
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise DataError(f"`names` = {names!r} must be a list of {n} regime names, calmest first")
    out = tuple(names)
    if len(out) != n or not all(isinstance(x, str) and x for x in out) or len(set(out)) != n:
        raise DataError(f"`names` = {names!r} must be {n} distinct non-empty strings (one per regime, "
                        "calmest first)")
    return out


# -- features -------------------------------------------------------------------------------

def _features(vix: pd.Series, sp500: pd.Series, window: int, high_window: int) -> pd.DataFrame:
    """Features on the common dates of two checked series; NaN rows where not yet defined."""
    common = sp500.index.intersection(vix.index)
    if len(common) == 0:
        raise DataError(f"`vix` ({_span(vix)}) and `sp500` ({_span(sp500)}) have no date in common; "
                        "pass series that overlap")
    p = sp500.to_numpy()
    lp = np.log(p)
    r = pd.Series(np.diff(lp, prepend=np.nan))
    ret = pd.Series(lp).diff(window).to_numpy()
    rvol = r.rolling(window, min_periods=window).std(ddof=1).to_numpy() * _ANNUAL
    with np.errstate(divide="ignore"):
        log_rvol = np.log(rvol)  # a flat stretch (zero volatility) gives -inf: caught below
    high = pd.Series(p).rolling(high_window, min_periods=1).max().to_numpy()
    f = pd.DataFrame({"ret": ret, "log_rvol": log_rvol, "drawdown": p / high - 1.0}, index=sp500.index)
    f = f.loc[common]
    f.insert(0, "log_vix", np.log(vix.loc[common].to_numpy()))
    return f.where(np.isfinite(f.to_numpy()))


def _span(s: pd.Series) -> str:
    if len(s) == 0:
        return "no valid values"
    return f"{s.index[0].date()}..{s.index[-1].date()}, {len(s)} values"


def features(vix, sp500, window: int = 20, high_window: int = 252) -> pd.DataFrame:
    """The model's features (:data:`FEATURES`) per session, from data up to that session.

    Rows are the dates where both series have a value; the trailing S&P 500 features are
    NaN where not yet defined (the first `window` sessions of the S&P 500), and such rows
    are the ones :meth:`RegimeModel.predict` leaves out.

    Example
    -------
    >>> f = pt.regime.features(vix, spx)          # doctest: +SKIP
    >>> f.dropna().describe()                     # doctest: +SKIP
    """
    window = _int("window", window, 2, 260)
    high_window = _int("high_window", high_window, window, 2520)
    return _features(_series("vix", vix), _series("sp500", sp500), window, high_window)


def _smooth(raw: np.ndarray, persistence: int, n: int) -> np.ndarray:
    """The persistence rule on raw codes (causal: the label at t uses raw labels up to t)."""
    out = np.empty_like(raw)
    if raw.size == 0:
        return out
    cur, run, top = raw[0], 0, n - 1
    for t in range(raw.size):
        run = run + 1 if t and raw[t] == raw[t - 1] else 1
        if raw[t] != cur and (run >= persistence or raw[t] == top):
            cur = raw[t]
        out[t] = cur
    return out


# -- the model ------------------------------------------------------------------------------

def _gaussian_mixture(weights, means, covariances, precisions_cholesky, random_state):
    """A fitted GaussianMixture rebuilt from its parameters (no fitting)."""
    from sklearn.mixture import GaussianMixture

    k, d = means.shape
    gm = GaussianMixture(n_components=k, covariance_type="full", random_state=random_state)
    gm.weights_ = weights
    gm.means_ = means
    gm.covariances_ = covariances
    gm.precisions_cholesky_ = precisions_cholesky
    gm.precisions_ = np.einsum("kij,klj->kil", precisions_cholesky, precisions_cholesky)
    gm.converged_ = True
    gm.n_iter_ = 0
    gm.lower_bound_ = -np.inf
    gm.n_features_in_ = d
    return gm


def _precisions_cholesky(covariances: np.ndarray) -> np.ndarray:
    """What scikit-learn stores for full covariances: inv(cholesky(cov)).T per component."""
    out = np.empty_like(covariances)
    eye = np.eye(covariances.shape[1])
    for i, cov in enumerate(covariances):
        out[i] = np.linalg.solve(np.linalg.cholesky(cov), eye).T
    return out


@dataclass(frozen=True, eq=False)
class RegimeModel:
    """A trained regime model: from :func:`train` or :func:`load`.

    Attributes
    ----------
    regimes : tuple of str
        Regime names, calmest first; a regime's code is its position here.
    window, high_window : int
        Trailing windows of the features (sessions).
    persistence : int
        Sessions a new regime must persist before it is adopted (1 = raw mixture labels);
        the most stressed regime is adopted at once.
    feature_mean, feature_std : numpy.ndarray
        Training statistics used to standardise :data:`FEATURES`.
    trained_on : dict
        ``start``, ``end`` (dates, ``YYYY-MM-DD``) and ``n_sessions`` of the training data.
    """

    regimes: tuple[str, ...]
    window: int
    high_window: int
    persistence: int
    feature_mean: np.ndarray
    feature_std: np.ndarray
    trained_on: dict
    random_state: int | None
    n_init: int
    _mixture: object  # sklearn.mixture.GaussianMixture, components in regime order

    @property
    def n_regimes(self) -> int:
        return len(self.regimes)

    @property
    def mixture(self):
        """The fitted scikit-learn GaussianMixture (component i = regime code i)."""
        return self._mixture

    # -- labelling ------------------------------------------------------------------------

    def _defined(self, vix, sp500) -> pd.DataFrame:
        return _features(_series("vix", vix), _series("sp500", sp500), self.window, self.high_window).dropna()

    def _raw_proba(self, vix, sp500) -> tuple[pd.DatetimeIndex, np.ndarray]:
        f = self._defined(vix, sp500)
        if len(f) == 0:
            raise DataError(f"no session can be labelled: the features need {self.window + 1} S&P 500 closes up "
                            f"to a date that `vix` also has; pass a longer `sp500` history (at least "
                            f"{self.window + 1} sessions before the first date to label)")
        z = (f.to_numpy() - self.feature_mean) / self.feature_std
        return f.index, self._mixture.predict_proba(z)

    def probabilities(self, vix, sp500) -> pd.DataFrame:
        """The mixture's posterior probability of each regime per session (before smoothing).

        Example
        -------
        >>> model.probabilities(vix, spx).tail()      # doctest: +SKIP
        """
        index, proba = self._raw_proba(vix, sp500)
        return pd.DataFrame(proba, index=index, columns=list(self.regimes))

    def _codes(self, vix, sp500) -> pd.Series:
        index, proba = self._raw_proba(vix, sp500)
        raw = np.argmax(proba, axis=1).astype(np.int64)
        return pd.Series(_smooth(raw, self.persistence, self.n_regimes), index=index, name="regime_code")

    def predict(self, vix, sp500) -> pd.Series:
        """The regime of each session, from the stored model (no refitting).

        Parameters
        ----------
        vix, sp500 : pandas.Series
            VIX and S&P 500 closes indexed by date (NaN = missing day). The S&P 500 needs
            ``window`` sessions of history before the first date to label.

        Returns
        -------
        pandas.Series
            Named ``regime``, an ordered categorical of :attr:`regimes` (so
            ``labels >= "bear"`` works), on the dates where both series have a value and the
            trailing features are defined — the first `window` S&P 500 sessions are excluded
            (see the module docstring). A label uses data up to its date only.

        Example
        -------
        >>> labels = model.predict(vix, spx)          # doctest: +SKIP
        >>> labels.value_counts()                     # doctest: +SKIP
        """
        codes = self._codes(vix, sp500)
        cat = pd.Categorical.from_codes(codes.to_numpy(), categories=list(self.regimes), ordered=True)
        return pd.Series(cat, index=codes.index, name="regime")

    def codes(self, vix, sp500, index=None) -> pd.Series:
        """Integer regime codes (positions in :attr:`regimes`), for ``pt.backtest(regime_filter=...)``.

        Parameters
        ----------
        vix, sp500 : pandas.Series
            As :meth:`predict`.
        index : DatetimeIndex, optional
            Dates to give codes for, e.g. ``panel.dates``: a date without its own label takes
            the last earlier one (causal forward fill); a date before the first label is
            :data:`UNKNOWN` (``-1``), which no ``allowed`` set contains.

        Returns
        -------
        pandas.Series of int64, named ``regime_code``

        Example
        -------
        >>> codes = model.codes(vix, spx, index=panel.dates)                     # doctest: +SKIP
        >>> pt.backtest("sma_cross", panel, regime_filter=(codes, model.codes_of("calm_bull")))  # doctest: +SKIP
        """
        codes = self._codes(vix, sp500)
        if index is None:
            return codes
        try:
            target = pd.DatetimeIndex(index)
        except (TypeError, ValueError):
            raise DataError(f"`index` must be dates (e.g. `panel.dates`), got {type(index).__name__}") from None
        if target.tz is not None:
            target = target.tz_localize(None)
        target = target.normalize().as_unit("ns")
        if not target.is_monotonic_increasing:
            raise DataError("`index` must be sorted in increasing date order (like `panel.dates`)")
        pos = codes.index.searchsorted(target, side="right") - 1
        values = np.where(pos >= 0, codes.to_numpy()[np.maximum(pos, 0)], UNKNOWN).astype(np.int64)
        return pd.Series(values, index=pd.DatetimeIndex(index), name="regime_code")

    def codes_of(self, *names: str) -> frozenset[int]:
        """The codes of regimes named `names`: the ``allowed`` half of ``regime_filter``.

        Example
        -------
        >>> model.codes_of("calm_bull", "volatile_bull")      # doctest: +SKIP
        frozenset({0, 1})
        """
        if len(names) == 1 and not isinstance(names[0], str):
            names = tuple(names[0])
        out = set()
        for name in names:
            if name not in self.regimes:
                raise DataError(f"regime {name!r} is not one of this model's regimes.{did_you_mean(name, self.regimes)}"
                                f" Allowed: {', '.join(map(repr, self.regimes))}")
            out.add(self.regimes.index(name))
        return frozenset(out)

    def describe(self) -> pd.DataFrame:
        """One row per regime: its weight and the component's mean features in natural units
        (VIX level, `window`-session return, annualised realised volatility, drawdown)."""
        m = self._mixture.means_ * self.feature_std + self.feature_mean
        return pd.DataFrame({"weight": self._mixture.weights_, "vix": np.exp(m[:, 0]), "ret": np.expm1(m[:, 1]),
                             "rvol": np.exp(m[:, 2]), "drawdown": m[:, 3]},
                            index=pd.Index(self.regimes, name="regime"))

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Everything :func:`load` needs, as plain JSON types."""
        import sklearn

        try:
            from . import __version__ as pitools_version
        except ImportError:  # pragma: no cover - only while pitools/__init__ is half-imported
            pitools_version = None
        gm = self._mixture
        return {
            "format": FORMAT, "version": FORMAT_VERSION,
            "pitools_version": pitools_version, "sklearn_version": sklearn.__version__,
            "regimes": list(self.regimes), "features": list(FEATURES),
            "window": self.window, "high_window": self.high_window, "persistence": self.persistence,
            "random_state": self.random_state, "n_init": self.n_init, "trained_on": dict(self.trained_on),
            "feature_mean": self.feature_mean.tolist(), "feature_std": self.feature_std.tolist(),
            "weights": gm.weights_.tolist(), "means": gm.means_.tolist(), "covariances": gm.covariances_.tolist(),
            "precisions_cholesky": gm.precisions_cholesky_.tolist(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to `path` as JSON, atomically (a crash leaves the old file).

        Example
        -------
        >>> model.save("data/regime.json")            # doctest: +SKIP
        """
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        write_text_atomic(path, text + "\n")
        return path

    def __repr__(self) -> str:
        t = self.trained_on
        return (f"<RegimeModel {self.n_regimes} regimes {' < '.join(self.regimes)}; trained on "
                f"{t.get('start')}..{t.get('end')} ({t.get('n_sessions')} sessions); window {self.window}, "
                f"persistence {self.persistence}>")


def train(vix, sp500, n_regimes: int = 4, *, names: Sequence[str] | None = None, window: int = 20,
          high_window: int = 252, persistence: int = 3, random_state: int | None = 0,
          n_init: int = 5) -> RegimeModel:
    """Fit the regime model on daily VIX and S&P 500 closes.

    Parameters
    ----------
    vix, sp500 : pandas.Series
        Closes indexed by date; aligned on their common dates, NaN days dropped. Needs at
        least :data:`MIN_TRAIN_SESSIONS` common sessions with defined features.
    n_regimes : int
        Mixture components (2 to 12).
    names : list of str, optional
        Regime names, calmest first; default ``calm_bull, volatile_bull, bear, crisis`` for
        four regimes, else ``regime_0, regime_1, …``.
    window : int
        Sessions of the trailing return and realised volatility.
    high_window : int
        Sessions of the trailing high the drawdown is measured from.
    persistence : int
        Consecutive sessions a new regime must show before it is adopted (1 = raw labels);
        a jump into the most stressed regime is adopted at once.
    random_state : int or None
        Seed of the mixture's initialisation: the same data and seed give the same model.
    n_init : int
        Initialisations; the best fit is kept.

    Returns
    -------
    RegimeModel

    Example
    -------
    >>> model = pt.regime.train(vix, spx)         # doctest: +SKIP
    >>> model                                     # doctest: +SKIP
    <RegimeModel 4 regimes calm_bull < volatile_bull < bear < crisis; trained on ...>
    """
    n_regimes = _int("n_regimes", n_regimes, 2, MAX_REGIMES)
    regimes = _names(names, n_regimes)
    window = _int("window", window, 2, 260)
    high_window = _int("high_window", high_window, window, 2520)
    persistence = _int("persistence", persistence, 1, 260)
    random_state = _int("random_state", random_state, 0, 2**32 - 1, allow_none=True)
    n_init = _int("n_init", n_init, 1, 100)
    v, s = _series("vix", vix), _series("sp500", sp500)
    f = _features(v, s, window, high_window).dropna()
    if len(f) < MIN_TRAIN_SESSIONS:
        raise DataError(f"training needs at least {MIN_TRAIN_SESSIONS} sessions where `vix` and `sp500` both have "
                        f"a close and the trailing features are defined (the first {window} S&P 500 sessions warm "
                        f"up); got {len(f)} (`vix`: {_span(v)}; `sp500`: {_span(s)}). Pass longer, overlapping series.")
    x = f.to_numpy()
    mean, std = x.mean(axis=0), x.std(axis=0)
    flat = [FEATURES[i] for i in np.flatnonzero(~(std > 1e-9 * np.maximum(1.0, np.abs(mean))))]
    if flat:
        raise DataError(f"cannot train: the feature(s) {', '.join(flat)} do not vary over the training data; "
                        "check that `vix` and `sp500` are real closes")
    z = (x - mean) / std

    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(n_components=n_regimes, covariance_type="full", n_init=n_init, max_iter=500,
                         random_state=random_state).fit(z)
    # calmest first: mean VIX of the component, ties by its realised volatility
    order = np.lexsort((gm.means_[:, 2], gm.means_[:, 0]))
    mixture = _gaussian_mixture(gm.weights_[order].copy(), gm.means_[order].copy(), gm.covariances_[order].copy(),
                                gm.precisions_cholesky_[order].copy(), random_state)
    mixture.converged_, mixture.n_iter_, mixture.lower_bound_ = gm.converged_, gm.n_iter_, gm.lower_bound_
    trained_on = {"start": str(f.index[0].date()), "end": str(f.index[-1].date()), "n_sessions": int(len(f))}
    return RegimeModel(regimes, window, high_window, persistence, mean, std, trained_on, random_state, n_init,
                       mixture)


# -- loading --------------------------------------------------------------------------------

def _array(doc: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(doc[key], dtype=np.float64)
    if a.shape != shape or not np.isfinite(a).all():
        raise ValueError(f"{key!r} has shape {a.shape}, expected {shape} finite numbers")
    return a


def load(path: str | os.PathLike) -> RegimeModel:
    """Read a model written by :meth:`RegimeModel.save`.

    Raises
    ------
    DataError
        The file is missing, not JSON, not a regime model, written by a newer pitools
        (another format version), or its parameters are inconsistent. The message names
        the file.

    Example
    -------
    >>> model = pt.regime.load("data/regime.json")   # doctest: +SKIP
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
        persistence = _int("persistence", doc["persistence"], 1, 260)
        random_state = _int("random_state", doc.get("random_state"), 0, 2**32 - 1, allow_none=True)
        n_init = _int("n_init", doc.get("n_init", 1), 1, 100)
        mean = _array(doc, "feature_mean", (d,))
        std = _array(doc, "feature_std", (d,))
        weights = _array(doc, "weights", (k,))
        means = _array(doc, "means", (k, d))
        cov = _array(doc, "covariances", (k, d, d))
        if not (std > 0).all() or not (weights > 0).all() or abs(weights.sum() - 1.0) > 1e-6:
            raise ValueError("feature_std and weights must be positive, weights summing to 1")
        recomputed = _precisions_cholesky(cov)  # raises LinAlgError if a covariance is not positive definite
        if "precisions_cholesky" in doc:
            prec = _array(doc, "precisions_cholesky", (k, d, d))
            if not np.allclose(prec, recomputed, rtol=1e-6, atol=1e-9):
                raise ValueError("precisions_cholesky does not match covariances")
        else:
            prec = recomputed
        trained_on = dict(doc.get("trained_on") or {})
    except (KeyError, TypeError, ValueError, np.linalg.LinAlgError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DataError(f"{where} is damaged ({what}); retrain and save the model again") from None
    mixture = _gaussian_mixture(weights, means, cov, prec, random_state)
    return RegimeModel(regimes, window, high_window, persistence, mean, std, trained_on, random_state, n_init,
                       mixture)

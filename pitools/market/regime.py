"""The market-regime model: VIX and S&P 500 → regimes named from what they are, one per session.

>>> import pitools as pt
>>> vix, spx = pt.load_series("data/store", "^VIX"), pt.load_series("data/store", "^GSPC")  # doctest: +SKIP
>>> model = pt.regime.train(vix, spx)                                # doctest: +SKIP
>>> model.regimes                                                    # doctest: +SKIP
('calm_bull', 'volatile_bull', 'volatile', 'crisis')
>>> model.describe()                                                 # doctest: +SKIP
>>> labels = model.predict(vix, spx)                                 # doctest: +SKIP
>>> codes = model.codes(vix, spx, index=panel.dates)                 # doctest: +SKIP
>>> calm = model.codes_of(model.regimes[:2])                         # doctest: +SKIP
>>> pt.backtest("sma_cross", panel, regime_filter=(codes, calm))     # doctest: +SKIP
>>> model.save("data/regime.json")                                   # doctest: +SKIP
>>> model = pt.regime.load("data/regime.json")                       # doctest: +SKIP

The model
---------
A hidden Markov model with Gaussian emissions (hmmlearn's
:class:`~hmmlearn.hmm.GaussianHMM`, full covariances, fitted by Baum–Welch) over four
features of each session, each computed from data up to that session only (no lookahead):

* ``log_vix`` — log of the VIX close (implied volatility: the market's own fear gauge);
* ``ret`` — log return of the S&P 500 over the last `window` sessions (default 20);
* ``log_rvol`` — log of the S&P 500's realised volatility over the last `window` daily log
  returns, annualised (√252);
* ``drawdown`` — the S&P 500 close against its highest close of the last `high_window`
  sessions (default 252; the high so far while fewer sessions exist), ≤ 0.

Features are standardised with the training mean and standard deviation (stored in the
model). Persistence comes from the model: the fitted transition matrix says how likely a
regime is to hold from one session to the next (a regime's expected spell is
``1 / (1 - p_stay)`` sessions, :meth:`RegimeModel.describe`), so one odd session does not
flip the label, while a shock whose features are far more likely under another regime
switches it on the day (the sell-offs of August 2015, February 2018 and December 2018 are
labelled stressed on the day itself).

Labels use a causal forward filter, never the whole sequence
--------------------------------------------------------------
hmmlearn's ready-made labels (Viterbi paths, smoothed posteriors) use every session of the
series, so a past day's label would change as new days arrive — lookahead in a backtest.
The model therefore labels with the *forward filter*: the probability of each regime on
session t given the features up to t, ``p_t ∝ (p_{t-1} · A) ⊙ N(z_t; μ, Σ)``, started from
the transition matrix's stationary distribution (the fitted start probability describes
only the training series' first day). The label of a session is its most probable regime.
Truncating the data after t changes nothing up to t. Labelling is plain numpy on the stored
parameters: no refitting, and neither hmmlearn nor scikit-learn is imported to predict.

Fitting is EM from `n_init` seeded starts (k-means initialisation); the start with the
highest log-likelihood is kept, so the same data and `random_state` give the same model.
Every transition probability is floored at :data:`MIN_TRANSITION` (and the rows
renormalised) so that no regime becomes unreachable from another.

Regime order and names
----------------------
After the fit, each regime is described by the **features table**: the training sessions
the filter labels with it — their share, mean VIX level, mean `window`-session return
(simple, ``exp(ret) - 1``), mean annualised realised volatility, mean drawdown and the
median length of its spells (:meth:`RegimeModel.describe`; a regime that labels no training
session is described by its component's means instead). Regimes are ordered by mean VIX,
ties broken by realised volatility, so code 0 is the calmest and the last code the most
stressed, and each is named from its own row by :func:`name_regimes`:

1. a regime whose market falls — mean return below 0 *and* mean drawdown at or below
   :data:`BEAR_DRAWDOWN` (−5 %, a real drawdown) — is ``crisis`` if it is the most stressed
   regime, else ``bear``;
2. otherwise it is named by its volatility rank — ``calm`` (the calmest regime),
   ``stressed`` (the most stressed), ``volatile`` (any between) — with ``_bull`` added when
   its mean return is above 0: ``calm_bull``, ``volatile_bull``, ``stressed_bull``; a regime
   that drifts down without a real drawdown is named by its volatility alone;
3. a name given to more than one regime gets ``_2``, ``_3`` … on the second and later ones,
   in stress order.

So ``bear`` and ``crisis`` always mean a falling market in a real drawdown, ``calm*`` the
lowest VIX and ``crisis`` / ``stressed*`` the highest. Pass your own `names` to
:func:`train` to override the rule (calmest first). On the real S&P 500 + VIX of 2014–2018
(arch.data) the four regimes are ``calm_bull`` (32 % of the sessions, VIX 11.5, +2.0 % over
20 sessions, −0.4 % drawdown), ``volatile_bull`` (13 %, VIX 13.9, +2.9 %, −2.6 %: rebounds),
``volatile`` (35 %, VIX 14.8, −0.1 %, −1.6 %: flat, no real drawdown, so not a bear) and
``crisis`` (20 %, VIX 21.0, −2.0 %, −7.5 %: the sell-offs of August 2015, early 2016,
February 2018 and late 2018); the median spell is 12.5 sessions (8 for the former Gaussian
mixture with a hand-made persistence rule).

The first sessions
------------------
The trailing features need ``window + 1`` S&P 500 closes, so the first `window` sessions of
the S&P 500 series have no features and are **excluded**: :meth:`RegimeModel.predict` returns
the dates where both series have a value and the features are defined (pass a longer S&P 500
history to label earlier dates). Labelling them with a later day's regime would be lookahead.
:meth:`RegimeModel.codes` with ``index=`` (a panel's dates) marks such dates ``-1``
(:data:`UNKNOWN`), a code no ``regime_filter`` allows, so a gated strategy stays flat until
the regime is known. The S&P 500 features are computed on the S&P 500's own sessions
(its non-missing closes) before the two series are aligned on their common dates. The
filter forgets where it started within a few weeks, so a longer history changes only the
first labels.

Saving
------
:meth:`RegimeModel.save` writes JSON (not pickle: safe to open, readable by people, free of
any library's version) atomically; :func:`load` rebuilds the model from it, and the
predictions are identical.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pitools.data.atomic import write_text_atomic
from pitools.errors import DataError, check_int, did_you_mean
from pitools.kernels.layout import SESSIONS_PER_YEAR

__all__ = ["RegimeModel", "train", "load", "features", "name_regimes", "FEATURES", "TABLE_COLUMNS",
           "BEAR_DRAWDOWN", "MIN_TRANSITION", "UNKNOWN", "MIN_TRAIN_SESSIONS", "FORMAT", "FORMAT_VERSION"]

FEATURES = ("log_vix", "ret", "log_rvol", "drawdown")
# the features table: share of the training sessions, then mean features in natural units
TABLE_COLUMNS = ("weight", "vix", "ret", "rvol", "drawdown", "median_spell")
BEAR_DRAWDOWN = -0.05  # a "real" drawdown: the mean close at least 5 % below the trailing high
MIN_TRANSITION = 1e-8  # floor of every transition probability: no regime becomes unreachable
UNKNOWN = -1  # code of a date the model cannot label (before the features are defined)
MIN_TRAIN_SESSIONS = 250  # about one year of sessions with defined features
MAX_REGIMES = 12
FORMAT = "pitools.market.regime"
FORMAT_VERSION = 2  # 2: hidden Markov model (1 was a Gaussian mixture with a persistence rule)
_ANNUAL = math.sqrt(SESSIONS_PER_YEAR)


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
    upto = f" to {high}" if high is not None else " or more"
    none = " (or None)" if allow_none else ""
    return check_int(name, value, low, high, allowed=f"an integer from {low}{upto}{none}", error=DataError)


def _names(names, n: int) -> tuple[str, ...]:
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


# -- the hidden Markov model's arithmetic (numpy only) ----------------------------------------

def _log_emissions(z: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """log N(z_t; μ_k, Σ_k) for every session t and regime k, shape (n, k).

    einsum, not BLAS: a row's value then does not depend on how many rows there are, so a
    truncated series gives bit-identical numbers up to the cut.
    """
    n, d = z.shape
    out = np.empty((n, len(means)))
    for k, (mu, cov) in enumerate(zip(means, covariances)):
        prec_chol = np.linalg.inv(np.linalg.cholesky(cov)).T  # Σ⁻¹ = P Pᵀ
        y = np.einsum("nd,de->ne", z - mu, prec_chol)
        out[:, k] = np.log(np.diag(prec_chol)).sum() - 0.5 * d * math.log(2 * math.pi) - 0.5 * (y * y).sum(axis=1)
    return out


def _forward_filter(log_em: np.ndarray, start: np.ndarray, transmat: np.ndarray) -> np.ndarray:
    """P(regime at t | features up to t) for every t: the causal forward recursion, scaled."""
    like = np.exp(log_em - log_em.max(axis=1, keepdims=True))  # the best regime's likelihood is 1
    out = np.empty_like(like)
    p = start
    for t in range(like.shape[0]):
        if t:
            p = out[t - 1] @ transmat
        p = p * like[t]
        out[t] = p / p.sum()  # > 0: every transition is floored, a likelihood is 1
    return out


def _stationary(transmat: np.ndarray) -> np.ndarray:
    """The distribution π with π A = π (the long-run share of each regime)."""
    k = transmat.shape[0]
    system = np.vstack([transmat.T - np.eye(k), np.ones((1, k))])
    pi = np.linalg.lstsq(system, np.r_[np.zeros(k), 1.0], rcond=None)[0]
    pi = np.clip(pi, MIN_TRANSITION, None)
    return pi / pi.sum()


def _floored(transmat: np.ndarray) -> np.ndarray:
    a = np.maximum(np.asarray(transmat, dtype=np.float64), MIN_TRANSITION)
    return a / a.sum(axis=1, keepdims=True)


# -- the features table and the names -------------------------------------------------------

def _spells(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(regime, length) of each maximal run of one code (the last run may be unfinished)."""
    if codes.size == 0:
        return codes[:0], codes[:0]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return codes[starts], np.diff(np.r_[starts, codes.size])


def _table(f: pd.DataFrame, codes: np.ndarray, k: int, means: np.ndarray, feature_mean: np.ndarray,
           feature_std: np.ndarray) -> pd.DataFrame:
    """The features table (:data:`TABLE_COLUMNS`) of regimes 0..k-1 labelled `codes` on `f`."""
    natural = pd.DataFrame({"vix": np.exp(f["log_vix"].to_numpy()), "ret": np.expm1(f["ret"].to_numpy()),
                            "rvol": np.exp(f["log_rvol"].to_numpy()), "drawdown": f["drawdown"].to_numpy()})
    rows = natural.groupby(codes).mean().reindex(range(k))
    owner, length = _spells(codes)
    rows.insert(0, "weight", np.bincount(codes, minlength=k) / max(codes.size, 1))
    rows["median_spell"] = pd.Series(length).groupby(owner).median().reindex(range(k)).to_numpy(dtype=float)
    # a regime the filter never picks on the training data: described by its component's means
    m = means * feature_std + feature_mean
    empty = rows["vix"].isna().to_numpy()
    rows.loc[empty, ["vix", "ret", "rvol", "drawdown"]] = np.c_[np.exp(m[:, 0]), np.expm1(m[:, 1]),
                                                               np.exp(m[:, 2]), m[:, 3]][empty]
    return rows[list(TABLE_COLUMNS)].astype(np.float64)


def name_regimes(table: pd.DataFrame) -> tuple[str, ...]:
    """Names for the rows of a features table ordered calmest first (the module's naming rule).

    A falling market (mean ``ret`` < 0 and mean ``drawdown`` ≤ :data:`BEAR_DRAWDOWN`) is
    ``crisis`` in the last (most stressed) row, ``bear`` elsewhere; any other row is named
    by its rank — ``calm`` first, ``stressed`` last, ``volatile`` between — plus ``_bull``
    when its mean ``ret`` is above 0. Repeated names get ``_2``, ``_3`` … in row order.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``ret`` (mean trailing return, a fraction) and ``drawdown`` (mean drawdown,
        ≤ 0), one row per regime, calmest first — :meth:`RegimeModel.describe`.

    Example
    -------
    >>> t = pd.DataFrame({"ret": [0.02, 0.029, -0.001, -0.02], "drawdown": [-0.004, -0.026, -0.016, -0.075]})
    >>> name_regimes(t)
    ('calm_bull', 'volatile_bull', 'volatile', 'crisis')
    """
    ret, dd = table["ret"].to_numpy(dtype=float), table["drawdown"].to_numpy(dtype=float)
    k = len(table)
    base = []
    for i in range(k):
        if ret[i] < 0 and dd[i] <= BEAR_DRAWDOWN:
            base.append("crisis" if i == k - 1 else "bear")
            continue
        word = "calm" if i == 0 else "stressed" if i == k - 1 else "volatile"
        base.append(word + "_bull" if ret[i] > 0 else word)
    seen: dict[str, int] = {}
    out = []
    for name in base:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return tuple(out)


# -- the model ------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RegimeModel:
    """A trained regime model: from :func:`train` or :func:`load`.

    Attributes
    ----------
    regimes : tuple of str
        Regime names, calmest first; a regime's code is its position here.
    window, high_window : int
        Trailing windows of the features (sessions).
    feature_mean, feature_std : numpy.ndarray
        Training statistics used to standardise :data:`FEATURES`.
    transmat : numpy.ndarray
        ``transmat[i, j]``: probability that regime j follows regime i (regime order).
    start : numpy.ndarray
        The filter's belief before the first session: the stationary distribution.
    means, covariances : numpy.ndarray
        Each regime's Gaussian over the standardised features, shapes (k, 4) and (k, 4, 4).
    table : pandas.DataFrame
        The features table of the training data (:meth:`describe` without ``expected_spell``).
    trained_on : dict
        ``start``, ``end`` (dates, ``YYYY-MM-DD``) and ``n_sessions`` of the training data,
        its ``log_likelihood`` and the ``hmmlearn`` version that fitted it.
    """

    regimes: tuple[str, ...]
    window: int
    high_window: int
    feature_mean: np.ndarray
    feature_std: np.ndarray
    transmat: np.ndarray
    start: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    table: pd.DataFrame
    trained_on: dict
    random_state: int | None
    n_init: int

    @property
    def n_regimes(self) -> int:
        return len(self.regimes)

    @property
    def expected_spell(self) -> np.ndarray:
        """Sessions a regime is expected to last once entered, ``1 / (1 - transmat[i, i])``."""
        return 1.0 / (1.0 - np.diag(self.transmat))

    # -- labelling ------------------------------------------------------------------------

    def _filtered(self, vix, sp500) -> tuple[pd.DatetimeIndex, np.ndarray]:
        f = _features(_series("vix", vix), _series("sp500", sp500), self.window, self.high_window).dropna()
        if len(f) == 0:
            raise DataError(f"no session can be labelled: the features need {self.window + 1} S&P 500 closes up "
                            f"to a date that `vix` also has; pass a longer `sp500` history (at least "
                            f"{self.window + 1} sessions before the first date to label)")
        z = (f.to_numpy() - self.feature_mean) / self.feature_std
        return f.index, _forward_filter(_log_emissions(z, self.means, self.covariances), self.start, self.transmat)

    def probabilities(self, vix, sp500) -> pd.DataFrame:
        """The forward filter's probability of each regime per session, given data up to it.

        Example
        -------
        >>> model.probabilities(vix, spx).tail()      # doctest: +SKIP
        """
        index, proba = self._filtered(vix, sp500)
        return pd.DataFrame(proba, index=index, columns=list(self.regimes))

    def _codes(self, vix, sp500) -> pd.Series:
        index, proba = self._filtered(vix, sp500)
        return pd.Series(np.argmax(proba, axis=1).astype(np.int64), index=index, name="regime_code")

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
            ``labels >= model.regimes[2]`` works), on the dates where both series have a
            value and the trailing features are defined — the first `window` S&P 500
            sessions are excluded (see the module docstring). A label uses data up to its
            date only (the forward filter).

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
        >>> pt.backtest("sma_cross", panel, regime_filter=(codes, model.codes_of(model.regimes[0])))  # doctest: +SKIP
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
        """The features table the names come from: one row per regime, calmest first.

        Columns: ``weight`` (share of the training sessions labelled with the regime), the
        mean over those sessions of ``vix`` (level), ``ret`` (`window`-session return, a
        fraction), ``rvol`` (annualised realised volatility) and ``drawdown`` (≤ 0),
        ``median_spell`` (median length of its spells, sessions) and ``expected_spell``
        (``1 / (1 - p_stay)`` from the transition matrix, sessions).

        Example
        -------
        >>> model.describe().round(3)                 # doctest: +SKIP
        """
        out = self.table.copy()
        out["expected_spell"] = self.expected_spell
        out.index = pd.Index(self.regimes, name="regime")
        return out

    # -- saving ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Everything :func:`load` needs, as plain JSON types."""
        from pitools.version import __version__ as pitools_version
        table = {c: [None if not np.isfinite(v) else float(v) for v in self.table[c]] for c in TABLE_COLUMNS}
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "pitools_version": pitools_version,
            "regimes": list(self.regimes), "features": list(FEATURES),
            "window": self.window, "high_window": self.high_window,
            "random_state": self.random_state, "n_init": self.n_init, "trained_on": dict(self.trained_on),
            "feature_mean": self.feature_mean.tolist(), "feature_std": self.feature_std.tolist(),
            "transmat": self.transmat.tolist(), "start": self.start.tolist(),
            "means": self.means.tolist(), "covariances": self.covariances.tolist(), "table": table,
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
        spells = "/".join(f"{s:.0f}" for s in self.expected_spell)
        return (f"<RegimeModel {self.n_regimes} regimes {' < '.join(self.regimes)}; trained on "
                f"{t.get('start')}..{t.get('end')} ({t.get('n_sessions')} sessions); window {self.window}, "
                f"expected spells {spells} sessions>")


# -- training -------------------------------------------------------------------------------

@contextmanager
def _quiet_hmmlearn():
    """hmmlearn logs a warning whenever an EM step lowers the likelihood by rounding (~1e-4)."""
    log = logging.getLogger("hmmlearn")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _fit_hmm(z: np.ndarray, k: int, n_init: int, random_state: int | None):
    """The best of `n_init` seeded Baum–Welch fits (highest log-likelihood)."""
    from hmmlearn.hmm import GaussianHMM
    from threadpoolctl import threadpool_limits

    seeds = np.random.RandomState(random_state).randint(0, 2**31 - 1, size=n_init)
    best, best_score, failure = None, -np.inf, None
    # one BLAS thread: the matrices are 4 x 4, so more threads only double the CPU time (measured)
    # and take cores from whatever else the night runs
    with _quiet_hmmlearn(), threadpool_limits(limits=1), np.errstate(divide="ignore", invalid="ignore"):
        for seed in seeds:
            hmm = GaussianHMM(n_components=k, covariance_type="full", n_iter=200, tol=1e-3,
                              random_state=int(seed))
            try:
                hmm.fit(z)
                score = hmm.score(z)
            except (ValueError, np.linalg.LinAlgError) as exc:  # a start that collapsed a component
                failure = exc
                continue
            if np.isfinite(score) and score > best_score:
                best, best_score = hmm, score
    if best is None:
        raise DataError(f"the regime model could not be fitted with {k} regimes ({failure}); try a smaller "
                        "`n_regimes` or a longer history")
    return best, float(best_score)


def train(vix, sp500, n_regimes: int = 4, *, names: Sequence[str] | None = None, window: int = 20,
          high_window: int = 252, random_state: int | None = 0, n_init: int = 5) -> RegimeModel:
    """Fit the regime model on daily VIX and S&P 500 closes.

    Parameters
    ----------
    vix, sp500 : pandas.Series
        Closes indexed by date; aligned on their common dates, NaN days dropped. Needs at
        least :data:`MIN_TRAIN_SESSIONS` common sessions with defined features. A longer
        S&P 500 history than the VIX's is welcome: it defines the first drawdowns.
    n_regimes : int
        Hidden states (2 to 12).
    names : list of str, optional
        Regime names, calmest first; default: named from the features table by
        :func:`name_regimes` (see the module docstring).
    window : int
        Sessions of the trailing return and realised volatility.
    high_window : int
        Sessions of the trailing high the drawdown is measured from.
    random_state : int or None
        Seed of the fits' initialisation: the same data and seed give the same model.
    n_init : int
        Fits from different starts; the one with the highest likelihood is kept.

    Returns
    -------
    RegimeModel

    Example
    -------
    >>> model = pt.regime.train(vix, spx)         # doctest: +SKIP
    >>> model                                     # doctest: +SKIP
    <RegimeModel 4 regimes calm_bull < volatile_bull < volatile < crisis; trained on ...>
    """
    n_regimes = _int("n_regimes", n_regimes, 2, MAX_REGIMES)
    if names is not None:
        names = _names(names, n_regimes)
    window = _int("window", window, 2, 260)
    high_window = _int("high_window", high_window, window, 2520)
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

    hmm, log_likelihood = _fit_hmm(z, n_regimes, n_init, random_state)
    transmat = _floored(hmm.transmat_)
    means, covariances = hmm.means_.copy(), hmm.covars_.copy()
    start = _stationary(transmat)
    # calmest first: by the mean VIX (then realised volatility) of the sessions each regime labels
    codes = _forward_filter(_log_emissions(z, means, covariances), start, transmat).argmax(axis=1)
    first = _table(f, codes, n_regimes, means, mean, std)
    order = np.lexsort((first["rvol"].to_numpy(), first["vix"].to_numpy()))
    transmat, means, covariances, start = transmat[np.ix_(order, order)], means[order], covariances[order], start[order]
    codes = _forward_filter(_log_emissions(z, means, covariances), start, transmat).argmax(axis=1)
    table = _table(f, codes, n_regimes, means, mean, std)
    regimes = names if names is not None else name_regimes(table)

    from hmmlearn import __version__ as hmmlearn_version

    trained_on = {"start": str(f.index[0].date()), "end": str(f.index[-1].date()), "n_sessions": int(len(f)),
                  "log_likelihood": round(log_likelihood, 6), "hmmlearn": hmmlearn_version}
    return RegimeModel(regimes, window, high_window, mean, std, transmat, start, means, covariances,
                       table.set_axis(pd.Index(regimes, name="regime")), trained_on, random_state, n_init)


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

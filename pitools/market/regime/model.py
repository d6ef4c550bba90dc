"""The regime model: the naming of its regimes, :class:`RegimeModel` (forward filter, predict,
describe) and :func:`train`; the hidden Markov model itself is :mod:`pitools.market.regime.hmm`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pitools.data.atomic import write_text_atomic
from pitools.errors import DataError, did_you_mean
from pitools.market.regime.features import (BEAR_DRAWDOWN, FEATURES, FORMAT, FORMAT_VERSION, MAX_REGIMES,
                                            MIN_TRAIN_SESSIONS, TABLE_COLUMNS, UNKNOWN, _features, _int,
                                            _names, _series, _span)
from pitools.market.regime.hmm import fit_hmm, floored, forward_filter, log_emissions, stationary
from pitools.version import __version__ as pitools_version

__all__ = ["RegimeModel", "train", "name_regimes"]

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
        return f.index, forward_filter(log_emissions(z, self.means, self.covariances), self.start, self.transmat)

    def probabilities(self, vix, sp500) -> pd.DataFrame:
        """The forward filter's probability of each regime per session, given data up to it.

        Example
        -------
        >>> model = pt.regime.train(vix, spx)
        >>> p = model.probabilities(vix, spx)
        >>> p.tail(3).round(3)
                    calm_bull  volatile_bull   bear  stressed_bull
        date
        2026-11-18        0.0            0.0  0.998          0.002
        2026-11-19        0.0            0.0  1.000          0.000
        2026-11-20        0.0            0.0  1.000          0.000
        >>> bool(np.allclose(p.sum(axis=1), 1.0))  # a distribution over the regimes on each session
        True
        >>> bool((p.idxmax(axis=1) == model.predict(vix, spx).astype(str)).all())  # a label: the most probable
        True
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
        >>> model = pt.regime.train(vix, spx)
        >>> labels = model.predict(vix, spx)
        >>> labels.tail(3)
        date
        2026-11-18    bear
        2026-11-19    bear
        2026-11-20    bear
        Name: regime, dtype: category
        Categories (4, ...): ['calm_bull' < 'volatile_bull' < 'bear' < 'stressed_bull']
        >>> labels.index[0].date(), vix.index[0].date()  # the first 20 S&P 500 sessions have no label
        (datetime.date(2023, 12, 20), datetime.date(2023, 11, 21))
        >>> labels.value_counts(sort=False)
        regime
        calm_bull        300
        volatile_bull    247
        bear              68
        stressed_bull    118
        Name: count, dtype: int64
        >>> round(float((labels >= "bear").mean()), 2)  # ordered: the share of bear or more stressed sessions
        0.25
        >>> model.predict(vix[:"2025-06-30"], spx[:"2025-06-30"]).equals(labels[:"2025-06-30"])  # no lookahead
        True
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
        >>> model = pt.regime.train(vix, spx)
        >>> codes = model.codes(vix, spx, index=panel.dates)
        >>> codes.iloc[18:22]  # UNKNOWN until the features are defined
        date
        2023-12-18   -1
        2023-12-19   -1
        2023-12-20    0
        2023-12-21    0
        Name: regime_code, dtype: int64
        >>> len(codes) == panel.n_bars
        True
        >>> pt.backtest("sma_cross", panel, regime_filter=(codes, model.codes_of(model.regimes[0])))
        <BacktestResult sma_cross {...} on 8 symbols: portfolio sharpe 0.05, total return +0.3%, 53.0 trades>
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
        >>> model = pt.regime.train(vix, spx)
        >>> model.codes_of("calm_bull", "volatile_bull")
        frozenset({0, 1})
        >>> model.codes_of(model.regimes[2:])  # a list works too
        frozenset({2, 3})
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
        >>> model = pt.regime.train(vix, spx)
        >>> print(model.describe().round(3).to_string())
                       weight     vix    ret   rvol  drawdown  median_spell  expected_spell
        regime
        calm_bull       0.409  15.612  0.020  0.116    -0.014          64.5          74.721
        volatile_bull   0.337  23.434  0.028  0.208    -0.032          35.5          40.736
        bear            0.093  38.641 -0.047  0.345    -0.140           7.0          22.714
        stressed_bull   0.161  51.256  0.112  0.469    -0.041          29.0          28.907
        >>> round(float(model.describe()["weight"].sum()), 6)
        1.0
        """
        out = self.table.copy()
        out["expected_spell"] = self.expected_spell
        out.index = pd.Index(self.regimes, name="regime")
        return out

    # -- saving ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Everything :func:`load` needs, as plain JSON types."""
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
        >>> model = pt.regime.train(vix, spx)
        >>> path = model.save("data/regime.json")
        >>> import json
        >>> doc = json.loads(path.read_text())
        >>> doc["format"], doc["version"], doc["regimes"]
        ('pitools.market.regime', 2, ['calm_bull', 'volatile_bull', 'bear', 'stressed_bull'])
        >>> pt.regime.load(path).predict(vix, spx).equals(model.predict(vix, spx))
        True
        """
        path = Path(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")
        return path

    def __repr__(self) -> str:
        t = self.trained_on
        spells = "/".join(f"{s:.0f}" for s in self.expected_spell)
        return (f"<RegimeModel {self.n_regimes} regimes {' < '.join(self.regimes)}; trained on "
                f"{t.get('start')}..{t.get('end')} ({t.get('n_sessions')} sessions); window {self.window}, "
                f"expected spells {spells} sessions>")


# -- training -------------------------------------------------------------------------------

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
    >>> model = pt.regime.train(vix, spx)
    >>> model
    <RegimeModel 4 regimes calm_bull < volatile_bull < bear < stressed_bull; trained on 2023-12-20..2026-11-20
    (733 sessions); window 20, expected spells 75/41/23/29 sessions>
    >>> pt.regime.train(vix, spx, 2, names=["calm", "stressed"]).regimes  # your own names, calmest first
    ('calm', 'stressed')
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

    hmm, log_likelihood = fit_hmm(z, n_regimes, n_init, random_state)
    transmat = floored(hmm.transmat_)
    means, covariances = hmm.means_.copy(), hmm.covars_.copy()
    start = stationary(transmat)
    # calmest first: by the mean VIX (then realised volatility) of the sessions each regime labels
    codes = forward_filter(log_emissions(z, means, covariances), start, transmat).argmax(axis=1)
    first = _table(f, codes, n_regimes, means, mean, std)
    order = np.lexsort((first["rvol"].to_numpy(), first["vix"].to_numpy()))
    transmat, means, covariances, start = transmat[np.ix_(order, order)], means[order], covariances[order], start[order]
    codes = forward_filter(log_emissions(z, means, covariances), start, transmat).argmax(axis=1)
    table = _table(f, codes, n_regimes, means, mean, std)
    regimes = names if names is not None else name_regimes(table)

    from hmmlearn import __version__ as hmmlearn_version

    trained_on = {"start": str(f.index[0].date()), "end": str(f.index[-1].date()), "n_sessions": int(len(f)),
                  "log_likelihood": round(log_likelihood, 6), "hmmlearn": hmmlearn_version}
    return RegimeModel(regimes, window, high_window, mean, std, transmat, start, means, covariances,
                       table.set_axis(pd.Index(regimes, name="regime")), trained_on, random_state, n_init)



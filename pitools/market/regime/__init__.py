"""The market-regime model: VIX and S&P 500 → regimes named from what they are, one per session.

On the demo store (``pitools demo-data``: three synthetic years of bars and indices):

>>> import pitools as pt
>>> vix, spx = pt.load_series("data/store", "^VIX"), pt.load_series("data/store", "^GSPC")
>>> model = pt.regime.train(vix, spx)
>>> model.regimes
('calm_bull', 'volatile_bull', 'bear', 'stressed_bull')
>>> model.describe()[["weight", "vix", "ret", "drawdown", "expected_spell"]].round(2)
               weight    vix   ret  drawdown  expected_spell
regime
calm_bull        0.41  15.61  0.02     -0.01           74.72
volatile_bull    0.34  23.43  0.03     -0.03           40.74
bear             0.09  38.64 -0.05     -0.14           22.71
stressed_bull    0.16  51.26  0.11     -0.04           28.91
>>> labels = model.predict(vix, spx)
>>> str(labels.iloc[-1]), len(labels), len(vix)  # the first 20 S&P 500 sessions only warm the features up
('bear', 733, 753)
>>> codes = model.codes(vix, spx, index=panel.dates)
>>> calm = model.codes_of(model.regimes[:2])
>>> calm
frozenset({0, 1})
>>> pt.backtest("sma_cross", panel, regime_filter=(codes, calm))  # flat outside calm_bull and volatile_bull
<BacktestResult sma_cross {...} on 8 symbols: portfolio sharpe 0.25, total return +6.7%, 79.0 trades>
>>> model.save("data/regime.json")
PosixPath('data/regime.json')
>>> pt.regime.load("data/regime.json").predict(vix, spx).equals(labels)
True

The demo's VIX follows its index's volatility, not the direction of its moves, so its most
stressed regime (VIX 51) rose on average (``stressed_bull``) and the falling market in a real
drawdown (−14 % from the high) is ``bear``; on real markets the names differ (below).

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

from pitools.market.regime.features import (BEAR_DRAWDOWN, FEATURES, FORMAT, FORMAT_VERSION, MAX_REGIMES,
                                            MIN_TRAIN_SESSIONS, MIN_TRANSITION, TABLE_COLUMNS, UNKNOWN, features)
from pitools.market.regime.model import RegimeModel, name_regimes, train
from pitools.market.regime.persist import load, save
from pitools.market.regime.lifecycle import (current_regime, fit_or_update, index_series, refit_reason,
                                             regime_model_path, regime_table)

__all__ = ["RegimeModel", "train", "load", "save", "features", "name_regimes", "FEATURES", "TABLE_COLUMNS",
           "BEAR_DRAWDOWN", "MIN_TRANSITION", "UNKNOWN", "MIN_TRAIN_SESSIONS", "MAX_REGIMES", "FORMAT", "FORMAT_VERSION",
           "regime_model_path", "index_series", "refit_reason", "fit_or_update", "current_regime", "regime_table"]

"""Walk-forward scoring of a parameter set, and the deflated Sharpe ratio of a winner.

A candidate is backtested once over the whole panel (signals only ever use past bars, so
the out-of-sample stretches see exactly what they would have seen live); the daily
returns of its equal-weight portfolio are then cut into walk-forward folds:

* the out-of-sample (OOS) windows split the last ``oos_fraction`` of the bars into
  ``folds`` consecutive pieces;
* the in-sample (IS) window of a fold is every bar before its OOS window (``anchored``)
  or as many bars as the first fold's IS window (``rolling``).

Fitness = Sharpe of the concatenated OOS returns, minus a penalty for too few trades and
one for an OOS drawdown deeper than allowed (weights in ``params/strategies.yaml``). IS
figures are the mean over the folds, reported beside the OOS ones so that an overfit
winner — high IS, poor OOS — is visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from pitools.errors import ConfigError
from pitools.kernels.layout import SESSIONS_PER_YEAR as _YEAR
from pitools.kernels.metrics import MAX_DRAWDOWN, SHARPE, TOTAL_RETURN, equity_metrics_nb

__all__ = ["Scoring", "WALK_FORWARD", "walk_forward_windows", "return_metrics", "score_candidate", "deflated_sharpe"]

WALK_FORWARD = ("anchored", "rolling")  # the out-of-sample folds' in-sample windows


@dataclass(frozen=True)
class Scoring:
    """Scoring settings (``scoring:`` of params/strategies.yaml)."""

    walk_forward: str = "anchored"
    folds: int = 3
    oos_fraction: float = 0.5
    fill: str = "next_open"
    direction: str = "long_only"
    fees: float = 0.001
    slippage: float = 0.0
    min_trades_per_year: float = 1.0
    trade_penalty: float = 0.5
    max_drawdown: float = 0.35
    drawdown_penalty: float = 2.0

    def backtest_kwargs(self) -> dict:
        return {"fill": self.fill, "direction": self.direction, "fees": self.fees, "slippage": self.slippage}


def walk_forward_windows(n_bars: int, scoring: Scoring) -> list[tuple[slice, slice]]:
    """``[(in_sample, out_of_sample), …]`` bar slices of the folds, oldest first."""
    oos_start = int(round(n_bars * (1.0 - scoring.oos_fraction)))
    edges = np.linspace(oos_start, n_bars, scoring.folds + 1).round().astype(int)
    if oos_start < 2 or np.any(np.diff(edges) < 2):
        raise ConfigError(f"walk-forward: {n_bars} bars cannot make {scoring.folds} out-of-sample folds over the last "
                          f"{scoring.oos_fraction:.0%} with at least 2 bars each and an in-sample window; use fewer "
                          "folds or a longer history (max_years)")
    windows = []
    for a, b in zip(edges[:-1], edges[1:]):
        start = 0 if scoring.walk_forward == "anchored" else max(0, a - oos_start)
        windows.append((slice(start, a), slice(a, b)))
    return windows


def return_metrics(r: np.ndarray) -> dict:
    """Sharpe (annualised, risk-free 0; 0 for a never-invested account), total return, max
    drawdown and days of daily returns `r` (NaN = not started, skipped).

    Sharpe, total return and max drawdown are the metric kernels' definitions
    (:mod:`pitools.kernels.metrics`) on the equity ``cumprod(1 + r)`` started at 1.0 (so a
    first loss counts as a drawdown), except that a flat account (every return 0, which the
    kernel leaves NaN) has Sharpe 0, so it ranks below any edge instead of failing.
    """
    r = r[np.isfinite(r)]
    n = len(r)
    if n < 2:
        return {"sharpe": math.nan, "total_return": math.nan, "max_drawdown": math.nan, "days": n}
    equity = np.concatenate(([1.0], np.cumprod(1.0 + r)))
    m = equity_metrics_nb(equity, np.zeros(n + 1, dtype=np.uint8), float(_YEAR))
    sharpe = m[SHARPE] if np.isfinite(m[SHARPE]) or r.any() else 0.0
    return {"sharpe": float(sharpe),
            "total_return": float(m[TOTAL_RETURN]),
            "max_drawdown": float(m[MAX_DRAWDOWN]),
            "days": n}


def score_candidate(returns: np.ndarray, n_trades: int, n_symbols: int, windows, scoring: Scoring) -> tuple[float, dict]:
    """(fitness, details) of one candidate's daily portfolio `returns` over `windows`."""
    oos = return_metrics(np.concatenate([returns[w] for _, w in windows]))
    folds = [return_metrics(returns[w]) for w, _ in windows]
    is_sharpes = [f["sharpe"] for f in folds if np.isfinite(f["sharpe"])]
    years = np.isfinite(returns).sum() / _YEAR
    trades_per_year = n_trades / max(n_symbols, 1) / years if years > 0 else 0.0
    shortfall = max(0.0, 1.0 - trades_per_year / scoring.min_trades_per_year) if scoring.min_trades_per_year > 0 else 0.0
    excess_dd = max(0.0, (oos["max_drawdown"] if np.isfinite(oos["max_drawdown"]) else 0.0) - scoring.max_drawdown)
    penalty = scoring.trade_penalty * shortfall + scoring.drawdown_penalty * excess_dd
    fitness = oos["sharpe"] - penalty
    details = {"is_sharpe": float(np.mean(is_sharpes)) if is_sharpes else math.nan,
               "oos_sharpe": oos["sharpe"], "oos_return": oos["total_return"], "oos_max_drawdown": oos["max_drawdown"],
               "oos_days": oos["days"], "trades_per_year": trades_per_year, "penalty": penalty}
    return fitness, details


def deflated_sharpe(returns: np.ndarray, trial_sharpes, periods_per_year: float = _YEAR) -> float:
    """Probability that the winner's true Sharpe beats what the best of N trials would show by
    luck (Bailey & López de Prado, 2014): the deflated Sharpe ratio, in [0, 1].

    `returns` are the winner's (OOS) daily returns; `trial_sharpes` the annualised Sharpe of
    every trial of the search, the winner included. NaN when it cannot be computed.
    """
    r = np.asarray(returns, dtype=float)
    r = r[np.isfinite(r)]
    trials = np.asarray([s for s in trial_sharpes if np.isfinite(s)], dtype=float) / math.sqrt(periods_per_year)
    if len(r) < 3 or len(trials) < 2 or r.std(ddof=1) == 0:
        return math.nan
    sr = r.mean() / r.std(ddof=1)
    z = (r - r.mean()) / r.std(ddof=0)
    skew, kurt = float(np.mean(z ** 3)), float(np.mean(z ** 4))
    n = len(trials)
    gamma = 0.5772156649015329  # Euler–Mascheroni
    phi_inv = NormalDist().inv_cdf
    sr0 = math.sqrt(trials.var(ddof=1)) * ((1 - gamma) * phi_inv(1 - 1 / n) + gamma * phi_inv(1 - 1 / (n * math.e)))
    denom = 1 - skew * sr + (kurt - 1) / 4 * sr ** 2
    if denom <= 0:
        return math.nan
    return NormalDist().cdf((sr - sr0) * math.sqrt(len(r) - 1) / math.sqrt(denom))

"""The Gaussian hidden Markov model under the regimes: Baum–Welch fits with hmmlearn, and the
causal forward filter in numpy (a past session's probabilities never change when a later one
is added), with the transition matrix floored so that no regime is ever impossible."""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager

import numpy as np

from pitools.errors import DataError
from pitools.market.regime.features import MIN_TRANSITION

__all__ = ["log_emissions", "forward_filter", "stationary", "floored", "fit_hmm"]


def log_emissions(z: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
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


def forward_filter(log_em: np.ndarray, start: np.ndarray, transmat: np.ndarray) -> np.ndarray:
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


def stationary(transmat: np.ndarray) -> np.ndarray:
    """The distribution π with π A = π (the long-run share of each regime)."""
    k = transmat.shape[0]
    system = np.vstack([transmat.T - np.eye(k), np.ones((1, k))])
    pi = np.linalg.lstsq(system, np.r_[np.zeros(k), 1.0], rcond=None)[0]
    pi = np.clip(pi, MIN_TRANSITION, None)
    return pi / pi.sum()


def floored(transmat: np.ndarray) -> np.ndarray:
    a = np.maximum(np.asarray(transmat, dtype=np.float64), MIN_TRANSITION)
    return a / a.sum(axis=1, keepdims=True)



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


def fit_hmm(z: np.ndarray, k: int, n_init: int, random_state: int | None):
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

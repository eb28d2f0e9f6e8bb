"""p-value helpers shared by every detector: one place for each null distribution."""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats


def binomial_tail(successes: int, trials: int, prob: float) -> float:
    """P[Binomial(trials, prob) >= successes]: exact one-sided p-value of a green count."""
    if trials <= 0 or successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    return float(special.bdtrc(successes - 1, trials, prob))  # the ufunc: ~50x cheaper than binom.sf


def hypergeom_tail(successes: int, population: int, marked: int, draws: int) -> float:
    """P[Hypergeom(population, marked, draws) >= successes]: exact p for unique tokens, fixed list."""
    if draws <= 0:
        return 1.0
    return float(stats.hypergeom.sf(successes - 1, population, marked, draws))


def gamma_tail(score: float, shape: float) -> float:
    """P[Gamma(shape, 1) >= score]: exact p-value for a sum of `shape` independent Exp(1) scores."""
    if shape <= 0 or score <= 0:
        return 1.0
    return float(special.gammaincc(shape, score))  # regularised upper incomplete gamma = Gamma(shape, 1).sf


def z_score(successes: int, trials: int, prob: float) -> float:
    """Normal-approximation z of a green count; for display only, p-values are exact."""
    if trials <= 0:
        return 0.0
    return (successes - prob * trials) / math.sqrt(trials * prob * (1.0 - prob))


def permutation_p_value(num_null_at_most: int, num_resamples: int) -> float:
    """(1 + #{null <= observed}) / (T + 1): valid under exchangeability, never 0."""
    return (1.0 + num_null_at_most) / (num_resamples + 1.0)


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval for a rate (e.g. an empirical FPR)."""
    if trials <= 0:
        return (0.0, 1.0)
    a = 1.0 - confidence
    lo = 0.0 if successes == 0 else float(stats.beta.ppf(a / 2, successes, trials - successes + 1))
    hi = 1.0 if successes == trials else float(stats.beta.ppf(1 - a / 2, successes + 1, trials - successes))
    return (lo, hi)


def fisher_combine(p_values: np.ndarray) -> float:
    """Fisher's method for independent p-values (used to combine blocks)."""
    p = np.clip(np.asarray(p_values, dtype=np.float64), 1e-300, 1.0)
    return float(stats.chi2.sf(-2.0 * np.log(p).sum(), 2 * len(p)))

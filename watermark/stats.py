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


_LOG10E = math.log10(math.e)
_UNDERFLOW = 1e-290  # below this, a float tail has lost its digits: recompute in log space


def _log10_sum(log_terms: np.ndarray) -> float:
    """log10 of sum(exp(log_terms)) without leaving log space."""
    return float(special.logsumexp(log_terms)) * _LOG10E


def log10_binomial_tail(successes: int, trials: int, prob: float) -> float:
    """log10 P[Binomial(trials, prob) >= successes], finite even where the tail underflows."""
    p = binomial_tail(successes, trials, prob)
    if p > _UNDERFLOW:
        return math.log10(p)
    j = np.arange(successes, trials + 1, dtype=np.float64)
    log_pmf = (
        special.gammaln(trials + 1)
        - special.gammaln(j + 1)
        - special.gammaln(trials - j + 1)
        + j * math.log(prob)
        + (trials - j) * math.log1p(-prob)
    )
    return _log10_sum(log_pmf)


def log10_hypergeom_tail(successes: int, population: int, marked: int, draws: int) -> float:
    """log10 P[Hypergeom(population, marked, draws) >= successes], finite where the tail underflows."""
    p = hypergeom_tail(successes, population, marked, draws)
    if p > _UNDERFLOW:
        return math.log10(p)
    j = np.arange(max(successes, 0), min(marked, draws) + 1)
    return _log10_sum(stats.hypergeom.logpmf(j, population, marked, draws))


def log10_gamma_tail(score: float, shape: float) -> float:
    """log10 P[Gamma(shape, 1) >= score], finite where the tail underflows.

    For an integer shape a the tail is exp(-x) * sum_{j < a} x^j / j! (the Poisson identity),
    summed in log space; a non-integer shape uses the leading asymptotic term (shapes here count
    tokens, so they are integers).
    """
    p = gamma_tail(score, shape)
    if p > _UNDERFLOW:
        return math.log10(p)
    x = float(score)
    if float(shape).is_integer():
        j = np.arange(int(shape), dtype=np.float64)
        return (-x + float(special.logsumexp(j * math.log(x) - special.gammaln(j + 1)))) * _LOG10E
    a = float(shape)
    return ((a - 1.0) * math.log(x) - x - float(special.gammaln(a)) + math.log1p((a - 1.0) / x)) * _LOG10E


def log10_p(p_value: float) -> float:
    """log10 of a p-value that cannot underflow (permutation p-values, bounds); -inf only for 0."""
    return math.log10(p_value) if p_value > 0 else -math.inf


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

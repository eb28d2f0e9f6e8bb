"""Exact tails of weighted sums of per-token scores (entropy-aware detection: SWEET, EWD).

The weights come from the text and a language model only, never from the key, so under H0 they
are constants and the weighted statistic has an exact null law. The weights are first put on an
integer grid (`quantize_weights`: `levels` steps up to the largest weight, round to nearest); the
test statistic IS the sum with these integer weights, so its p-value below is the exact tail of
the statistic reported, not an approximation of a real-weighted one:

- green lists (h >= 1): sum_i k_i B_i, B_i i.i.d. Bernoulli(gamma): the exact lattice convolution
  (`log10_lattice_tail`: exponential tilting + one FFT, relative error ~1e-9 at any depth);
- unigram (one fixed list of K of V tokens): the same sum with the B_i those of a uniform K-subset
  (the plain test's hypergeometric, conditional on K): mixed over the number j of green tokens,
  each j-subset of the scored tokens equally likely, by an all-positive dynamic programme (no
  cancellation); texts too long for it get the Chernoff bound of the independent sum, which
  bounds the dependent one (sampling without replacement is negatively associated);
- gumbel: sum_i k_i E_i, E_i i.i.d. Exp(1). With b the smallest level, k E is b times a
  Gamma(1 + NegBin(1, b / k)) (moment generating functions), so the sum is b Gamma(T + K) with K a
  sum of negative binomials, and P[S >= s] = P[K - N >= 1 - T] with N ~ Poisson(s / b)
  independent: a lattice tail again. K's components are capped where their tails are below the
  Chernoff bound of the tail sought times 1e-8 and those tails are ADDED to the result, and
  capping N only enlarges the event, so the reported p-value is never below the exact one
  (beyond float rounding). Where that Chernoff bound is below e^-600 (p < 1e-260, beyond what
  the pmfs resolve in floats) the bound itself is reported: valid, and far past any level.

With all levels equal every function returns the plain test's tail (binomial, hypergeometric,
Gamma) from the very same helper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, special, stats

from .pvalues import (
    log10_binomial_tail,
    log10_gamma_tail,
    log10_hypergeom_tail,
    log10_lattice_tail,
)

WEIGHT_LEVELS = 32  # grid steps up to the largest weight: rounding moves a weight by <= 1/64 of the largest
MAX_WEIGHT_LEVELS = 4096
SUBSET_DP_BUDGET = 2 * 10**8  # cells the unigram programme may visit; beyond, the Chernoff bound
DEEP_LOG_TAIL = -600.0  # natural log (p ~ 1e-261): deeper gumbel tails are reported by their Chernoff bound
_LOG10E = math.log10(math.e)


def quantize_weights(weights: Sequence[float] | np.ndarray, levels: int = WEIGHT_LEVELS) -> np.ndarray:
    """Integer weights round(levels * w / max(w)) in [0, levels]; all zeros stay zeros.

    Only the ratios of the weights matter to the test, so the grid is relative to the largest."""
    if not 1 <= levels <= MAX_WEIGHT_LEVELS:
        raise ValueError(f"levels must be in [1, {MAX_WEIGHT_LEVELS}], got {levels}")
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size and (not np.all(np.isfinite(w)) or w.min() < 0.0):
        raise ValueError("weights must be finite and non-negative")
    top = float(w.max()) if w.size else 0.0
    if top <= 0.0:
        return np.zeros(w.size, dtype=np.int64)
    return np.rint(w * (levels / top)).astype(np.int64)


def _positive_levels(levels: np.ndarray) -> tuple[np.ndarray, int]:
    """The positive levels divided by their greatest common divisor, and that divisor."""
    k = np.asarray(levels, dtype=np.int64)
    k = k[k > 0]
    if not k.size:
        return k, 1
    g = int(np.gcd.reduce(k))
    return k // g, g


def _counts(k: np.ndarray) -> list[tuple[int, int]]:
    values, counts = np.unique(k, return_counts=True)
    return [(int(v), int(c)) for v, c in zip(values, counts, strict=True)]


def log10_weighted_binomial_tail(levels: np.ndarray, observed: int, prob: float) -> float:
    """log10 P[sum_i k_i B_i >= observed], B_i i.i.d. Bernoulli(prob), k_i >= 0 integers. Exact."""
    k, g = _positive_levels(levels)
    need = -(-int(observed) // g)  # the sum is a multiple of g: S >= observed iff S / g >= ceil(observed / g)
    if need <= 0 or not k.size:
        return 0.0
    if k.min() == k.max():  # one level: a binomial count of ceil(need / level) successes
        return log10_binomial_tail(-(-need // int(k[0])), int(k.size), prob)
    comps = []
    for value, copies in _counts(k):
        pmf = np.zeros(value + 1)
        pmf[0], pmf[value] = 1.0 - prob, prob
        comps.append((pmf, copies))
    return log10_lattice_tail(comps, need)


def _chernoff_log(log_mgf, observed: float, theta_max: float) -> float:
    """min over theta in (0, theta_max) of log E e^{theta S} - theta observed (natural log), <= 0."""

    def bound(theta: float) -> float:
        return float(log_mgf(theta)) - theta * observed

    res = optimize.minimize_scalar(bound, bounds=(0.0, theta_max), method="bounded", options={"xatol": 1e-10})
    return min(0.0, float(res.fun), bound(0.0))


def log10_weighted_hypergeom_tail(levels: np.ndarray, observed: int, population: int, marked: int) -> float:
    """log10 P[sum_i k_i X_i >= observed], (X_i) the green indicators of len(levels) distinct tokens
    under one uniformly random list of `marked` of `population` tokens (the unigram null).

    Exact: sum over j of Hypergeom(j) times P[the weights of a uniform j-subset sum to >= observed],
    the latter by a dynamic programme over tokens whose terms are all positive. Beyond
    SUBSET_DP_BUDGET cells, the Chernoff bound of the independent Bernoulli(marked / population)
    sum, valid here because such indicators are negatively associated (conservative)."""
    k, g = _positive_levels(levels)
    need = -(-int(observed) // g)
    m = int(k.size)
    if need <= 0 or not m:
        return 0.0
    if k.min() == k.max():
        return log10_hypergeom_tail(-(-need // int(k[0])), population, marked, m)
    total = int(k.sum())
    if need > total:
        return -math.inf
    top_j = min(m, marked)
    if m * (top_j + 1) * (total + 1) > SUBSET_DP_BUDGET:
        q = marked / population
        counts = _counts(k)

        def log_mgf(theta: float) -> float:
            return sum(c * math.log1p(q * math.expm1(theta * v)) for v, c in counts)

        return _chernoff_log(log_mgf, need, 50.0) * _LOG10E
    prob = np.zeros(
        (top_j + 1, total + 1)
    )  # prob[j, s]: P[a uniform j-subset of the tokens so far sums to s]
    prob[0, 0] = 1.0
    for i, w in enumerate(
        k.tolist()
    ):  # token i + 1 joins: in a uniform j-subset with probability j / (i + 1)
        hi = min(i + 1, top_j)
        j = np.arange(1, hi + 1, dtype=np.float64)[:, None]
        take = prob[:hi, : total + 1 - w] * (j / (i + 1))
        prob[1 : hi + 1] *= 1.0 - j / (i + 1)
        prob[1 : hi + 1, w:] += take
    tails = np.cumsum(prob[:, ::-1], axis=1)[:, ::-1][:, need]  # P[sum >= need | j green]
    js = np.arange(top_j + 1)
    with np.errstate(divide="ignore"):
        terms = stats.hypergeom.logpmf(js, population, marked, m) + np.log(tails)
    if not np.any(np.isfinite(terms)):
        return -math.inf
    return min(0.0, float(special.logsumexp(terms)) * _LOG10E)


def _gamma_chernoff_log(counts: list[tuple[int, int]], score: float) -> float:
    """Chernoff bound (natural log) of P[sum k_i E_i >= score], E_i i.i.d. Exp(1)."""
    kmax = max(v for v, _ in counts)

    def log_mgf(theta: float) -> float:
        return -sum(c * math.log1p(-theta * v) for v, c in counts)

    return _chernoff_log(log_mgf, score, (1.0 - 1e-12) / kmax)


def _capped_negbin(copies: int, p: float, log_cut: float) -> tuple[np.ndarray, float]:
    """(pmf of min(K, m), P[K > m]) for K ~ NegBin(copies, p) (failures before `copies` successes),
    m the first cap whose tail is below e^log_cut. (special functions: the frozen scipy.stats
    distributions cost more than the sums here)"""
    mean, sd = copies * (1.0 - p) / p, math.sqrt(copies * (1.0 - p)) / p
    m = int(mean + 8.0 * sd + 16)
    cut = math.exp(log_cut)
    while (rest := float(special.betainc(m + 1, copies, 1.0 - p))) > cut:  # P[K > m] = I_{1-p}(m + 1, n)
        m = int(m + max(m - mean, 16.0))
    x = np.arange(m + 1, dtype=np.float64)
    log_pmf = special.gammaln(x + copies) - special.gammaln(x + 1) - special.gammaln(copies)
    pmf = np.exp(log_pmf + copies * math.log(p) + x * math.log1p(-p))
    pmf[m] += rest  # min(K, m): the mass beyond the cap sits on it
    return pmf, rest


def _reflected_poisson(x: float) -> tuple[np.ndarray, int]:
    """(pmf of M - min(N, M), M) for N ~ Poisson(x), M well above x's bulk (capping only enlarges
    the event K - N >= c, so the cap costs tightness beyond M alone, never validity)."""
    cap = int(math.ceil(x + 10.0 * math.sqrt(x) + 50.0))
    n = np.arange(cap, dtype=np.float64)  # N = n < M gives the value M - n
    out = np.empty(cap + 1)
    out[1:] = np.exp(n * math.log(x) - x - special.gammaln(n + 1))[::-1]
    out[0] = float(special.pdtrc(cap - 1, x))  # P[N >= M]
    return out, cap


def log10_weighted_gamma_tail(levels: np.ndarray, score: float) -> float:
    """log10 P[sum_i k_i E_i >= score], E_i i.i.d. Exp(1), k_i >= 0 integers (the weighted Gumbel
    null). Exact up to float rounding and the truncation bound added (see the module docstring):
    never below the exact tail."""
    k, g = _positive_levels(levels)
    x_total = float(score) / g
    t = int(k.size)
    if x_total <= 0.0 or not t:
        return 0.0
    b = int(k.min())
    if k.max() == b:
        return log10_gamma_tail(x_total / b, t)
    counts = _counts(k)
    x = x_total / b  # S / b = Gamma(T + K)
    chernoff = _gamma_chernoff_log(counts, x_total)
    if chernoff < DEEP_LOG_TAIL:  # beyond the float range of the pmfs: the bound itself (valid)
        return chernoff * _LOG10E
    log_cut = chernoff - 8.0 * math.log(10.0) - math.log(len(counts))
    comps, rest = [], 0.0
    for value, copies in counts:
        if value == b:  # p = 1: K = 0, the Gamma shape only
            continue
        pmf, r = _capped_negbin(copies, b / value, log_cut)
        comps.append((pmf, 1))
        rest += r
    reflected, cap = _reflected_poisson(x)
    comps.append((reflected, 1))
    log10_p = log10_lattice_tail(comps, cap + 1 - t)
    if rest > 0.0:
        log10_p = float(np.logaddexp(log10_p / _LOG10E, math.log(rest))) * _LOG10E
    return min(0.0, log10_p)

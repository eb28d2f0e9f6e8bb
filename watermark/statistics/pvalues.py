"""p-value helpers shared by every detector: one place for each null distribution."""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np
from scipy import fft as sp_fft
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


HYPERGEOM_TABLE_MAX = 1 << 16  # texts of up to this many draws read their tail from a table


@functools.lru_cache(maxsize=64)
def _hypergeom_log10_sf(population: int, marked: int, draws: int) -> tuple[int, np.ndarray]:
    """(lo, log10 P[X >= s] for s = lo..hi): one log-pmf vector, summed from the top in log space.
    Every count of one text length and list reads it (a keyring's many keys, the span scan)."""
    lo, hi = max(0, draws - (population - marked)), min(marked, draws)
    log_pmf = stats.hypergeom.logpmf(np.arange(lo, hi + 1), population, marked, draws)
    log_sf = np.logaddexp.accumulate(log_pmf[::-1])[::-1] * _LOG10E
    log_sf.setflags(write=False)
    return lo, log_sf


def log10_hypergeom_tail(successes: int, population: int, marked: int, draws: int) -> float:
    """log10 P[Hypergeom(population, marked, draws) >= successes], finite where the tail underflows.

    Up to HYPERGEOM_TABLE_MAX draws the value comes from the text length's table (relative error
    ~1e-10 against scipy's `hypergeom.sf`); beyond, from scipy's survival function."""
    if draws <= 0:
        return 0.0
    if draws <= HYPERGEOM_TABLE_MAX:
        lo, log_sf = _hypergeom_log10_sf(int(population), int(marked), int(draws))
        if successes <= lo:
            return 0.0
        i = int(successes) - lo
        return min(0.0, float(log_sf[i])) if i < len(log_sf) else -math.inf
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


def log10_gamma_pair_tail(score: float, shape: int, a: float, b: float) -> float:
    """log10 P[a X + b Y >= score], X, Y independent Gamma(shape, 1), integer shape, a, b >= 0.

    Exact, and never below the true tail: with a >= b > 0, a X is b times a Gamma(shape + K)
    mixed over K ~ NegativeBinomial(shape, b / a) (expand the moment generating function), so the
    sum is a mixture of Gamma(2 shape + k, scale b) with positive weights: the series is summed in
    log space (Poisson identity, one cumulative log-sum) and its tail beyond the last term is
    added as a geometric bound. Used for two-key Gumbel scores (weighted early fusion; the per-token
    maximum of two Exp(1) scores is Exp(2) + Exp(1), so a = 1, b = 1/2).
    """
    a, b = max(a, b), min(a, b)
    if shape <= 0 or score <= 0:
        return 0.0
    if b <= 0.0 or a == b:
        return log10_gamma_tail(score / a, shape * (1 if b <= 0.0 else 2))
    t, x, p = int(shape), float(score) / b, b / a
    log_q = math.log1p(-p)
    spread = math.sqrt(t * (1 - p) / (p * p) + x)
    k_max = int(max(t * (1 - p) / p, x - 2 * t) + 10 * spread + 50)
    while True:
        j = np.arange(2 * t + k_max, dtype=np.float64)
        log_fact = special.gammaln(j + 1)  # log j!, shared by both factors
        k = j[: k_max + 1]
        log_nb = log_fact[t - 1 : t + k_max] - log_fact[: k_max + 1] - log_fact[t - 1]
        log_nb += t * math.log(p) + k * log_q
        log_cdf = np.logaddexp.accumulate(j * math.log(x) - x - log_fact)  # log P[Poisson(x) <= j]
        terms = log_nb + np.minimum(log_cdf[2 * t - 1 :], 0.0)
        top = float(terms.max())
        log_sum = top + math.log(float(np.exp(terms - top).sum()))
        ratio = (t + k_max + 1) / (k_max + 2) * (1 - p)  # NB pmf ratio, decreasing in k beyond here
        if ratio < 1.0:
            log_next = log_nb[-1] + math.log((t + k_max) / (k_max + 1)) + log_q
            log_rest = log_next - math.log1p(-ratio)  # >= P[K > k_max], the terms left out
            if log_rest < log_sum - 70.0 or k_max > 1 << 26:
                return min(0.0, float(np.logaddexp(log_sum, log_rest)) * _LOG10E)
        k_max *= 2


LATTICE_EXACT_MAX = 1 << 23  # largest support convolved exactly; beyond it, a Chernoff bound
LATTICE_CACHE_MAX = 1 << 20  # supports up to this size keep their untilted distribution in memory
LATTICE_CACHE_BYTES = 64 << 20  # all kept distributions together; the oldest are dropped first
UNTILTED_MIN_TAIL = 1e-4  # tails at least this large are summed from the untilted distribution


class _UntiltedCache:
    """The untilted distribution of a sum, by its components: a keyring scores many texts of one
    length against many keys, and every null key's tail reads the same distribution."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.used = max_bytes, 0
        self.dists: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, key: tuple, make: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self.dists:
            self.dists.move_to_end(key)
            return self.dists[key]
        dist = make()
        while self.dists and self.used + dist.nbytes > self.max_bytes:
            self.used -= self.dists.popitem(last=False)[1].nbytes
        if dist.nbytes <= self.max_bytes:
            self.dists[key], self.used = dist, self.used + dist.nbytes
        return dist


_UNTILTED = _UntiltedCache(LATTICE_CACHE_BYTES)


def _lattice_components(
    components: Sequence[tuple[np.ndarray, int]], observed: int
) -> tuple[list[tuple[np.ndarray, int]], int]:
    """Normalised, trimmed pmfs with copies > 0, and the support's common step divided out: a sum
    of multiples of g is >= observed exactly when its g-th part is >= ceil(observed / g), and the
    FFT is g times shorter (pmfs on a coarse lattice, e.g. scaled weights that were not reduced)."""
    comps = []
    for pmf, copies in components:
        q = np.trim_zeros(np.asarray(pmf, dtype=np.float64), "b")
        if copies > 0 and q.size:
            comps.append((q / q.sum(), int(copies)))
    step = 0
    for q, _ in comps:
        step = math.gcd(step, *np.flatnonzero(q).tolist())
    if step > 1:
        comps = [(q[::step], c) for q, c in comps]
        observed = -(-observed // step)
    return comps, observed


def _tilted(logs: list[tuple[np.ndarray, int]], theta: float) -> tuple[float, float, list[np.ndarray]]:
    """(log M(theta), tilted mean of S, tilted pmfs) of the sum with log pmfs `logs`."""
    log_m, mean, pmfs = 0.0, 0.0, []
    for lq, c in logs:
        w = lq + theta * np.arange(len(lq))
        top = float(w.max())
        t = np.exp(w - top)
        total = float(t.sum())
        t /= total
        log_m += c * (top + math.log(total))
        mean += c * float(t @ np.arange(len(t)))
        pmfs.append(t)
    return log_m, mean, pmfs


def _tilt_to(logs: list[tuple[np.ndarray, int]], observed: int) -> float:
    """A tilt whose mean is the observed value (bisection on the monotone tilted mean)."""
    lo, hi = 0.0, 1.0
    while _tilted(logs, hi)[1] < observed:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-3 * hi:  # any tilt is exact; a near-optimal one only keeps digits
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _tilted(logs, mid)[1] < observed else (lo, mid)
    return hi


def _convolved(pmfs: list[np.ndarray], copies: list[int], top: int) -> np.ndarray:
    """The distribution of the sum on 0..top: one FFT, powers in polar form (~5x faster than
    complex **), no circular wrap-around (the length exceeds top)."""
    size = sp_fft.next_fast_len(top + 1, real=True)
    log_abs, angle = np.zeros(size // 2 + 1), np.zeros(size // 2 + 1)
    for t, c in zip(pmfs, copies, strict=True):
        f = sp_fft.rfft(t, size)
        with np.errstate(divide="ignore"):
            log_abs += c * np.log(np.abs(f))
        angle += c * np.angle(f)
    spectrum = np.exp(log_abs) * (np.cos(angle) + 1j * np.sin(angle))
    return np.clip(sp_fft.irfft(spectrum, size)[: top + 1], 0.0, None)


def log10_lattice_tail(components: Sequence[tuple[np.ndarray, int]], observed: int) -> float:
    """log10 P[S >= observed], S a sum of independent integer variables: for each (pmf, copies),
    `copies` i.i.d. draws with P[X = x] = pmf[x], x = 0..len(pmf) - 1.

    Exact up to float rounding (relative error ~1e-9 at any depth of the tail). Tails of at least
    UNTILTED_MIN_TAIL are summed from the untilted distribution (one FFT, kept per components, so
    a keyring's null keys share it). Deeper tails exponentially tilt the pmfs so that the observed
    value is the tilted mean, convolve by one FFT and un-tilt in log space, so no tail term is
    swamped by the bulk. Sums whose support exceeds LATTICE_EXACT_MAX get the Chernoff bound at the
    same tilt instead (valid, conservative). Used for SynthID-Text's weighted g-score and
    table-conditional nulls and for green lists drawn without replacement (sums of hypergeometrics).
    """
    comps, observed = _lattice_components(components, observed)
    top = sum(c * (len(q) - 1) for q, c in comps)
    if observed <= 0 or not comps:
        return 0.0
    if observed > top:
        return -math.inf
    if len(comps) == 1 and len(comps[0][0]) == 2:  # a binomial: the special function is faster
        ((q, c),) = comps
        return log10_binomial_tail(observed, c, float(q[1]))
    with np.errstate(divide="ignore"):
        logs = [(np.log(q), c) for q, c in comps]
    if observed == top:  # only the all-maximal outcome reaches it
        return sum(c * float(lq[-1]) for lq, c in logs) * _LOG10E
    copies = [c for _, c in comps]
    log_m, mean, pmfs = _tilted(logs, 0.0)
    if top + 1 <= LATTICE_CACHE_MAX:
        key = tuple((q.tobytes(), c) for q, c in comps)
        tail = float(_UNTILTED.get(key, lambda: _convolved(pmfs, copies, top))[observed:].sum())
        if tail >= UNTILTED_MIN_TAIL or (mean >= observed and tail > 0.0):
            return min(0.0, (log_m + math.log(tail)) * _LOG10E)
    theta = 0.0
    if mean < observed:
        theta = _tilt_to(logs, observed)
        log_m, mean, pmfs = _tilted(logs, theta)
    if top + 1 > LATTICE_EXACT_MAX:
        return (log_m - theta * observed) * _LOG10E
    dist = _convolved(pmfs, copies, top)[observed:]
    tail = float(dist @ np.exp(-theta * np.arange(len(dist))))
    if tail <= 0.0:
        return -math.inf
    return min(0.0, (log_m - theta * observed + math.log(tail)) * _LOG10E)


def lattice_tail(components: Sequence[tuple[np.ndarray, int]], observed: int) -> float:
    """P[S >= observed] for `log10_lattice_tail`'s sum (0.0 where it underflows)."""
    return 10.0 ** log10_lattice_tail(components, observed)


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


# ---- vectorised tails (many windows of one text at once; the span scan) ------------------------


def _fill_underflow(log10_p: np.ndarray, p: np.ndarray, scalar: Callable[[int], float]) -> np.ndarray:
    """Entries whose float tail underflowed are recomputed one by one in log space."""
    for i in np.flatnonzero(p <= _UNDERFLOW):
        log10_p[i] = scalar(int(i))
    return log10_p


def log10_binomial_tails(successes: np.ndarray, trials: np.ndarray, prob: float) -> np.ndarray:
    """`log10_binomial_tail` elementwise over arrays of counts."""
    s, t = np.broadcast_arrays(np.asarray(successes, np.int64), np.asarray(trials, np.int64))
    with np.errstate(divide="ignore"):
        p = np.where(s <= 0, 1.0, special.bdtrc(np.maximum(s - 1, 0), t, prob))
        p = np.where(s > t, 0.0, p)
        out = np.log10(p)
    live = (s > 0) & (s <= t)
    return _fill_underflow(
        out, np.where(live, p, 1.0), lambda i: log10_binomial_tail(int(s.flat[i]), int(t.flat[i]), prob)
    )


def log10_hypergeom_tails(
    successes: np.ndarray, population: int, marked: int, draws: np.ndarray
) -> np.ndarray:
    """`log10_hypergeom_tail` elementwise over arrays of counts (one population and list)."""
    s, d = np.broadcast_arrays(np.asarray(successes, np.int64), np.asarray(draws, np.int64))
    p = np.where(d <= 0, 1.0, stats.hypergeom.sf(s - 1, population, marked, np.maximum(d, 0)))
    with np.errstate(divide="ignore"):
        out = np.log10(p)
    return _fill_underflow(
        out, p, lambda i: log10_hypergeom_tail(int(s.flat[i]), population, marked, int(d.flat[i]))
    )


def log10_gamma_tails(scores: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """`log10_gamma_tail` elementwise over arrays of sums and shapes (any equal or broadcasting
    shapes). Few numpy calls when every entry is live (a detector's per-text call), with the
    same values as the general path."""
    x, a = np.asarray(scores, np.float64), np.asarray(shapes, np.float64)
    if x.shape != a.shape:
        x, a = np.broadcast_arrays(x, a)
    if np.minimum.reduce(np.minimum(a, x), axis=None, initial=1.0) > 0.0:  # all live, no NaN
        p = special.gammaincc(a, x)
    else:
        live = (a > 0) & (x > 0)
        p = np.where(live, special.gammaincc(np.where(a > 0, a, 1.0), np.maximum(x, 0.0)), 1.0)
    out = np.log10(np.maximum(p, _UNDERFLOW))  # entries at or below _UNDERFLOW are recomputed
    if np.minimum.reduce(p, axis=None, initial=1.0) <= _UNDERFLOW:
        if np.ndim(out) == 0:
            return np.float64(log10_gamma_tail(float(x), float(a)))
        flat = out.reshape(-1)  # a view: out is a fresh contiguous array
        _fill_underflow(flat, p.reshape(-1), lambda i: log10_gamma_tail(float(x.flat[i]), float(a.flat[i])))
    return out


# ---- the largest cell of a uniform multinomial (MPAC's per-position statistic) ------------------

_BULK_TAIL = 1e-6  # below this P[max >= m] comes from inclusion-exclusion in log space, not 1 - cdf
_PMF_FLOOR = 1e-300  # possible outcomes never get probability 0 (conservative, far below any alpha)


@functools.lru_cache(maxsize=4096)
def max_count_pmf(n: int, cells: int) -> np.ndarray:
    """P[max_s N_s = m], m = 0..n, for (N_1..N_r) ~ Multinomial(n, r equal cells).

    Exact up to float rounding, relative to each entry in the tail: where P[max >= m] >= 1e-6
    it is 1 - P[all N_s < m] (Poissonisation: r truncated Poisson(n / r) pmfs convolved, read at
    n); beyond, inclusion-exclusion S1 - S2 in log space (S3 / S1 <= C(r,3) / r * P[N_1 >= m]^2
    by negative association, below 1e-12 there). Read-only (cached)."""
    if n < 0 or cells < 2:
        raise ValueError("max_count_pmf needs n >= 0 and at least 2 cells")
    if n == 0:
        return _read_only(np.ones(1))
    log_tail = np.full(n + 2, -np.inf)  # log P[max >= m], m = 0..n+1
    lo = -(-n // cells)  # the max is at least ceil(n / r)
    log_tail[: lo + 1] = 0.0
    m = lo + 1
    j = np.arange(n + 1)
    poisson = np.exp(j * math.log(n / cells) - n / cells - special.gammaln(j + 1.0))
    while m <= n:
        upper = 1.0 - _all_below(n, cells, poisson[:m])  # P[max >= m]
        if upper < _BULK_TAIL:
            break
        log_tail[m] = math.log(upper)
        m += 1
    if m <= n:
        log_tail[m : n + 1] = _log_max_tail(n, cells, np.arange(m, n + 1))
    with np.errstate(invalid="ignore"):  # -inf - -inf where both tails are 0
        step = np.nan_to_num(log_tail[1:] - log_tail[:-1], nan=-np.inf)
    pmf = np.exp(log_tail[:-1]) * -np.expm1(np.minimum(step, 0.0))  # P[>= m] (1 - P[>= m+1] / P[>= m])
    pmf[:lo] = 0.0
    pmf[lo:] = np.maximum(pmf[lo:], _PMF_FLOOR)
    return _read_only(pmf / pmf.sum())


def _read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _all_below(n: int, cells: int, poisson: np.ndarray) -> float:
    """P[every N_s < m] for Multinomial(n, r equal cells), given the Poisson(n / r) pmf at
    0..m - 1 (absolute precision ~1e-14)."""
    out, base, k = np.ones(1), poisson, cells
    while k:  # the r-fold convolution by squaring, truncated at n
        if k & 1:
            out = _convolve(out, base)[: n + 1] if out.size > 1 else base[: n + 1]
        k >>= 1
        if k:
            base = _convolve(base, base)[: n + 1]
    value = float(out[n]) if out.size > n else 0.0
    return min(1.0, max(0.0, value / float(stats.poisson.pmf(n, n))))


def _convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Direct convolution (exact sums) up to 2,048 terms; overlap-add FFT beyond (abs. error ~1e-14)."""
    if min(a.size, b.size) <= 2048:
        return np.convolve(a, b)
    from scipy import signal

    return signal.oaconvolve(a, b)


def _log_max_tail(n: int, cells: int, ms: np.ndarray) -> np.ndarray:
    """log P[max >= m] = log(S1 - S2) for each m in `ms` (the far tail: S3 is negligible there)."""
    p = 1.0 / cells
    log_s1 = math.log(cells) + log10_binomial_tails(ms, np.full(ms.shape, n), p) / _LOG10E
    out = log_s1.copy()
    pairs = math.log(cells * (cells - 1) / 2)
    for idx, m in enumerate(ms):
        if 2 * m > n:
            break  # two cells cannot both reach m
        i = np.arange(m, n - m + 1)
        rest = n - i
        if cells == 2:
            log_second = np.where(rest >= m, 0.0, -np.inf)
        else:
            log_second = stats.binom.logsf(m - 1, rest, 1.0 / (cells - 1))
        log_s2 = pairs + float(special.logsumexp(stats.binom.logpmf(i, n, p) + log_second))
        if log_s2 < log_s1[idx] - 45.0:
            break  # S2 / S1 < 1e-19 here and beyond (it falls with m)
        out[idx] = log_s1[idx] + math.log1p(-min(math.exp(log_s2 - log_s1[idx]), 1.0))
    return out


def max_count_mean(n: int, cells: int) -> float:
    """E[max_s N_s] under `max_count_pmf(n, cells)`."""
    pmf = max_count_pmf(n, cells)
    return float(pmf @ np.arange(pmf.size))


def log10_max_count_tail(sizes: Sequence[int], observed: int, cells: int) -> float:
    """log10 P[sum_p max_s N_{p,s} >= observed] for independent uniform multinomials of `sizes`
    tokens over `cells` cells: MPAC's "watermarked at all" test, valid whatever the payload.

    The per-position laws (`max_count_pmf`) are convolved exactly by `log10_lattice_tail`; where
    its FFT underflows, the Chernoff bound at the same tilt (valid, conservative) is returned."""
    counts: dict[int, int] = {}
    for n in sizes:
        if n > 0:
            counts[int(n)] = counts.get(int(n), 0) + 1
    comps = [(max_count_pmf(n, cells), c) for n, c in sorted(counts.items())]
    result = log10_lattice_tail(comps, observed)
    if math.isfinite(result) or observed > sum(n * c for n, c in counts.items()):
        return result
    return _log10_chernoff(comps, observed)


def _log10_chernoff(components: Sequence[tuple[np.ndarray, int]], observed: int) -> float:
    """min over theta >= 0 of log10 E[exp(theta (S - observed))], on a grid (any theta is valid)."""
    best = 0.0
    for theta in np.geomspace(1e-3, 50.0, 400):
        log_m = 0.0
        for pmf, c in components:
            with np.errstate(divide="ignore"):
                w = np.log(pmf) + theta * np.arange(pmf.size)
            log_m += c * float(special.logsumexp(w))
        best = min(best, (log_m - theta * observed) * _LOG10E)
    return best

"""The sequential Monte Carlo permutation test used by the distortion-free detectors.

The plain test draws T null statistics and reports (1 + #{null <= observed}) / (T + 1), which is
valid because the observed and null statistics are exchangeable under H0 (`stats.permutation_p_value`).
Besag & Clifford (1991) make it sequential without losing validity: draw null statistics one at
a time and stop as soon as `stop_after` = h of them are <= the observed one; the p-value is then
h / l, where l is the number drawn so far. If the T-th draw arrives first, the p-value is the plain
one. A text that is clearly not watermarked therefore costs about h / p draws instead of T, while a
watermarked text still gets the full resolution 1 / (T + 1). Nulls may be computed in batches: the
stopping rule is applied draw by draw inside each batch, so the result does not depend on batching.

Deciding at a level alpha (`alpha=`): the run is also *curtailed* as soon as its verdict at alpha
can no longer change, and then reports the largest p-value the uncurtailed run could still end
with (`largest_p_to_come`). That p-value is >= the Besag-Clifford p-value of the same draws on
every path, so it stays valid at every level u, P[p <= u] <= u; and p <= alpha exactly when the
uncurtailed run would give p <= alpha. After l draws with s exceedances the largest p to come is
F(l - s), a function of the non-exceedances j = l - s only:

    F(j) = max( h / (j + h)             if j + h <= T     (the h-th exceedance comes next)
                (min(h - 1, T - j) + 1) / (T + 1) )       (the run ends below h exceedances)

`draws_for_level(alpha, h)` is the smallest T with h / (T + 1) <= alpha. With that T (or more, which
changes nothing), a run either stops at h exceedances with p = h / l > alpha, or reaches
j = ceil(h / alpha) - h non-exceedances and is curtailed with p = h / ceil(h / alpha) <= alpha:
a watermarked text costs about h / alpha draws and reports p just below alpha. The exact law of
the reported p-value under H0 (`null_law`) checks all of this in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .pvalues import permutation_p_value


@dataclass(frozen=True)
class MonteCarloResult:
    p_value: float
    resamples: int  # null statistics used
    null_at_most: int  # how many of them were <= the observed statistic
    floor: float  # the smallest p-value this run could have returned (`smallest_p`)
    stopped_early: bool  # Besag-Clifford stop: h null statistics <= the observed one
    curtailed: bool = False  # stopped because the verdict at alpha could no longer change


def largest_p_to_come(non_exceedances: np.ndarray | int, stop_after: int, resamples: int) -> np.ndarray:
    """F(j): the largest Besag-Clifford p-value a run with j non-exceedances (and fewer than h
    exceedances) can still end with (module docstring); h = `stop_after` >= 1, T = `resamples`."""
    j = np.asarray(non_exceedances, dtype=np.float64)
    h, t = float(stop_after), float(resamples)
    next_stop = np.where(j + h <= t, h / (j + h), 0.0)
    end = (np.minimum(h - 1.0, t - j) + 1.0) / (t + 1.0)
    return np.maximum(next_stop, end)


def draws_for_level(alpha: float, stop_after: int) -> int:
    """The smallest T with h / (T + 1) <= alpha: with it, a curtailed run can reach p <= alpha."""
    if not 0.0 < alpha < 1.0 or stop_after < 1:
        raise ValueError("need 0 < alpha < 1 and stop_after >= 1")
    c = math.ceil(stop_after / alpha)
    while stop_after / c > alpha:  # float rounding of the division above
        c += 1
    return c - 1


def smallest_p(resamples: int, stop_after: int, alpha: float | None = None) -> float:
    """The smallest p-value the (curtailed) test can return: the one of the run whose every null
    statistic exceeds the observed one (F is non-increasing, so no other run goes lower)."""
    if stop_after < 1 or alpha is None:
        return 1.0 / (resamples + 1)
    j = np.arange(resamples)  # curtailment is checked before the last draw
    f = largest_p_to_come(j, stop_after, resamples)
    hit = np.flatnonzero(f <= alpha)
    return float(f[hit[0]]) if hit.size else 1.0 / (resamples + 1)


def sequential_p_value(
    indicators: Iterable[np.ndarray], resamples: int, stop_after: int = 0, alpha: float | None = None
) -> MonteCarloResult:
    """Run the (sequential) permutation test over batches of indicators `null <= observed`.

    `indicators` yields boolean arrays in draw order (enough for `resamples` draws in total);
    `stop_after` = h > 0 enables Besag-Clifford early stopping, 0 draws all `resamples`; `alpha`
    (with h > 0) curtails the run once the verdict at alpha is settled (module docstring).
    """
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    h, t = stop_after, resamples
    curtail = alpha is not None and h > 0
    floor = smallest_p(t, h, alpha if curtail else None)
    count, used = 0, 0
    for batch in indicators:
        x = np.asarray(batch, dtype=bool)[: t - used]
        if x.size == 0:
            continue
        running = count + np.cumsum(x)
        drawn = used + 1 + np.arange(x.size)
        stop = running >= h if h > 0 else np.zeros(x.size, dtype=bool)
        if curtail:
            settled = largest_p_to_come(drawn - running, h, t) <= alpha
            stop |= (running < h) & settled & (drawn < t)
        hit = np.flatnonzero(stop)
        if hit.size:
            i = int(hit[0])
            n, s = int(drawn[i]), int(running[i])
            if s >= h:
                return MonteCarloResult(h / n, n, s, floor, True)
            p = float(largest_p_to_come(n - s, h, t))
            return MonteCarloResult(p, n, s, floor, False, curtailed=True)
        count = int(running[-1])
        used += x.size
        if used >= t:
            break
    if used < t:
        raise ValueError(f"only {used} null statistics were supplied for {t} resamples")
    return MonteCarloResult(permutation_p_value(count, t), t, count, floor, False)


def null_law(resamples: int, stop_after: int, alpha: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact law of the reported p-value under H0 for continuous statistics: (values, probs).

    Under H0 the observed statistic's null CDF value q is uniform and, given q, the draws are
    i.i.d. Bernoulli(q). A run that reaches l draws with s exceedances without stopping has
    probability w(l, s) / (l + 1), where w is the share of the C(l, s) orderings that get there
    (integrating q^s (1 - q)^(l - s) over q); w follows a two-term recursion. O(T h) time.
    """
    h, t = stop_after, resamples
    if h < 1:
        raise ValueError("null_law needs stop_after >= 1 (the plain test is uniform on its support)")
    curtail = alpha is not None
    values: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    s = np.arange(h, dtype=np.float64)
    w = np.zeros(h)
    w[0] = 1.0  # l = 0 draws, s = 0
    for n in range(t + 1):
        reach = w / (n + 1)
        if n == t:
            values.append((s + 1) / (t + 1))
            probs.append(reach)
            break
        live = np.ones(h, dtype=bool)
        if curtail and n > 0:
            f = largest_p_to_come(n - s, h, t)
            done = (f <= alpha) & (s <= n)
            values.append(f[done])
            probs.append(reach[done])
            live &= ~done
        wl = np.where(live, w, 0.0)
        # the h-th exceedance at draw n + 1: probability w(n, h-1) h / ((n + 1)(n + 2))
        if wl[h - 1] > 0:
            values.append(np.array([h / (n + 1)]))
            probs.append(np.array([wl[h - 1] * h / ((n + 1) * (n + 2))]))
        nw = wl * (n + 1 - s) / (n + 1)
        nw[1:] += wl[:-1] * s[1:] / (n + 1)
        w = nw
    v, p = np.concatenate(values), np.concatenate(probs)
    keep = p > 0
    return v[keep], p[keep]


def exact_size(resamples: int, stop_after: int, alpha: float, curtail_at: float | None = None) -> float:
    """P[p <= alpha] under H0 for continuous statistics, computed exactly (for tests and docs);
    `curtail_at`: the level the run was curtailed at (None: the uncurtailed test)."""
    if stop_after >= 1:
        v, p = null_law(resamples, stop_after, curtail_at)
        return float(p[v <= alpha * (1 + 1e-12)].sum())
    return math.floor(alpha * (resamples + 1) + 1e-9) / (resamples + 1)  # uniform on {1..T+1}/(T+1)

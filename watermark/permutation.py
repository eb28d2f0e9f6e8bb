"""The sequential Monte Carlo permutation test used by the distortion-free detectors.

The plain test draws T null statistics and reports (1 + #{null <= observed}) / (T + 1), which is
valid because the observed and null statistics are exchangeable under H0 (`stats.permutation_p_value`).
Besag & Clifford (1991) make it sequential without losing validity: draw null statistics one at
a time and stop as soon as `stop_after` = h of them are <= the observed one; the p-value is then
h / l, where l is the number drawn so far. If the T-th draw arrives first, the p-value is the plain
one. A text that is clearly not watermarked therefore costs about h / p draws instead of T, while a
watermarked text still gets the full resolution 1 / (T + 1). Nulls may be computed in batches: the
stopping rule is applied draw by draw inside each batch, so the result does not depend on batching.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .stats import permutation_p_value


@dataclass(frozen=True)
class MonteCarloResult:
    p_value: float
    resamples: int  # null statistics used
    null_at_most: int  # how many of them were <= the observed statistic
    floor: float  # the smallest p-value the test can return: 1 / (T + 1)
    stopped_early: bool


def sequential_p_value(
    indicators: Iterable[np.ndarray], resamples: int, stop_after: int = 0
) -> MonteCarloResult:
    """Run the (sequential) permutation test over batches of indicators `null <= observed`.

    `indicators` yields boolean arrays in draw order (at least `resamples` entries in total);
    `stop_after` = h > 0 enables Besag-Clifford early stopping, 0 draws all `resamples`.
    """
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    count, used = 0, 0
    for batch in indicators:
        x = np.asarray(batch, dtype=bool)[: resamples - used]
        if stop_after > 0:
            running = count + np.cumsum(x)
            hit = np.flatnonzero(running >= stop_after)
            if hit.size:
                used += int(hit[0]) + 1
                return MonteCarloResult(stop_after / used, used, stop_after, 1.0 / (resamples + 1), True)
        count += int(x.sum())
        used += x.size
        if used >= resamples:
            break
    if used < resamples:
        raise ValueError(f"only {used} null statistics were supplied for {resamples} resamples")
    return MonteCarloResult(
        permutation_p_value(count, resamples), resamples, count, 1.0 / (resamples + 1), False
    )


def exact_size(resamples: int, stop_after: int, alpha: float) -> float:
    """P[p <= alpha] under H0 for continuous statistics, computed exactly (for tests and docs).

    Under H0 the observed statistic's null CDF value q is uniform, and given q the draws are
    Bernoulli(q); integrating the stopping-time distribution over q gives Beta-function terms.
    """
    from scipy.special import betaln, gammaln

    def log_choose(a: int, b: int) -> float:
        return float(gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1))

    total = 0.0
    h, t = stop_after, resamples
    if h > 0:
        for used in range(h, t + 1):  # the h-th exceedance at draw `used`
            if h / used <= alpha:
                total += np.exp(log_choose(used - 1, h - 1) + betaln(h + 1, used - h + 1))
    for g in range(0, h if h > 0 else t + 1):  # completed all T draws with g exceedances
        if (g + 1) / (t + 1) <= alpha:
            total += np.exp(log_choose(t, g) + betaln(g + 1, t - g + 1))
    return total

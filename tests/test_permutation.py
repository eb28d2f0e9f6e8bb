"""The sequential permutation test: Besag-Clifford p-values, curtailed at the level asked for.

Validity is checked exactly: under H0 with a continuous statistic the observed statistic's null
CDF value q is uniform and the draws are Bernoulli(q), so the law of the reported p-value is a
finite sum (`permutation.null_law`) that must give P[p <= u] <= u at every u.
"""

from __future__ import annotations

import numpy as np
import pytest

from wm_toolkit.watermark.statistics.permutation import (
    draws_for_level,
    exact_size,
    largest_p_to_come,
    null_law,
    sequential_p_value,
    smallest_p,
)


def batches(x: np.ndarray, rng: np.random.Generator):
    """Split draws into random batch sizes: the result must not depend on batching."""
    i = 0
    while i < x.size:
        j = i + int(rng.integers(1, 40))
        yield x[i:j]
        i = j


def reference(x: np.ndarray, t: int, h: int, alpha: float | None) -> tuple[float, int]:
    """Draw by draw, straight from the definitions (module docstring of watermark.permutation)."""
    s = 0
    for n in range(1, t + 1):
        s += bool(x[n - 1])
        if h and s == h:
            return h / n, n
        if alpha is not None and h and n < t:
            j = n - s
            worst = max(h / (j + h) if j + h <= t else 0.0, (min(h - 1, t - j) + 1) / (t + 1))
            if worst <= alpha:
                return worst, n
    return (s + 1) / (t + 1), t


@pytest.mark.parametrize("h,t", [(10, 999), (3, 199), (1, 50)])
def test_besag_clifford_p_values_are_exactly_uniform_at_their_support(h, t):
    v, p = null_law(t, h)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    for u in np.unique(v):
        assert p[v <= u].sum() == pytest.approx(u, rel=1e-9)
    assert exact_size(t, h, 0.05) <= 0.05 + 1e-12


@pytest.mark.parametrize("h,alpha", [(10, 0.01), (3, 1e-3), (1, 0.05), (5, 0.0095), (10, 0.05)])
def test_curtailed_test_is_valid_at_every_level_and_exact_at_alpha(h, alpha):
    t = draws_for_level(alpha, h)
    v, p = null_law(t, h, alpha)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    for u in np.r_[np.unique(v), np.linspace(1e-4, 1.0, 400)]:
        assert p[v <= u].sum() <= u * (1 + 1e-9) + 1e-15
    size = p[v <= alpha].sum()
    assert 0.9 * alpha <= size <= alpha * (1 + 1e-9)  # not needlessly conservative either
    assert smallest_p(t, h, alpha) == pytest.approx(v.min()) and v.min() <= alpha


def test_draws_for_level_is_the_least_that_can_reach_alpha():
    for h, alpha in [(10, 1e-3), (10, 0.95e-3), (3, 0.01), (1, 0.05), (7, 1e-4)]:
        t = draws_for_level(alpha, h)
        assert h / (t + 1) <= alpha < h / t


def test_a_cap_below_the_need_leaves_the_floor_above_alpha():
    assert smallest_p(500, 10, 1e-3) == pytest.approx(1 / 501) and 1 / 501 > 1e-3
    v, p = null_law(500, 10, 1e-3)
    assert v.min() == pytest.approx(1 / 501) and p.sum() == pytest.approx(1.0)


def test_a_watermarked_text_is_resolved_at_alpha_after_about_h_over_alpha_draws():
    t = draws_for_level(1e-3, 10)
    r = sequential_p_value(batches(np.zeros(t, bool), np.random.default_rng(0)), t, 10, 1e-3)
    assert r.curtailed and r.p_value == 1e-3 and r.resamples == 9990 and r.floor == 1e-3
    # the uncurtailed run of the same draws goes on to 1 / (T + 1) and would decide the same
    full = sequential_p_value([np.zeros(t, bool)], t, 10)
    assert full.p_value == 1e-4 and full.resamples == t


@pytest.mark.parametrize("h,alpha", [(10, 0.01), (3, 0.02), (1, 0.05)])
def test_curtailment_decides_like_the_full_run_and_never_reports_less(h, alpha):
    rng = np.random.default_rng(5)
    t = draws_for_level(alpha, h)
    for trial in range(150):
        q = rng.uniform(0, 3 * alpha) if trial % 2 else rng.uniform()
        x = rng.random(t) < q
        cut = sequential_p_value(batches(x, rng), t, h, alpha)
        full = sequential_p_value(batches(x, rng), t, h)
        assert (cut.p_value, cut.resamples) == pytest.approx(reference(x, t, h, alpha))
        assert (full.p_value, full.resamples) == pytest.approx(reference(x, t, h, None))
        assert (cut.p_value <= alpha) == (full.p_value <= alpha)
        assert cut.p_value >= full.p_value and cut.resamples <= full.resamples


def test_simulated_size_matches_the_exact_law():
    """4000 runs under H0 (q uniform): #{p <= alpha} ~ Binomial(4000, 0.02) (exact size 0.02,
    mean 80, sd 8.9); outside [45, 120] has probability below 1e-4 (the false-failure rate)."""
    rng = np.random.default_rng(11)
    h, alpha = 3, 0.02
    t = draws_for_level(alpha, h)
    assert exact_size(t, h, alpha, curtail_at=alpha) == pytest.approx(alpha)
    hits = 0
    for _ in range(4000):
        x = rng.random(t) < rng.uniform()
        hits += sequential_p_value([x], t, h, alpha).p_value <= alpha
    assert 45 <= hits <= 120


def test_largest_p_to_come_is_the_sup_over_continuations():
    """Brute force over every continuation of small runs."""
    import itertools

    h, t = 3, 9
    for n in range(1, t):
        for s in range(0, min(n, h - 1) + 1):
            best = 0.0
            for rest in itertools.product([0, 1], repeat=t - n):
                x = np.r_[np.ones(s, bool), np.zeros(n - s, bool), np.array(rest, bool)]
                best = max(best, reference(x, t, h, None)[0])
            assert largest_p_to_come(n - s, h, t) == pytest.approx(best)

"""The alignment kernels equal a plain dynamic program written straight from the paper."""

from __future__ import annotations

import numpy as np
import pytest

from wm_toolkit.watermark.statistics import alignment


def levenshtein_reference(cost: list[list[float]], gamma: float, free_end: bool = False) -> float:
    """Kuditipudi et al.'s soft edit cost, cell by cell (cost[i][j]: token i against key row j);
    `free_end`: the key rows after the last matched one cost nothing (best cell of the last row)."""
    k1, k2 = len(cost), len(cost[0])
    d = [[0.0] * (k2 + 1) for _ in range(k1 + 1)]
    for i in range(k1 + 1):
        d[i][0] = i * gamma
    for j in range(k2 + 1):
        d[0][j] = j * gamma
    for i in range(1, k1 + 1):
        for j in range(1, k2 + 1):
            d[i][j] = min(d[i - 1][j] + gamma, d[i][j - 1] + gamma, d[i - 1][j - 1] + cost[i - 1][j - 1])
    return min(d[k1]) if free_end else d[k1][k2]


def windows(c: np.ndarray, k: int):
    """Every (block start i, shift s) with its k x k cost matrix, as in Algorithm 3."""
    n, m = c.shape
    for i in range(m - k + 1):
        for s in range(n):
            yield i, s, [[c[(s + jj) % n, i + t] for jj in range(k)] for t in range(k)]


def random_case(rng: np.random.Generator, trial: int):
    n, m = int(rng.integers(2, 8)), int(rng.integers(1, 9))
    k = int(rng.integers(1, m + 1))
    b = 3
    costs = rng.normal(size=(b, n, m)) if trial % 2 else np.log1p(-rng.random((b, n, m)))
    return costs, k


@pytest.mark.parametrize("free_end", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.4, 1.3])
def test_levenshtein_scores_equal_the_reference_dp_for_every_block_and_shift(gamma, free_end):
    rng = np.random.default_rng(11)
    for trial in range(25):
        costs, k = random_case(rng, trial)
        got = alignment.levenshtein_scores(costs, k, gamma, free_end)
        for b in range(costs.shape[0]):
            for i, s, cost in windows(costs[b], k):
                assert got[b, s, i] == pytest.approx(levenshtein_reference(cost, gamma, free_end), abs=1e-9)
        want_min = [
            min(levenshtein_reference(c, gamma, free_end) for _, _, c in windows(costs[b], k))
            for b in range(3)
        ]
        np.testing.assert_allclose(alignment.levenshtein_min(costs, k, gamma, free_end), want_min, atol=1e-9)


def test_a_free_end_charges_an_insertion_one_gap_not_two():
    """A watermarked block with one token inserted: the square window also pays for the key row
    it leaves over at the end; the free end pays only the inserted token's gap."""
    c = np.ones((1, 6, 4))  # mismatches cost 1; the text is key rows 0, 1, 2 with a token inserted at 1
    c[0, 0, 0] = c[0, 1, 2] = c[0, 2, 3] = 0.0
    assert alignment.levenshtein_min(c, 4, 0.3)[0] == pytest.approx(0.6)
    assert alignment.levenshtein_min(c, 4, 0.3, free_end=True)[0] == pytest.approx(0.3)


def test_basic_scores_sum_one_cyclic_diagonal():
    rng = np.random.default_rng(3)
    for trial in range(20):
        costs, k = random_case(rng, trial)
        got = alignment.basic_scores(costs, k)
        for b in range(costs.shape[0]):
            for i, s, cost in windows(costs[b], k):
                assert got[b, s, i] == pytest.approx(sum(cost[t][t] for t in range(k)), abs=1e-9)


@pytest.mark.parametrize("free_end", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lagrangian_screen_never_exceeds_the_exact_statistic(dtype, free_end):
    rng = np.random.default_rng(5)
    for trial in range(30):
        costs, k = random_case(rng, trial)
        for gamma in (0.0, 0.4, 1.3):
            exact = alignment.levenshtein_min(costs, k, gamma, free_end)
            for lam in (0.0, 0.3, 1.0, 4.0):
                bound = alignment.levenshtein_lower_bound(costs, k, gamma, lam, dtype, free_end)
                assert np.all(bound <= exact + 1e-4)


def test_lagrangian_screen_is_tight_on_exp_nulls():
    """The screen is useful only if it is close: on random EXP costs it is within 6% of exact (closer on longer texts)."""
    rng = np.random.default_rng(0)
    costs = np.log1p(-rng.random((4, 64, 48)))
    exact = alignment.levenshtein_min(costs, 48, 0.0)
    bound = alignment.levenshtein_lower_bound(costs, 48, 0.0, 1.0)
    assert np.all(bound <= exact) and np.all(bound >= exact * 1.06)


def test_free_gaps_can_only_lower_the_exp_cost():
    """With gamma = 0 the diagonal alignment is one of the matchings, so d_0 <= basic sum."""
    rng = np.random.default_rng(8)
    costs = np.log1p(-rng.random((5, 16, 12)))
    assert np.all(alignment.levenshtein_min(costs, 12, 0.0) <= alignment.basic_min(costs, 12) + 1e-12)


def test_results_do_not_depend_on_the_batch():
    rng = np.random.default_rng(2)
    costs = np.log1p(-rng.random((6, 20, 15)))
    for fn in (lambda c: alignment.levenshtein_min(c, 10, 0.4), lambda c: alignment.basic_min(c, 10)):
        together = fn(costs)
        alone = np.array([fn(costs[b : b + 1])[0] for b in range(6)])
        assert np.array_equal(together, alone)


def test_bad_block_length_is_rejected():
    with pytest.raises(ValueError):
        alignment.levenshtein_min(np.zeros((1, 4, 3)), 4, 0.0)

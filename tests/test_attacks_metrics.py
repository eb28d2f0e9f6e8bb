"""Fraction of tokens changed = Levenshtein distance / original length, checked by brute force."""

import numpy as np
import pytest

from attacks.metrics import edit_distance, fraction_changed


def reference(a, b):
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


def test_edit_distance_matches_the_textbook_recurrence():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.integers(0, 4, rng.integers(0, 15)).tolist()
        b = rng.integers(0, 4, rng.integers(0, 15)).tolist()
        assert edit_distance(a, b) == reference(a, b)


def test_fraction_changed_counts_substitutions_insertions_and_deletions():
    x = list(range(100))
    y = x.copy()
    for i in (3, 50, 99):
        y[i] = -1
    assert fraction_changed(x, y) == pytest.approx(0.03)
    assert fraction_changed(x, x[:90]) == pytest.approx(0.10)
    assert fraction_changed(x, x[:50] + [-1] * 5 + x[50:]) == pytest.approx(0.05)
    assert fraction_changed(x[:10], list(range(100, 200))) == 1.0  # capped
    assert fraction_changed([], []) == 0.0

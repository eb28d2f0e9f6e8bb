"""Random token edits as in Kuditipudi et al.: floor(rate * len) distinct uniform positions."""

from __future__ import annotations

import numpy as np
import pytest

from wm_toolkit.attacks.edits import delete_tokens, insert_tokens, substitute_tokens
from wm_toolkit.watermark.errors import InputError

IDS = list(range(1000, 1100))


def test_counts_follow_floor_of_rate_times_length():
    rng = np.random.default_rng(0)
    sub = substitute_tokens(IDS, 0.37, 50, rng)
    assert len(sub) == 100 and sum(a != b for a, b in zip(sub, IDS, strict=True)) == 37
    assert all(t < 50 for a, t in zip(IDS, sub, strict=True) if a != t)
    ins = insert_tokens(IDS, 0.25, 50, rng)
    assert len(ins) == 125 and [t for t in ins if t >= 1000] == IDS
    dele = delete_tokens(IDS, 0.5, rng)
    assert len(dele) == 50 and dele == sorted(dele) and set(dele) <= set(IDS)


def test_rate_zero_is_the_identity_and_rate_one_touches_everything():
    rng = np.random.default_rng(1)
    assert substitute_tokens(IDS, 0.0, 50, rng) == IDS
    assert delete_tokens(IDS, 1.0, rng) == []
    assert all(t < 50 for t in substitute_tokens(IDS, 1.0, 50, rng))


def test_positions_are_uniform():
    """Each position is deleted with probability 0.2 over 2000 seeds (chi-square at 0.001)."""
    from scipy import stats

    hits = np.zeros(20)
    for seed in range(2000):
        kept = set(delete_tokens(list(range(20)), 0.2, np.random.default_rng(seed)))
        hits[[i for i in range(20) if i not in kept]] += 1
    assert stats.chisquare(hits).pvalue > 1e-3


def test_same_seed_same_edit_and_bad_rate_rejected():
    assert insert_tokens(IDS, 0.3, 9, np.random.default_rng(5)) == insert_tokens(
        IDS, 0.3, 9, np.random.default_rng(5)
    )
    with pytest.raises(InputError):
        delete_tokens(IDS, 1.5, np.random.default_rng(0))

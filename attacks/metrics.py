"""How much an attack changed a text: token-level edit distance, normalised by the original length.

Every attack reports `fraction_changed` measured the same way, on the token ids the detector
sees (the attacked text re-tokenised), so rates are comparable across attacks: a substitution
at rate eps gives about eps, a paraphrase gives whatever it really changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def edit_distance(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """Levenshtein distance (unit cost substitution, insertion, deletion) between two id sequences.

    One numpy row per token of `a`: the in-row insertion recurrence d[j] = min(d[j], d[j-1] + 1)
    is a running minimum of d[j] - j, so each row is a handful of vector operations.
    """
    x = np.asarray(a, dtype=np.int64).reshape(-1)
    y = np.asarray(b, dtype=np.int64).reshape(-1)
    if x.size == 0 or y.size == 0:
        return int(max(x.size, y.size))
    j = np.arange(y.size + 1, dtype=np.int64)
    prev = j.copy()
    for i, t in enumerate(x, 1):
        cur = np.empty_like(prev)
        cur[0] = i
        # substitution/match from the diagonal, deletion from above
        cur[1:] = np.minimum(prev[:-1] + (y != t), prev[1:] + 1)
        # insertion from the left, for the whole row at once
        cur = np.minimum.accumulate(cur - j) + j
        prev = cur
    return int(prev[-1])


def fraction_changed(original: Sequence[int] | np.ndarray, attacked: Sequence[int] | np.ndarray) -> float:
    """Edit distance / length of the original, capped at 1 (0 for two empty texts)."""
    n = len(original)
    if n == 0:
        return 0.0 if len(attacked) == 0 else 1.0
    return min(1.0, edit_distance(original, attacked) / n)

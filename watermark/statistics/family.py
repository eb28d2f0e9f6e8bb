"""Family-wise p-values over many keys at once (a keyring): "watermarked by any of them".

The choice is weighted Bonferroni on the smallest p-value: with weights w_i >= 0 fixed before
the text is seen (sum 1), the family p-value is

    family_p = min(1, min_i p_i / w_i)          (equal weights: N * min_i p_i)

and P(family_p <= alpha) <= sum_i P(p_i <= alpha w_i) <= alpha under H0 whatever the dependence
between the entries' statistics. That matters: two entries may share a key (one key, two
configs), and even entries with independent keys are tested on the same text, so their p-values
are only independent *given the text*; across texts they co-vary (a repetitive text lifts every
green-list count a little). Sidak's 1 - (1 - p)^N is still valid for entries with distinct,
independently drawn keys and one scheme (conditionally i.i.d. given the text, and x -> 1 - (1 - x)^N
is concave, so Jensen's inequality keeps it below its value at the marginal level), but it gains
nothing that shows: at the levels that matter the two differ by a factor 1 - N p / 2, 0.05% at a
family level of 1e-3. Bonferroni needs no assumption, so it is the one used.

Per-entry adjusted p-values come from weighted Holm (step-down), which controls the family-wise
error of naming an entry that did not watermark the text: the entries whose adjusted p-value is at
most alpha may all be named; the family p-value is the smallest adjusted one.

Hints (a tenant or model name that came with the text) change the weights, never the guarantee,
as long as the hint does not depend on the test results: hinted entries share `hint_weight`, the
others 1 - hint_weight; `hint_weight = 1` restricts the search to the hinted entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def hint_weights(hinted: Sequence[bool], hint_weight: float = 0.5) -> np.ndarray:
    """Weights summing to 1: the hinted entries share `hint_weight`, the others the rest.

    No entry hinted, or every entry hinted: equal weights. `hint_weight` 1: others get 0."""
    mask = np.asarray(hinted, dtype=bool)
    n = len(mask)
    if n == 0:
        return np.zeros(0)
    if not 0.0 < hint_weight <= 1.0:
        raise ValueError("hint_weight must be in (0, 1]")
    k = int(mask.sum())
    if k in (0, n):
        return np.full(n, 1.0 / n)
    return np.where(mask, hint_weight / k, (1.0 - hint_weight) / (n - k))


def _as_log10(
    p_values: Sequence[float] | np.ndarray | None, log10_p: Sequence[float] | np.ndarray | None
) -> np.ndarray:
    if log10_p is not None:
        return np.asarray(log10_p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log10(np.asarray(p_values, dtype=np.float64))


def weighted_holm(
    p_values: Sequence[float] | np.ndarray | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    log10_p: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """log10 of each entry's weighted-Holm adjusted p-value (log space: p-values below 1e-308
    still order). Entries with weight 0 are not tested: adjusted p-value 1 (log10 0)."""
    lp = _as_log10(p_values, log10_p)
    n = len(lp)
    w = np.full(n, 1.0 / max(n, 1)) if weights is None else np.asarray(weights, dtype=np.float64)
    out = np.zeros(n)
    tested = np.flatnonzero(w > 0)
    if len(tested) == 0:
        return out
    ratio = lp[tested] - np.log10(w[tested])  # log10(p_i / w_i)
    order = tested[np.argsort(ratio, kind="stable")]
    remaining = float(w[order].sum())
    running = -math.inf
    for i in order:
        step = lp[i] - math.log10(w[i]) + math.log10(max(remaining, 1e-300))
        running = max(running, min(0.0, step))
        out[i] = running
        remaining -= w[i]
    return out


def family_log10_p(
    p_values: Sequence[float] | np.ndarray | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    log10_p: Sequence[float] | np.ndarray | None = None,
) -> float:
    """log10 of the weighted-Bonferroni family p-value min(1, min_i p_i / w_i)."""
    adjusted = weighted_holm(p_values, weights, log10_p)
    return float(adjusted.min()) if len(adjusted) else 0.0

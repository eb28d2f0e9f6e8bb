"""Ranking metrics shared by every evaluation: AUROC with ties, and the ROC curve behind it.

One implementation for the whole toolkit (uncertainty scoring and watermark evaluation alike),
so numbers from different commands are comparable and the tie rule is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_arrays(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray):
    y = np.asarray(labels, dtype=float).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} vs {s.size})")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y.astype(bool), s


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting one half.

    This is the Mann-Whitney U statistic over midranks, equal to the trapezoidal area under the
    ROC curve (and to `sklearn.metrics.roc_auc_score`). Returns NaN when one class is empty,
    because the area is undefined then.
    """
    y, s = _as_arrays(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=float)
    i = 0
    while i < len(s):  # midranks: every member of a tie group gets the group's mean rank
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for "positive iff score >= threshold", one point per distinct score.

    Starts at (0, 0) with threshold +inf; tied scores move the curve diagonally, so the
    trapezoidal area equals `auroc`.
    """
    y, s = _as_arrays(labels, scores)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_group = np.r_[np.diff(s_sorted) != 0, True] if len(s) else np.array([], dtype=bool)
    tp = np.cumsum(y_sorted)[last_of_group]
    fp = np.cumsum(~y_sorted)[last_of_group]
    tpr = np.r_[0.0, tp / n_pos] if n_pos else np.r_[0.0, np.zeros(len(tp))]
    fpr = np.r_[0.0, fp / n_neg] if n_neg else np.r_[0.0, np.zeros(len(fp))]
    return fpr, tpr, np.r_[np.inf, s_sorted[last_of_group]]

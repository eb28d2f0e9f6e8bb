"""The MarkMyWords-style bench's statistics (size, diversity, aggregate), pure numpy."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np


def size_tokens(prefix_p_values: Sequence[float], alpha: float = 0.02) -> int | None:
    """Smallest prefix length (1-based) whose p-value is <= alpha; None when never reached."""
    for i, p in enumerate(prefix_p_values):
        if p <= alpha:
            return i + 1
    return None


def median_interval(
    values: Sequence[float], *, resamples: int = 1000, seed: int = 0
) -> dict[str, float | None]:
    """Median with a bootstrap 95% interval (percentiles of resampled medians); inf bounds are None."""
    vals = np.asarray(values, dtype=np.float64)
    if vals.size == 0:
        return {"median": None, "low": None, "high": None}
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(vals, size=(resamples, vals.size), replace=True), axis=1)

    def finite(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    with np.errstate(invalid="ignore"):  # percentiles between two infinite medians
        low, high = np.percentile(meds, 2.5), np.percentile(meds, 97.5)
    return {"median": finite(float(np.median(vals))), "low": finite(float(low)), "high": finite(float(high))}


def size_summary(
    sizes: Sequence[int | None], *, resamples: int = 1000, seed: int = 0
) -> dict[str, float | None]:
    """Median size with a bootstrap 95% interval; never-reached texts count as infinite."""
    if not sizes:
        return {"median": None, "low": None, "high": None, "never_fraction": None}
    vals = [math.inf if s is None else float(s) for s in sizes]
    return {
        **median_interval(vals, resamples=resamples, seed=seed),
        "never_fraction": float(np.mean(~np.isfinite(vals))),
    }


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the texts' whitespace words (0 when none)."""
    grams = [g for t in texts for g in _ngrams(t.split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(candidate: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Sentence BLEU (clipped precisions up to max_n, geometric mean, brevity penalty), +1 smoothing."""
    if not candidate or not references:
        return 0.0
    logs = 0.0
    for n in range(1, max_n + 1):
        cand = Counter(_ngrams(candidate, n))
        best: Counter[tuple[str, ...]] = Counter()
        for ref in references:
            best |= Counter(_ngrams(ref, n))
        total = sum(cand.values())
        hit = sum(min(c, best[g]) for g, c in cand.items())
        logs += math.log((hit + 1) / (total + 1)) if n > 1 else math.log(max(hit, 1e-9) / max(total, 1))
    ref_len = min((abs(len(r) - len(candidate)), len(r)) for r in references)[1]
    bp = 1.0 if len(candidate) > ref_len else math.exp(1 - ref_len / len(candidate))
    return bp * math.exp(logs / max_n)


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Mean BLEU of each text against all the others (higher = less diverse)."""
    words = [t.split() for t in texts]
    if len(words) < 2:
        return 0.0
    return float(np.mean([bleu(w, words[:i] + words[i + 1 :], max_n) for i, w in enumerate(words)]))


def aggregate_detected(
    detected: Mapping[str, Sequence[bool]], quality: Mapping[str, float], threshold: float = 0.8
) -> float | None:
    """MarkMyWords aggregate: fraction of texts detected after every attack keeping quality >= threshold."""
    kept = [a for a in detected if quality.get(a, 0.0) >= threshold]
    if not kept:
        return None
    rows = np.array([list(detected[a]) for a in kept], dtype=bool)
    return float(np.mean(rows.all(axis=0)))


def _fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 300, l2: float = 1e-2) -> np.ndarray:
    """Weights (bias last) of an L2 logistic regression by gradient descent."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        w -= 0.5 * (xb.T @ (p - y) / len(y) + l2 * w)
    return w


def _folds(y: np.ndarray, folds: int, rng: np.random.Generator, paired: bool) -> list[np.ndarray]:
    """Cross-validation folds. Stratified: each class in proportion (random folds tilt a small
    sample's training set to the other class). Paired (text i of each side came from prompt i):
    a pair stays in one fold, else the held-out text's partner, on the same topic and of the other
    label, sits in the training set and chance-level embeddings score far below 0.5 (MiniLM on
    8 + 8 --quick texts: 0.00 to 0.08)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if paired:
        order = rng.permutation(len(pos))
        k = max(1, min(folds, len(pos)))
        return [np.r_[pos[part], neg[part]] for part in np.array_split(order, k)]
    pos, neg = rng.permutation(pos), rng.permutation(neg)
    k = max(1, min(folds, len(pos), len(neg)))
    return [np.r_[p, n] for p, n in zip(np.array_split(pos, k), np.array_split(neg, k), strict=True)]


def classifier_auroc(
    marked: np.ndarray,
    plain: np.ndarray,
    *,
    folds: int = 5,
    resamples: int = 1000,
    seed: int = 0,
    paired: bool = False,
) -> dict[str, float]:
    """Singh & Zou: k-fold logistic regression on embeddings, out-of-fold AUROC and a bootstrap 95% interval.
    `paired`: marked[i] and plain[i] answer the same prompt, and share a fold."""
    if paired and len(marked) != len(plain):
        raise ValueError("paired embeddings need as many marked as plain rows")
    from .metrics import auroc

    x = np.vstack([marked, plain]).astype(float)
    y = np.r_[np.ones(len(marked)), np.zeros(len(plain))]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    scores = np.zeros(len(y))
    for part in _folds(y, folds, rng, paired):
        train = np.setdiff1d(order, part)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        w = _fit_logistic((x[train] - mu) / sd, y[train])
        scores[part] = ((x[part] - mu) / sd) @ w[:-1] + w[-1]
    boots = []
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            boots.append(auroc(y[idx].astype(int), scores[idx]))
    return {
        "auroc": float(auroc(y.astype(int), scores)),
        "low": float(np.percentile(boots, 2.5)),
        "high": float(np.percentile(boots, 97.5)),
    }

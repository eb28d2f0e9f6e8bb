"""SAR and its baselines as pure formulas on arrays (Duan et al., ACL 2024; papers.md §5).

Inputs are per-token negative log-likelihoods of each sampled answer and similarities already
computed by a model, so every formula here can be checked by hand. Higher always means more
uncertain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

SENTENCE_TEMPERATURE = 0.001  # t in SentSAR / SAR, the paper's default

NLLs = Sequence[float] | np.ndarray


def token_relevance(similarities: Sequence[float] | np.ndarray) -> np.ndarray:
    """Normalised relevance R~_T of each token from g(q + s, q + s without token i).

    R_T = 1 - g, normalised to sum to one. When no token changes the meaning (all g = 1),
    every token is equally relevant, so TokenSAR falls back to the mean NLL.
    """
    g = np.clip(np.asarray(similarities, dtype=float), 0.0, 1.0)
    r = 1.0 - g
    total = r.sum()
    if r.size == 0:
        return r
    if total <= 0:
        return np.full(r.size, 1.0 / r.size)
    return r / total


def token_sar(nlls: NLLs, relevance: Sequence[float] | np.ndarray) -> float:
    """TokenSAR of one answer: sum_i R~_T(z_i) * NLL(z_i)."""
    nll = np.asarray(nlls, dtype=float)
    rel = np.asarray(relevance, dtype=float)
    if nll.shape != rel.shape:
        raise ValueError(f"{nll.size} NLLs but {rel.size} relevance weights")
    return float((nll * rel).sum())


def _sentence_relevance_scores(log_p: Sequence[float] | np.ndarray, sim: np.ndarray, t: float) -> np.ndarray:
    """E_j = -log(p_j + sum_{k != j} g_jk p_k / t), computed in log space (p can underflow)."""
    log_p = np.asarray(log_p, dtype=float)
    g = np.clip(np.asarray(sim, dtype=float), 0.0, 1.0)
    k = log_p.size
    if g.shape != (k, k):
        raise ValueError(f"similarity matrix of shape {g.shape} for {k} answers")
    out = np.empty(k)
    with np.errstate(divide="ignore"):
        log_g = np.log(g)
    for j in range(k):
        terms = [log_p[j]] + [log_g[j, i] + log_p[i] - math.log(t) for i in range(k) if i != j]
        out[j] = -np.logaddexp.reduce(np.asarray(terms))
    return out


def sent_sar(answer_nlls: Sequence[NLLs], sim: np.ndarray, t: float = SENTENCE_TEMPERATURE) -> float:
    """SentSAR: mean_j -log(p_j + sum_{k != j} g_jk p_k / t), with p_k = exp(-sum NLL of s_k)."""
    log_p = [-float(np.sum(n)) for n in answer_nlls]
    return float(_sentence_relevance_scores(log_p, sim, t).mean())


def sar(token_sars: Sequence[float], sim: np.ndarray, t: float = SENTENCE_TEMPERATURE) -> float:
    """SAR: SentSAR with the token-corrected probabilities p'_k = exp(-TokenSAR_k)."""
    log_p = [-float(v) for v in token_sars]
    return float(_sentence_relevance_scores(log_p, sim, t).mean())


def predictive_entropy(answer_nlls: Sequence[NLLs]) -> float:
    """PE as coded by the paper: mean over samples of -log p(s) = sum of token NLLs."""
    return float(np.mean([np.sum(n) for n in answer_nlls]))


def ln_predictive_entropy(answer_nlls: Sequence[NLLs]) -> float:
    """Length-normalised PE: mean over samples of the mean token NLL."""
    return float(np.mean([np.mean(n) if len(n) else 0.0 for n in answer_nlls]))


def semantic_entropy(answer_nlls: Sequence[NLLs], clusters: Sequence[int]) -> float:
    """SE as coded by the paper: -(1/#C) sum_C log sum_{s in C} exp(-mean NLL(s)).

    The reference code also adds a constant 5 (its `- 5` inside the sum), which cannot change
    a ranking and is left out here.
    """
    if len(clusters) != len(answer_nlls):
        raise ValueError(f"{len(clusters)} cluster ids for {len(answer_nlls)} answers")
    log_p = np.array([-(np.mean(n) if len(n) else 0.0) for n in answer_nlls])
    ids = np.asarray(clusters)
    per_cluster = [np.logaddexp.reduce(log_p[ids == c]) for c in np.unique(ids)]
    return float(-np.mean(per_cluster))


def cluster(n: int, equivalent: Callable[[int, int], bool]) -> list[int]:
    """Greedy clustering: each answer joins the first cluster whose first member it matches.

    Comparing with the cluster's first member (not with every member) keeps the result
    independent of chains like a~b, b~c, a!~c and makes it deterministic in answer order.
    """
    reps: list[int] = []
    ids: list[int] = []
    for i in range(n):
        for c, r in enumerate(reps):
            if equivalent(r, i):
                ids.append(c)
                break
        else:
            reps.append(i)
            ids.append(len(reps) - 1)
    return ids


def clusters_from_similarity(sim: np.ndarray, threshold: float) -> list[int]:
    """Semantic clusters from a similarity matrix: same meaning iff g >= threshold (both ways)."""
    g = np.asarray(sim, dtype=float)
    return cluster(g.shape[0], lambda a, b: g[a, b] >= threshold and g[b, a] >= threshold)


def clusters_from_nli(contradiction: np.ndarray, entailment: np.ndarray | None = None) -> list[int]:
    """Semantic clusters from NLI verdicts on ordered pairs (a, b).

    With `entailment=None` this is the SAR code's rule: merge unless EITHER direction predicts
    contradiction. Passing an entailment matrix gives strict bidirectional entailment instead.
    """
    c = np.asarray(contradiction, dtype=bool)
    if entailment is None:
        return cluster(c.shape[0], lambda a, b: not (c[a, b] or c[b, a]))
    e = np.asarray(entailment, dtype=bool)
    return cluster(c.shape[0], lambda a, b: bool(e[a, b] and e[b, a]))


def lexical_uncertainty(pairwise_similarity: np.ndarray) -> float:
    """Minus the mean Rouge-L between distinct samples (i < j), so higher = more uncertain.

    The SAR code feeds the similarity itself into the AUROC, which inverts this baseline.
    """
    m = np.asarray(pairwise_similarity, dtype=float)
    if m.shape[0] < 2:
        raise ValueError("lexical similarity needs at least two samples")
    iu = np.triu_indices(m.shape[0], k=1)
    return float(-m[iu].mean())

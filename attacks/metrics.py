"""How much an attack changed a text: token-level edit distance, normalised by the original length.

Every attack reports `fraction_changed` measured the same way, on the token ids the detector
sees (the attacked text re-tokenised), so rates are comparable across attacks: a substitution
at rate eps gives about eps, a paraphrase gives whatever it really changed.

Cost stays near-linear on long texts. The common prefix and suffix are stripped first; what is
left, up to `EXACT_TOKENS` tokens a side, gets the exact Levenshtein distance (rapidfuzz's
bit-parallel algorithm, O(n d / 64) with the distance d as its band hint). Longer texts are cut at
anchors, 8-token runs that occur exactly once in each text, in the same order in both (a longest
increasing chain), at least `MIN_SEGMENT` tokens apart; the pieces between anchors get the exact
distance and are summed. That sum is the cost of a real alignment, so it is never below the exact
distance, and it equals it whenever an optimal alignment keeps the anchors matched, which is what
token edits, word edits, dilution and neighbour swaps do. A long stretch with no anchor at all
(the texts share no unique 8-gram over 100,000 tokens) counts as rewritten: max of its lengths.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein

EXACT_TOKENS = 100_000  # both sides up to this long (after stripping): one exact computation
MIN_SEGMENT = 1024  # anchors at least this far apart: few, long pieces keep the sum near exact
ANCHOR_LENGTH = 8
_SAMPLE = 16  # consider the k-grams whose hash is 0 mod this (content-defined, same in both texts)

Progress = Callable[[int, int], None]  # (tokens of the original measured so far, total)


def _as_ids(a: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).reshape(-1)


def _strip(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y without their common prefix and suffix (which an optimal alignment matches)."""
    n = min(x.size, y.size)
    diff = np.flatnonzero(x[:n] != y[:n])
    start = int(diff[0]) if diff.size else n
    x, y = x[start:], y[start:]
    n = min(x.size, y.size)
    diff = np.flatnonzero(x[x.size - n :][::-1] != y[y.size - n :][::-1])
    end = int(diff[0]) if diff.size else n
    return x[: x.size - end], y[: y.size - end]


def _exact(x: np.ndarray, y: np.ndarray) -> int:
    if x.size == 0 or y.size == 0:
        return int(max(x.size, y.size))
    # the hint starts rapidfuzz's band search near the answer (it widens the band if needed)
    hint = max(abs(x.size - y.size), min(x.size, y.size) // 8, 1)
    return int(Levenshtein.distance(x.tolist(), y.tolist(), score_hint=hint))


def _kgram_hashes(x: np.ndarray, k: int) -> np.ndarray:
    h = np.zeros(x.size - k + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * np.uint64(0x9E3779B97F4A7C15) + (
                x[j : x.size - k + 1 + j].astype(np.uint64) + np.uint64(1)
            )
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return h


def _unique_sampled(x: np.ndarray, k: int, sample: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash, position) of the sampled k-grams of x whose hash occurs once among them."""
    h = _kgram_hashes(x, k)
    pos = np.flatnonzero(h % np.uint64(sample) == 0)
    hs = h[pos]
    uniq, idx, counts = np.unique(hs, return_index=True, return_counts=True)
    keep = counts == 1
    return uniq[keep], pos[idx[keep]]


def _anchors(x: np.ndarray, y: np.ndarray, k: int, sample: int, spacing: int) -> list[tuple[int, int]]:
    """Matched unique k-grams (i in x, j in y), increasing in both and >= spacing apart."""
    if x.size < k or y.size < k:
        return []
    hx, px = _unique_sampled(x, k, sample)
    hy, py = _unique_sampled(y, k, sample)
    _, ix, iy = np.intersect1d(hx, hy, assume_unique=True, return_indices=True)
    i, j = px[ix], py[iy]
    if i.size == 0:
        return []
    same = np.all(
        np.lib.stride_tricks.sliding_window_view(x, k)[i]
        == np.lib.stride_tricks.sliding_window_view(y, k)[j],
        axis=1,
    )  # a hash collision is never an anchor
    i, j = i[same], j[same]
    order = np.argsort(i, kind="stable")
    i, j = i[order].tolist(), j[order].tolist()
    # longest chain increasing in j (patience sorting), then thinned to the spacing
    tails: list[int] = []
    tail_at: list[int] = []
    parent = [-1] * len(j)
    for n, jj in enumerate(j):
        p = bisect.bisect_left(tails, jj)
        if p == len(tails):
            tails.append(jj)
            tail_at.append(n)
        else:
            tails[p], tail_at[p] = jj, n
        parent[n] = tail_at[p - 1] if p else -1
    chain = []
    n = tail_at[-1] if tail_at else -1
    while n >= 0:
        chain.append((i[n], j[n]))
        n = parent[n]
    chain.reverse()
    kept: list[tuple[int, int]] = []
    for a, b in chain:
        if not kept or (a - kept[-1][0] >= spacing and b - kept[-1][1] >= spacing):
            kept.append((a, b))
    return kept


def _distance(x: np.ndarray, y: np.ndarray, report: Callable[[int], None], sample: int = _SAMPLE) -> int:
    x, y = _strip(x, y)
    if max(x.size, y.size) <= EXACT_TOKENS or min(x.size, y.size) == 0:
        d = _exact(x, y)
        report(x.size)
        return d
    anchors = _anchors(x, y, ANCHOR_LENGTH, sample, MIN_SEGMENT)
    if not anchors:
        if sample > 1:
            return _distance(x, y, report, 1)
        report(x.size)
        return int(max(x.size, y.size))  # nothing in common to align on: rewritten
    total, pi, pj = 0, 0, 0
    for a, b in anchors:
        total += _distance(x[pi:a], y[pj:b], report, sample)
        report(ANCHOR_LENGTH)
        pi, pj = a + ANCHOR_LENGTH, b + ANCHOR_LENGTH
    return total + _distance(x[pi:], y[pj:], report, sample)


def edit_distance(
    a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray, on_progress: Progress | None = None
) -> int:
    """Levenshtein distance (unit cost substitution, insertion, deletion) between two id sequences:
    exact up to `EXACT_TOKENS` differing tokens a side, an anchored upper bound beyond (see above).
    `on_progress(done, total)` follows the tokens of `a` measured."""
    x, y = _as_ids(a), _as_ids(b)
    done = [0]

    def report(n: int) -> None:
        done[0] += n
        if on_progress is not None:
            on_progress(min(done[0], x.size), x.size)

    d = _distance(x, y, report)
    if on_progress is not None:
        on_progress(x.size, x.size)
    return d


def fraction_changed(
    original: Sequence[int] | np.ndarray,
    attacked: Sequence[int] | np.ndarray,
    on_progress: Progress | None = None,
) -> float:
    """Edit distance / length of the original, capped at 1 (0 for two empty texts)."""
    n = len(original)
    if n == 0:
        return 0.0 if len(attacked) == 0 else 1.0
    return min(1.0, edit_distance(original, attacked, on_progress) / n)

"""Alignment kernels of the distortion-free detectors (Kuditipudi et al. 2023), vectorised in numpy.

Every kernel takes a batch of cost tensors `C` of shape (B, n, m): `C[b, j, l]` is the cost of
matching text token l to key row j under key b (b = the real key or one of the null keys of a
permutation test). Lower totals mean more watermark. A block of k consecutive tokens starting at
text index i is aligned with the k cyclic key rows starting at shift s; the statistic is the
minimum over blocks i and shifts s, as in Algorithm 3 of the paper.

- `basic_min`: d = sum of the k costs on one diagonal (no edits).
- `levenshtein_min`: the soft edit cost d_gamma of the paper (gap cost gamma for an unmatched token
  or an unmatched key row inside the window), exactly, for every block and shift at once. With
  `free_end=True` the key rows after the last matched one are free (the block aligns with any
  prefix of the window, min over the DP's last row): a text with insertions then pays gamma per
  inserted token only, not again for the window's left-over rows. The DP
  runs token by token with arrays laid out (window column, batch, shift), so the left-to-right
  dependency inside a DP row becomes one `np.minimum.accumulate` over contiguous rows.
- `levenshtein_lower_bound`: a relaxation that is never larger than `levenshtein_min` and costs
  about k / (n + k) of it per block: the window constraint is dropped (the tokens may align
  anywhere in the unrolled key of length n + k - 1, key rows outside the matched ones are free)
  and an unmatched token pays 2 * gamma (its own gap plus the key row left over in a square
  window); with `free_end` an unmatched token pays gamma and so does every key row skipped
  before the last match (only the rows after it are free). The permutation test uses it to rule
  out most null keys without the exact DP.
"""

from __future__ import annotations

import numpy as np


def _as_batch(costs: np.ndarray) -> np.ndarray:
    c = np.asarray(costs, dtype=np.float64)
    if c.ndim == 2:
        c = c[None]
    if c.ndim != 3:
        raise ValueError("costs must have shape (B, n, m) or (n, m)")
    return c


def _check_block(m: int, k: int) -> None:
    if not 1 <= k <= m:
        raise ValueError(f"block length {k} must be between 1 and the text length {m}")


def diagonal_costs(costs: np.ndarray) -> np.ndarray:
    """(B, n, m) -> (B, n, m) with out[b, s, l] = C[b, (s + l) mod n, l]: token l at key shift s."""
    c = _as_batch(costs)
    _, n, m = c.shape
    rows = (np.arange(n)[:, None] + np.arange(m)[None, :]) % n
    return c[:, rows, np.arange(m)[None, :]]


def basic_scores(costs: np.ndarray, k: int) -> np.ndarray:
    """(B, n, m - k + 1): block sum for every shift s and block start i (block key rows s..s+k-1)."""
    c = _as_batch(costs)
    _check_block(c.shape[2], k)
    d = diagonal_costs(c)
    b, n, m = d.shape
    # Add the k tokens of a block one at a time (not by differences of a running sum, nor by a
    # reduction whose order numpy may change with the shape), so a block's total is bit-identical
    # whatever else is in the batch: the observed and null statistics must be computed alike.
    sums = d[:, :, : m - k + 1].copy()  # sums[b, s', i] = sum_l C[(s' + l) mod n, l], l = i..i+k-1
    for off in range(1, k):
        sums += d[:, :, off : off + m - k + 1]
    # block i aligned with key shift s (rows s..s+k-1) is s' = (s - i) mod n
    i = np.arange(m - k + 1)
    s_prime = (np.arange(n)[:, None] - i[None, :]) % n
    return sums[:, s_prime, i[None, :]]


def basic_min(costs: np.ndarray, k: int) -> np.ndarray:
    """min over shifts and blocks of the block sum, per batch entry: shape (B,)."""
    return basic_scores(costs, k).reshape(_as_batch(costs).shape[0], -1).min(axis=1)


def _edit_block(c: np.ndarray, start: int, k: int, gamma: float, free_end: bool = False) -> np.ndarray:
    """Exact d_gamma of the block [start, start + k) at every shift, shape (B, n); `free_end`:
    min over j of D[k][j] (rows after the last matched one free) instead of D[k][k].

    Anti-diagonal sweep over the (token t, window column j) grid: every cell of a diagonal
    depends only on the two previous diagonals, so a diagonal is a handful of elementwise
    numpy operations over (cells, batch, shift), with no scan inside a step.
    """
    b, n, _ = c.shape
    # e[l, b, q] = C[b, q mod n, start + l] for q in [0, n + k - 1); ev[l, b, o, s] = e[l, b, o + s]
    e = np.ascontiguousarray(c[:, np.arange(n + k - 1) % n, start : start + k].transpose(2, 0, 1))
    ev = np.lib.stride_tricks.sliding_window_view(e, n, axis=2)
    prev2, prev1, cur = (np.empty((k + 1, b, n)) for _ in range(3))
    prev1[0] = 0.0  # diagonal 0: D[0][0]
    rows = np.arange(k + 1)
    end: np.ndarray | None = None  # free end: min over the cells D[k][j], one per diagonal d = k + j
    for d in range(1, 2 * k + 1):
        lo, hi = max(1, d - k), min(k, d - 1)  # interior cells (t, j = d - t) with t, j >= 1
        if lo <= hi:
            t = rows[lo : hi + 1]
            x = cur[lo : hi + 1]
            np.add(prev2[lo - 1 : hi], ev[t - 1, :, d - t - 1, :], out=x)  # match token t-1 with column j-1
            if gamma:
                np.minimum(x, prev1[lo - 1 : hi] + gamma, out=x)  # token t-1 unmatched
                np.minimum(x, prev1[lo : hi + 1] + gamma, out=x)  # key column j-1 unmatched
            else:
                np.minimum(x, prev1[lo - 1 : hi], out=x)
                np.minimum(x, prev1[lo : hi + 1], out=x)
        if d <= k:
            cur[0] = d * gamma  # D[0][d]
            cur[d] = d * gamma  # D[d][0]
        if free_end and d >= k:
            end = cur[k].copy() if end is None else np.minimum(end, cur[k])
        prev2, prev1, cur = prev1, cur, prev2
    if free_end:
        assert end is not None  # set at d = k (k >= 1)
        return end
    return prev1[k].copy()


def levenshtein_scores(costs: np.ndarray, k: int, gamma: float, free_end: bool = False) -> np.ndarray:
    """(B, n, m - k + 1): the soft edit cost d_gamma for every shift s and block start i."""
    c = _as_batch(costs)
    _check_block(c.shape[2], k)
    if gamma < 0:
        raise ValueError("gap cost gamma must be >= 0")
    blocks = [_edit_block(c, i, k, float(gamma), free_end) for i in range(c.shape[2] - k + 1)]
    return np.stack(blocks, axis=2)


def levenshtein_min(costs: np.ndarray, k: int, gamma: float, free_end: bool = False) -> np.ndarray:
    """min over shifts and blocks of d_gamma, per batch entry: shape (B,)."""
    c = _as_batch(costs)
    return levenshtein_scores(c, k, gamma, free_end).reshape(c.shape[0], -1).min(axis=1)


def levenshtein_lower_bound(
    costs: np.ndarray,
    k: int,
    gamma: float,
    lam: float = 0.0,
    dtype: type[np.floating] = np.float64,
    free_end: bool = False,
) -> np.ndarray:
    """A lower bound on `levenshtein_min` per batch entry, (B,), at a fraction of its cost.

    An alignment of a block with the window at shift s matches r tokens to key rows inside the
    window and pays gamma for each of the k - r unmatched tokens and each of the k - r unmatched
    rows, so its cost is (sum of matched costs) + 2 * gamma * (k - r), and its matched rows span
    at most k consecutive positions of the unrolled key (length n + k - 1). Dropping the span
    constraint and adding the Lagrangian term lam * (span - k) <= 0, for any lam >= 0, can only
    lower the optimum; the relaxed problem is a DP over (token, unrolled position) with a free
    start and end, k * (n + k) cells instead of n * k^2. `dtype=np.float32` halves its memory
    traffic; the caller then compares with a margin for rounding. `free_end`: the bound of the
    free-end statistic (an unmatched token pays gamma, a key row skipped gamma + lam: inside the
    window, rows before the last match are unmatched rows and cost gamma there too).
    """
    c = _as_batch(costs)
    b, n, m = c.shape
    _check_block(m, k)
    if gamma < 0 or lam < 0:
        raise ValueError("gamma and lam must be >= 0")
    width = n + k - 1
    gap, step = dtype((1.0 if free_end else 2.0) * gamma), dtype(lam)
    skip = dtype(gamma if free_end else 0.0)
    best = np.full(b, np.inf)
    rows = np.arange(k + 1)
    for start in range(m - k + 1):
        ct = np.ascontiguousarray(c[:, :, start : start + k].transpose(2, 1, 0), dtype=dtype).reshape(
            k * n, b
        )
        prev2, prev1, cur, tmp = (np.empty((k + 1, b), dtype) for _ in range(4))
        prev1[0] = 0.0
        last = np.full(b, np.inf, dtype)
        for d in range(1, k + width + 1):
            lo, hi = max(1, d - width), min(k, d - 1)  # cells (t, p = d - t), t >= 1, 1 <= p <= width
            if lo <= hi:
                t = rows[lo : hi + 1]
                x, y = cur[lo : hi + 1], tmp[lo : hi + 1]
                np.take(ct, (t - 1) * n + (d - t - 1) % n, axis=0, out=x)  # cost of token t-1 at p-1
                x += prev2[lo - 1 : hi]
                np.add(prev1[lo : hi + 1], skip, out=y)
                np.minimum(y, x, out=y)  # match, or skip position p-1 ...
                y += step  # ... both advance the span by one
                np.add(prev1[lo - 1 : hi], gap, out=x)  # token t-1 unmatched
                np.minimum(x, y, out=x)
            if d <= width:
                cur[0] = 0.0  # free start
            if d <= k:
                cur[d] = d * gap
            if d >= k:
                np.minimum(last, cur[k], out=last)  # free end
            prev2, prev1, cur = prev1, cur, prev2
        np.minimum(best, last.astype(np.float64) - float(lam) * k, out=best)
    return best


MAX_SKIP = 2  # key rows the forward statistic may skip before one token (longer runs: several tokens)


def its_forward(cell_lr: np.ndarray, insert_rate: float, skip_rate: float) -> np.ndarray:
    """The forward statistic of ITS-edit, -log Lambda per batch entry, (B,): lower = more watermark.

    `cell_lr[b, r, t]` is the likelihood ratio of token t matched with key row r
    (`watermark.its_likelihood`). Lambda averages over the n start rows (the key shift) and sums
    over alignments the product of: per token, either an insertion (weight `insert_rate`, ratio 1,
    the row stays) or a match with the current row (1 - insert_rate, times its ratio, the row
    advances), and before each token 0..MAX_SKIP skipped rows (weight skip_rate each, a deletion).
    Paths that reach the same row after the same tokens have the same future, so the sum is a
    forward recursion over (token, row): n * m cells, like the basic statistic, instead of the
    edit DP's n * m^2. Rescaled per token so that long texts never underflow.
    """
    c = _as_batch(cell_lr)
    b, n, m = c.shape
    g = np.full((b, n), 1.0 / n)
    log_total = np.zeros(b)
    for t in range(m):
        if skip_rate > 0.0:
            h = g.copy()
            w = 1.0
            for k in range(1, min(MAX_SKIP, n - 1) + 1):
                w *= skip_rate
                h += w * np.roll(g, k, axis=1)  # h[r] += w g[r - k]
            g = h
        h = insert_rate * g + np.roll((1.0 - insert_rate) * g * c[:, :, t], 1, axis=1)
        s = h.sum(axis=1)
        log_total += np.log(s)
        g = h / s[:, None]
    return -log_total

"""vLLM's native-watermark detection in one numba pass over many texts (`vllm_gumbel` uses it).

The numpy path of `VllmGumbelScheme` (sorted de-duplication masks, `philox.levels`, portable
logs, `np.bincount` sums) is the reference; this kernel computes the same function:
- de-duplication by hashing instead of sorting: per text, a table of contexts (their latest
  position, for the history bound) and one of kept (context, token) pairs, probed linearly and
  compared id by id, so a hash collision never merges two contexts;
- the Philox words of the tokens either mask keeps, in the vectorised column kernel of
  `keying.philox` (integers: the same bits by construction);
- wm's score -log((1 - u) + SLACK) and vLLM's -log(1 - u) through `portable_log`'s operations,
  and the per-text sums accumulated in token order, as `np.bincount` adds them.
So every output equals the numpy path's bit for bit (tests/test_vllm_kernel.py).
"""

from __future__ import annotations

import math

import numpy as np

from ..keying import philox
from ..settings import numba_or_none
from ..statistics import portable_log

MODES = {"none": 0, "single_turn": 1, "all": 2}
STATISTICS = {"single": 0, "fusion": 1, "max": 2}  # the per-token value the test sums

_KERNEL: list = []


def kernel():  # noqa: ANN201 - a numba dispatcher, or None
    """`score_texts(ids, starts, w, mode, window, keys, wa, wb, statistic, slack)` ->
    (scored, first, sums, vsums, stat, t, vn); None without numba or with `WM_NUMBA=0`."""
    if not _KERNEL:
        _KERNEL.append(_compile())
    return _KERNEL[0]


def _compile():  # noqa: ANN202
    numba = numba_or_none()
    philox_kernels = philox.kernels()
    if numba is None or philox_kernels is None:
        return None
    njit = numba.njit
    column_levels = philox_kernels[0]
    masks = _compile_masks(njit)
    log, log1m, columns = _compile_parts(njit)
    levels = float(philox.UNIFORM_LEVELS + 1)

    @njit(cache=True)
    def score_texts(ids, starts, w, mode, window, keys, wa, wb, statistic, slack):  # pragma: no cover
        n_texts, k = starts.size - 1, keys.shape[0]
        scored, first = masks(ids, starts, w, mode, window)
        idx = np.flatnonzero(scored | first)
        cols, toks = columns(ids, starts, w, idx)
        lev = np.empty((k, idx.size), np.int64)
        for i in range(k):
            column_levels(keys[i, 0], keys[i, 1], w, cols, toks, lev[i])
        sums, vsums = np.zeros((k, n_texts)), np.zeros((k, n_texts))
        stat = np.zeros(n_texts)
        t, vn = np.zeros(n_texts, np.int64), np.zeros(n_texts, np.int64)
        s = np.empty(k)
        x = 0
        for q in range(idx.size):
            j = idx[q]
            while j >= starts[x + 1]:
                x += 1
            for i in range(k):
                u = float(np.float32(lev[i, q] / levels))
                if scored[j]:
                    s[i] = -log((1.0 - u) + slack)
                    sums[i, x] += s[i]
                if first[j]:
                    vsums[i, x] += -log1m(u)
            if scored[j]:
                t[x] += 1
                if statistic == 0:
                    stat[x] += s[0]
                elif statistic == 1:
                    stat[x] += wa * s[0] + wb * s[1]
                else:
                    stat[x] += max(s[0], s[1])
            if first[j]:
                vn[x] += 1
        return scored, first, sums, vsums, stat, t, vn

    return score_texts


def _compile_masks(njit):  # noqa: ANN001, ANN202
    """The de-duplication masks by hashing (see the module); `window` is the history bound."""
    mult, s32 = np.uint64(0x9E3779B97F4A7C15), np.uint64(32)

    @njit(inline="always")
    def same(ids, a, b, n):  # pragma: no cover - compiled
        for i in range(n):  # noqa: SIM110 - numba compiles loops, not generators
            if ids[a + i] != ids[b + i]:
                return False
        return True

    @njit(inline="always")
    def mix(h, x):  # pragma: no cover - compiled
        h = (h ^ np.uint64(x)) * mult
        return h ^ (h >> s32)

    @njit(cache=True)
    def masks(ids, starts, w, mode, window):  # pragma: no cover - compiled
        n = ids.size
        scored, first = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
        longest = 1
        for x in range(starts.size - 1):
            longest = max(longest, starts[x + 1] - starts[x])
        size = 16
        while size < 2 * longest:
            size *= 2
        cpos, cstamp = np.empty(size, np.int64), np.zeros(size, np.int64)
        ppos, pstamp = np.empty(size, np.int64), np.zeros(size, np.int64)
        top = np.uint64(size - 1)
        for x in range(starts.size - 1):
            lo, stamp = starts[x], x + 1
            for j in range(lo, starts[x + 1]):
                prev, h = -1, np.uint64(w)
                if j - lo >= w:  # a context with -1 padding occurs once in its text
                    for i in range(j - w, j):
                        h = mix(h, ids[i])
                    slot = h & top
                    while cstamp[slot] == stamp and not same(ids, cpos[slot] - w, j - w, w):
                        slot = (slot + np.uint64(1)) & top
                    if cstamp[slot] == stamp:
                        prev = cpos[slot]
                    cstamp[slot], cpos[slot] = stamp, j  # the latest position of this context
                first[j] = prev < 0
                skip = mode != 0 and prev >= 0 and prev >= j - window
                if mode == 2 and j - lo < w:
                    skip = True
                if skip:
                    continue
                if j - lo < w:
                    scored[j] = True
                    continue
                slot = mix(h, ids[j]) & top
                while pstamp[slot] == stamp and not same(ids, ppos[slot] - w, j - w, w + 1):
                    slot = (slot + np.uint64(1)) & top
                if pstamp[slot] != stamp:
                    pstamp[slot], ppos[slot] = stamp, j
                    scored[j] = True
        return scored, first

    return masks


def _compile_parts(njit):  # noqa: ANN001, ANN202
    """portable_log's log and log(1 - u) as inline numba functions, and the column builder."""
    reduced_log = njit(inline="always")(portable_log.reduced_log)
    sqrt_half, mask32 = portable_log.SQRT_HALF, philox.MASK32

    @njit(inline="always")
    def log(y):  # pragma: no cover - compiled; portable_log.log_scalar
        m, e = math.frexp(y)
        if m < sqrt_half:
            m = m * 2.0
            e = e - 1
        return reduced_log(m - 1.0, float(e))

    @njit(inline="always")
    def log1m(u):  # pragma: no cover - compiled; portable_log.log1m_scalar (u < 1 here)
        y = 1.0 - u
        return log(y) + ((1.0 - y) - u) / y

    @njit(cache=True)
    def columns(ids, starts, w, idx):  # pragma: no cover - compiled
        """Context words (slots of ceil(w / 4) blocks) and token words of the positions idx."""
        m = idx.size
        cols = np.empty((4 * ((w + 3) // 4), m), np.uint64)
        toks = np.empty(m, np.uint64)
        x = 0
        for q in range(m):
            j = idx[q]
            while j >= starts[x + 1]:
                x += 1
            for i in range(cols.shape[0]):
                p = j - w + i
                if i >= w:
                    cols[i, q] = np.uint64(0xFFFFFFFF - i % 4)
                elif p < starts[x]:
                    cols[i, q] = mask32
                else:
                    cols[i, q] = np.uint64(ids[p]) & mask32
            toks[q] = np.uint64(ids[j]) & mask32
        return cols, toks

    return log, log1m, columns

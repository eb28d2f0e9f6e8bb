"""vLLM's native-watermark detection in one numba pass over many texts (`vllm_gumbel` uses it).

The numpy path of `VllmGumbelScheme` (sorted de-duplication masks, `philox.levels`, portable
logs, `np.bincount` sums) is the reference; this kernel computes the same function:
- de-duplication by hashing instead of sorting: per text, a table of contexts (their latest
  position, for the history bound) and one of kept (context, token) pairs, probed linearly and
  compared id by id, so a hash collision never merges two contexts (the hash, a polynomial of
  the context's ids rolled along the text, only decides where to look);
- the Philox words of the tokens either mask keeps, in the vectorised column kernel of
  `keying.philox` (integers: the same bits by construction);
- wm's score -log((1 - u) + SLACK) and vLLM's -log(1 - u) through `portable_log`'s operations,
  over all tokens at once in loops that compile to SIMD code (`frexp` done on the bits, exact for
  the normal numbers these are; `error_model="numpy"` drops the per-division zero check, none
  divides by zero), and the per-text sums accumulated in token order, as `np.bincount` adds them.
So every output equals the numpy path's bit for bit (tests/test_vllm_kernel.py).
"""

from __future__ import annotations

import numpy as np

from ..keying import philox
from ..settings import numba_or_none
from ..statistics import portable_log

MODES = {"none": 0, "single_turn": 1, "all": 2}
STATISTICS = {"single": 0, "fusion": 1, "max": 2}  # the per-token value the test sums

_KERNEL: list = []


def kernel():  # noqa: ANN201 - a numba dispatcher, or None
    """`score_texts(ids, starts, w, mode, window, keys, wa, wb, statistic, slack)` -> (flags,
    totals, counts): flags (2, tokens) the masks scored / first, totals (2k + 1, texts) the sums
    of wm's scores per key, of vLLM's per key, of the statistic; counts (2, texts) t and vn.
    None without numba or with `WM_NUMBA=0`."""
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
    scores = _compile_parts(njit)

    @njit(cache=True)
    def score_texts(ids, starts, w, mode, window, keys, wa, wb, statistic, slack):  # pragma: no cover
        n_texts, k = starts.size - 1, keys.shape[0]
        flags, cols, toks, owner, idx = masks(ids, starts, w, mode, window)
        scored, first = flags[0], flags[1]
        m = idx.size
        lev = np.empty(m, np.int64)
        s, v = np.empty((k, m)), np.empty((k, m))
        for i in range(k):
            column_levels(keys[i, 0], keys[i, 1], w, cols, toks, lev)
            scores(lev, slack, s[i], v[i])
        totals, counts = np.zeros((2 * k + 1, n_texts)), np.zeros((2, n_texts), np.int64)
        sums, vsums, stat, t, vn = totals[:k], totals[k : 2 * k], totals[2 * k], counts[0], counts[1]
        for q in range(m):
            j, x = idx[q], owner[q]
            if scored[j]:
                t[x] += 1
                for i in range(k):
                    sums[i, x] += s[i, q]
                if statistic == 0:
                    stat[x] += s[0, q]
                elif statistic == 1:
                    stat[x] += wa * s[0, q] + wb * s[1, q]
                else:
                    stat[x] += max(s[0, q], s[1, q])
            if first[j]:
                vn[x] += 1
                for i in range(k):
                    vsums[i, x] += v[i, q]
        return flags, totals, counts  # three arrays to box, not seven: a per-call cost

    return score_texts


def _compile_hash_table(njit):  # noqa: ANN001, ANN202
    """(finish, find): the masks' hash finaliser and open-addressing probe. A slot holds (hash's
    high 32 bits) << 32 | (position in the text + 1), 0 when empty; a match is confirmed on the ids."""
    mult = np.uint64(0x9E3779B97F4A7C15)
    s29, s32, one = np.uint64(29), np.uint64(32), np.uint64(1)
    low32 = np.int64(0xFFFFFFFF)
    high32 = ~low32

    @njit(inline="always")
    def same(ids, a, b, n):  # pragma: no cover - compiled
        for i in range(n):  # noqa: SIM110 - numba compiles loops, not generators
            if ids[a + i] != ids[b + i]:
                return False
        return True

    @njit(inline="always")
    def finish(h):  # pragma: no cover - compiled
        h = (h ^ (h >> s29)) * mult
        return h ^ (h >> s32)

    @njit(inline="always")
    def find(table, top, h, ids, lo, j, w, n):  # pragma: no cover - compiled
        """(slot, tag, earlier position in the text or -1) of ids[j - w : j - w + n]: its entry,
        or the empty slot where it goes."""
        tag = np.int64(h >> s32) << 32
        slot = h & top
        while True:
            e = table[slot]
            if e == 0:
                return slot, tag, -1
            if (e & high32) == tag:
                p = lo + (e & low32) - 1
                if same(ids, p - w, j - w, n):
                    return slot, tag, p
            slot = (slot + one) & top

    return finish, find


def _compile_masks(njit):  # noqa: ANN001, ANN202
    """The de-duplication masks by hashing (see the module); `window` is the history bound.
    Per text, two open-addressing tables (contexts; kept pairs, `_compile_hash_table`) of at least
    twice its length, cleared before it. Besides the masks, the Philox columns of every token either
    mask keeps, built in the same pass: context words (slots of ceil(w / 4) blocks), token words,
    and their text."""
    finish, find = _compile_hash_table(njit)
    base, one, mask32 = np.uint64(0x100000001B3), np.uint64(1), philox.MASK32

    @njit(cache=True)
    def masks(ids, starts, w, mode, window):  # pragma: no cover - compiled
        n = ids.size
        flags = np.zeros((2, n), np.bool_)
        scored, first = flags[0], flags[1]
        height = 4 * ((w + 3) // 4)
        cols, toks = np.empty((height, n), np.uint64), np.empty(n, np.uint64)
        owner, idx = np.empty(n, np.int64), np.empty(n, np.int64)
        longest = 1
        for x in range(starts.size - 1):
            longest = max(longest, starts[x + 1] - starts[x])
        size = 16
        while size < 2 * longest:
            size *= 2
        contexts, pairs = np.zeros(size, np.int64), np.zeros(size, np.int64)
        lead = one  # base^(w - 1): the weight of the context's oldest id
        for _ in range(w - 1):
            lead = lead * base
        m = 0
        for x in range(starts.size - 1):
            lo, hi = starts[x], starts[x + 1]
            used = 16
            while used < 2 * (hi - lo):
                used *= 2
            contexts[:used] = 0
            pairs[:used] = 0
            top = np.uint64(used - 1)
            roll = np.uint64(0)  # sum_i ids[j - w + i] base^(w - 1 - i), once j - lo >= w
            for j in range(lo, min(lo + w, hi)):  # contexts with -1 padding occur once in a text
                first[j] = True
                if mode != 2:
                    scored[j] = True
                for i in range(height):
                    p = j - w + i
                    if i >= w:
                        cols[i, m] = np.uint64(0xFFFFFFFF - i % 4)
                    elif p < lo:
                        cols[i, m] = mask32
                    else:
                        cols[i, m] = np.uint64(ids[p]) & mask32
                toks[m], owner[m], idx[m] = np.uint64(ids[j]) & mask32, x, j
                m += 1
                roll = roll * base + np.uint64(ids[j])
            for j in range(lo + w, hi):
                if j > lo + w:
                    roll = (roll - np.uint64(ids[j - w - 1]) * lead) * base + np.uint64(ids[j - 1])
                slot, tag, prev = find(contexts, top, finish(roll), ids, lo, j, w, w)
                contexts[slot] = tag | (j - lo + 1)  # the latest position of this context
                fresh = prev < 0
                first[j] = fresh
                keep = fresh or mode == 0 or prev < j - window
                if keep:
                    pair_hash = finish(roll * base + np.uint64(ids[j]) + one)
                    slot, tag, earlier = find(pairs, top, pair_hash, ids, lo, j, w, w + 1)
                    keep = earlier < 0
                    if keep:
                        pairs[slot] = tag | (j - lo + 1)
                        scored[j] = True
                if keep or fresh:
                    for i in range(w):
                        cols[i, m] = np.uint64(ids[j - w + i]) & mask32
                    for i in range(w, height):
                        cols[i, m] = np.uint64(0xFFFFFFFF - i % 4)
                    toks[m], owner[m], idx[m] = np.uint64(ids[j]) & mask32, x, j
                    m += 1
        return flags, cols, toks[:m], owner[:m], idx[:m]  # cols: the first m columns

    return masks


def _compile_parts(njit):  # noqa: ANN001, ANN202
    """`scores(levels, slack, s, v)`: wm's and vLLM's per-token scores from Philox levels, in
    portable_log's operations (SIMD loops)."""
    vec = njit(cache=True, error_model="numpy")
    reduced_log = njit(inline="always", error_model="numpy")(portable_log.reduced_log)
    mant = np.int64((1 << 52) - 1)
    sqrt_half_bits = np.int64(np.array([portable_log.SQRT_HALF]).view(np.int64)[0] & ((1 << 52) - 1))
    exp_half, exp_one = np.int64(1022 << 52), np.int64(1023 << 52)
    levels = float(philox.UNIFORM_LEVELS + 1)

    @vec
    def logs(y, out):  # pragma: no cover - compiled; portable_log.log_array for normal y > 0
        """frexp on the bits, the mantissa moved to [sqrt(1/2), sqrt(2)) as log_array moves it
        (m * 2 for m < sqrt(1/2) is exact: the exponent field 1023 instead of 1022)."""
        bits = y.view(np.int64)
        mb = np.empty(y.size, np.int64)
        ek = np.empty(y.size, np.int32)
        for q in range(y.size):
            b = bits[q]
            f = b & mant
            low = f < sqrt_half_bits
            mb[q] = f | (exp_one if low else exp_half)
            ek[q] = np.int32((b >> 52) - (1023 if low else 1022))
        mf = mb.view(np.float64)
        for q in range(y.size):
            out[q] = reduced_log(mf[q] - 1.0, float(ek[q]))

    @vec
    def scores(lev, slack, s, v):  # pragma: no cover - compiled
        """s = -log((1 - u) + slack) (portable_log.log_array), v = -log(1 - u) (log1m; u < 1)."""
        m = lev.size
        u, y, z = np.empty(m), np.empty(m), np.empty(m)
        for q in range(m):
            uq = float(np.float32(lev[q] / levels))
            u[q] = uq
            y[q] = (1.0 - uq) + slack
            z[q] = 1.0 - uq
        logs(y, s)
        logs(z, v)
        for q in range(m):
            s[q] = -s[q]
            v[q] = -(v[q] + ((1.0 - z[q]) - u[q]) / z[q])

    return scores

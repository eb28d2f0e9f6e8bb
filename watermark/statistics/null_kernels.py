"""Numba kernels for the null side of the EXP / ITS permutation test (numpy fallback elsewhere).

A null key only needs i.i.d. uniforms for the text's distinct tokens, so each one is generated
here, inside the kernel, from its seed with the PRF's integer mixer (`prf.mix`, bit for bit), and
never stored: `null_indicators` returns `null statistic <= observed` for a batch of seeds, in
parallel over null keys (prange), in three stages per key:

1. Lower-bound costs in float32, LANES null keys at a time. EXP: log(1 - u) is bounded
   below by a 4096-entry table on the top 12 bits of u (rounded down), with float64 `log(1 - u)` for
   the top 16 bins where the table would be loose; ITS: |eta - u| in float32.
2. A lower bound on the statistic from those costs: the Lagrangian relaxation of
   `alignment.levenshtein_lower_bound` (edit) or the basic block sums (EXP basic). A key whose
   bound exceeds observed + margin cannot reach the observed statistic and is counted False.
3. The remaining keys get float64 costs exactly as `DistortionFreeScheme.null_costs` computes them
   and the exact statistic of `alignment` (same additions in the same order, so bit-identical),
   stopping as soon as one block and shift reaches the observed value.

`edit_min` and `basic_min` expose stage 3 for the equality tests against `alignment`.

its-edit's forward statistic (`forward_nulls`, `forward_statistic`) needs no screen: it costs n * m
cells per key, like a bound, so every null key gets its exact value (parallel over keys).
"""

from __future__ import annotations

import math

import numpy as np

from ..settings import numba_wanted
from . import portable_log
from .alignment import MAX_SKIP

try:
    if not numba_wanted():
        raise ImportError("WM_NUMBA=0")
    import numba
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - the numpy path in distortion_free.py takes over
    AVAILABLE = False

LANES = 32  # null keys per lane group: the loops over them are what gets vectorised
TILE = 32  # key shifts per tile of the exact edit DP
TABLE_BITS = 12
EXACT_BINS = 16  # top bins of u where the table is replaced by the exact log(1 - u)

_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S11 = np.uint64(11)
_STOP = np.uint64(64 - TABLE_BITS)
_ONE = np.uint64(1)
_INV_2_53 = 1.0 / float(1 << 53)
_EXACT_FROM = np.uint64((1 << TABLE_BITS) - EXACT_BINS)
_EXACT_BINS = np.uint64(EXACT_BINS)
_TABLE_BITS = np.uint64(TABLE_BITS)


def lower_table() -> np.ndarray:
    """float32 lower bounds of log(1 - u) per top-12-bit bin of u: log(1 - (j + 1) / 4096),
    rounded towards -inf (bins from `_EXACT_FROM` on are computed exactly instead)."""
    j = np.arange(1 << TABLE_BITS, dtype=np.float64)
    t64 = portable_log.log1m((j + 1.0) / (1 << TABLE_BITS))  # the last bin's edge u = 1 gives -inf
    t32 = t64.astype(np.float32)
    up = t32.astype(np.float64) > t64
    t32[up] = np.nextafter(t32[up], np.float32(-np.inf))
    return t32


if AVAILABLE:
    # Indices are unsigned inside the hot loops: numba adds a negative-index wraparound test to
    # signed ones, which keeps LLVM from vectorising the loops over lanes.

    @njit(inline="always")
    def _bits(seed, counter):
        """prf.mix(seed, counter) as uint64 (wrapping arithmetic, logical shifts)."""
        z = seed + (np.uint64(counter) + _ONE) * _G
        z ^= z >> _S33
        z *= _M1
        z ^= z >> _S33
        z *= _M2
        z ^= z >> _S33
        return z

    @njit(inline="always")
    def _unit(z):
        return (np.float64(z >> _S11) + 0.5) * _INV_2_53

    _reduced_log = njit(inline="always")(portable_log.reduced_log)

    @njit(inline="always")
    def _log1m(u):
        """`portable_log.log1m_scalar` (the same operations, so the same bits as the numpy path)."""
        y = 1.0 - u
        if y <= 0.0:
            return -np.inf
        c = ((1.0 - y) - u) / y
        m, e = math.frexp(y)
        if m < portable_log.SQRT_HALF:
            m = m * 2.0
            e = e - 1
        return _reduced_log(m - 1.0, float(e)) + c

    def log1m(u: np.ndarray) -> np.ndarray:
        """The kernels' log(1 - u) over an array, for the equality tests."""
        return _log1m_many(np.ascontiguousarray(u, dtype=np.float64))

    @njit(cache=True)
    def _log1m_many(u):
        out = np.empty_like(u)
        for i in range(u.size):
            out[i] = _log1m(u[i])
        return out

    @njit(cache=True)
    def _exact_costs(is_exp, seed, labels, distinct, n, out, rows):
        """Float64 costs (n, m) of one null key, as `DistortionFreeScheme.null_costs` makes them."""
        m = labels.size
        if is_exp:
            for r in range(n):  # rows[u] = log(1 - u) for key row r, then gather per token
                for u in range(distinct):
                    rows[u] = _log1m(_unit(_bits(seed, r * distinct + u)))
                for t in range(m):
                    out[r, t] = rows[labels[t]]
        else:
            for u in range(distinct):
                rows[u] = _unit(_bits(seed, u))
            for r in range(n):
                ur = _unit(_bits(seed, distinct + r))
                for t in range(m):
                    out[r, t] = abs(rows[labels[t]] - ur)

    @njit(cache=True)
    def _bound_costs(is_exp, useeds, distinct, n, table, out, zbuf, jbuf, eta, urow):
        """float32 lower-bound costs, flat out[(u * n + r) * L + lane], for the L null keys of
        `useeds` (uint64): EXP from the table (exact log(1 - u) in the top bins), ITS |eta - u|."""
        lanes = np.uint64(useeds.size)
        if is_exp:
            for u in range(distinct):
                for r in range(n):
                    term = (np.uint64(r * distinct + u) + _ONE) * _G
                    top = np.uint64(0)
                    for lane in range(lanes):  # vectorised: the mixer over the lanes
                        z = useeds[lane] + term
                        z ^= z >> _S33
                        z *= _M1
                        z ^= z >> _S33
                        z *= _M2
                        z ^= z >> _S33
                        zbuf[lane] = z
                        j = z >> _STOP
                        jbuf[lane] = j
                        top |= (j + _EXACT_BINS) >> _TABLE_BITS  # 1 in the top bins
                    base = np.uint64(u * n + r) * lanes
                    for lane in range(lanes):
                        out[base + lane] = table[jbuf[lane]]
                    if top:  # rounded down by far more than float32's half ulp
                        for lane in range(lanes):
                            if jbuf[lane] >= _EXACT_FROM:
                                out[base + lane] = np.float32(_log1m(_unit(zbuf[lane])) * (1.0 + 1e-6))
        else:
            for u in range(distinct):
                for lane in range(lanes):
                    eta[np.uint64(u) * lanes + lane] = np.float32(_unit(_bits(useeds[lane], u)))
            for r in range(n):
                for lane in range(lanes):
                    urow[np.uint64(r) * lanes + lane] = np.float32(_unit(_bits(useeds[lane], distinct + r)))
            for u in range(distinct):
                for r in range(n):
                    base = np.uint64(u * n + r) * lanes
                    eb = np.uint64(u) * lanes
                    rb = np.uint64(r) * lanes
                    for lane in range(lanes):
                        out[base + lane] = abs(eta[eb + lane] - urow[rb + lane])

    @njit(cache=True)
    def _relaxed_bound(costs, labels, start, k, n, gap, skip, lam, prev, cur, last, out):
        """`alignment.levenshtein_lower_bound` of one block for L null keys at once, row by row:
        D[t][p] = min(D[t-1][p] + gap, min(D[t][p-1] + skip, D[t-1][p-1] + c) + lam), free start and
        end; out[lane] = min(out[lane], bound). Flat float32 rows of (n + k) * L."""
        lanes = np.uint64(out.size)
        width = n + k - 1
        for i in range(np.uint64(width + 1) * lanes):
            prev[i] = 0.0
        for lane in range(lanes):
            last[lane] = np.inf
        for t in range(1, k + 1):
            cb = np.uint64(labels[start + t - 1]) * np.uint64(n) * lanes
            tg = np.float32(t) * gap
            for lane in range(lanes):
                cur[lane] = tg
            r = np.uint64(0)
            for p in range(1, width + 1):
                a = np.uint64(p) * lanes
                am = a - lanes
                q = cb + r * lanes
                for lane in range(lanes):
                    x = prev[am + lane] + costs[q + lane]
                    c = cur[am + lane] + skip
                    x = (c if c < x else x) + lam
                    z = prev[a + lane] + gap
                    cur[a + lane] = z if z < x else x
                r += _ONE
                if r == np.uint64(n):
                    r = np.uint64(0)
            prev, cur = cur, prev
        for p in range(width + 1):
            a = np.uint64(p) * lanes
            for lane in range(lanes):
                v = prev[a + lane]
                last[lane] = v if v < last[lane] else last[lane]
        for lane in range(lanes):
            out[lane] = min(out[lane], np.float64(last[lane]) - np.float64(lam) * k)

    @njit(cache=True)
    def _basic_bound(costs, labels, k, n, acc, out):
        """min over shifts and blocks of the block sums of lower-bound costs, per lane."""
        m = labels.size
        lanes = np.uint64(out.size)
        for sp in range(n):
            for i in range(m - k + 1):
                for lane in range(lanes):
                    acc[lane] = 0.0
                r = (sp + i) % n
                for t in range(i, i + k):
                    q = (np.uint64(labels[t]) * np.uint64(n) + np.uint64(r)) * lanes
                    for lane in range(lanes):
                        acc[lane] += costs[q + lane]
                    r += 1
                    if r == n:
                        r = 0
                for lane in range(lanes):
                    out[lane] = min(out[lane], np.float64(acc[lane]))

    @njit(cache=True)
    def _tile_bound(e, width, k, s0, positions, gap, skip, lam, prev, cur):
        """The relaxed bound of `_relaxed_bound` (one key, float64) restricted to unrolled key
        positions s0 .. s0 + positions - 1: a lower bound for every shift whose window lies
        there. D[0][p] = 0 (free start), min over p of D[k][p] (free end), minus lam * k."""
        for p in range(positions + 1):
            prev[p] = 0.0
        for t in range(1, k + 1):
            cur[0] = t * gap
            eb = np.uint64(t - 1) * width + np.uint64(s0)
            for p in range(1, positions + 1):
                x = prev[p - 1] + e[eb + np.uint64(p - 1)]
                y = cur[p - 1] + skip
                x = (y if y < x else x) + lam
                z = prev[p] + gap
                cur[p] = z if z < x else x
            prev, cur = cur, prev
        best = np.inf
        for p in range(positions + 1):
            best = min(best, prev[p])
        return best - lam * k

    @njit(cache=True)
    def _edit_min(c, k, gamma, stop_at, e, prev, cur, lam, margin, bp, bc, free_end):
        """Exact `alignment.levenshtein_min` of one (n, m) cost matrix, vectorised over a tile of
        shifts (flat rows of TILE); returns early once a value <= stop_at is found (then only
        that value is exact). With lam >= 0, a tile whose relaxed bound exceeds stop_at + margin
        is skipped: the answer to `min <= stop_at` stays exact. `free_end`: min over the last
        DP row (key rows after the last match free), as `alignment` with free_end=True."""
        n, m = c.shape
        width = np.uint64(n + k - 1)
        tile = np.uint64(TILE)
        best = np.inf
        for start in range(m - k + 1):
            for t in range(k):  # e[t * width + q] = c[q mod n, start + t]
                for q in range(n + k - 1):
                    e[np.uint64(t) * width + np.uint64(q)] = c[q % n, start + t]
            for s0 in range(0, n, TILE):
                w = np.uint64(min(TILE, n - s0))
                if lam >= 0.0:
                    positions = min(TILE, n - s0) + k - 1
                    gap = gamma if free_end else 2.0 * gamma
                    skip = gamma if free_end else 0.0
                    if _tile_bound(e, width, k, s0, positions, gap, skip, lam, bp, bc) > stop_at + margin:
                        continue
                for j in range(k + 1):
                    for lane in range(w):
                        prev[np.uint64(j) * tile + lane] = j * gamma
                for t in range(1, k + 1):
                    tg = t * gamma
                    for lane in range(w):
                        cur[lane] = tg
                    eb = np.uint64(t - 1) * width + np.uint64(s0)
                    for j in range(1, k + 1):
                        a = np.uint64(j) * tile
                        am = a - tile
                        ej = eb + np.uint64(j - 1)
                        for lane in range(w):
                            x = prev[am + lane] + e[ej + lane]
                            y = prev[a + lane] + gamma
                            x = x if x < y else y
                            z = cur[am + lane] + gamma
                            cur[a + lane] = x if x < z else z
                    prev, cur = cur, prev
                kb = np.uint64(k) * tile
                for lane in range(w):
                    best = min(best, prev[kb + lane])
                if free_end:  # prev[j * tile + lane] = D[k][j]
                    for j in range(k):
                        a = np.uint64(j) * tile
                        for lane in range(w):
                            best = min(best, prev[a + lane])
                if best <= stop_at:
                    return best
        return best

    @njit(cache=True)
    def _basic_min(c, k, stop_at):
        """Exact `alignment.basic_min` (block sums added left to right), with the same early stop."""
        n, m = c.shape
        best = np.inf
        for sp in range(n):
            for i in range(m - k + 1):
                acc = c[(sp + i) % n, i]
                for t in range(i + 1, i + k):
                    acc += c[(sp + t) % n, t]
                best = min(best, acc)
            if best <= stop_at:
                return best
        return best

    def _indicators_impl(
        is_exp, edit, seeds, labels, distinct, n, k, gamma, lams, observed, margin, table, threads, stop_hits,
        free_end,
    ):  # fmt: skip
        b = seeds.size
        m = labels.size
        groups = (b + LANES - 1) // LANES
        hits = np.zeros(b, np.bool_)
        bounds = np.full((b, lams.size), np.inf)
        exact = np.zeros(b, np.bool_)
        workers = max(1, min(threads, groups))
        width = n + k - 1
        useeds = seeds.view(np.uint64)
        skip = not (is_exp or edit)  # ITS basic: exact costs are as cheap as bounds
        gap = gamma if free_end else 2.0 * gamma  # what an unmatched token surely pays
        row_gap = gamma if free_end else 0.0  # and a key row skipped before the last match
        done = np.full(1, b)  # keys with a result: all, unless one worker stops at stop_hits
        for wid in prange(workers):
            found = 0
            costs = np.zeros(distinct * n * LANES, np.float32)
            prev32 = np.zeros((width + 1) * LANES, np.float32)
            cur32 = np.zeros((width + 1) * LANES, np.float32)
            last = np.empty(LANES, np.float32)
            zbuf = np.empty(LANES, np.uint64)
            jbuf = np.empty(LANES, np.uint64)
            eta = np.empty(distinct * LANES, np.float32)
            urow = np.empty(n * LANES, np.float32)
            lane_bound = np.empty(LANES)
            c64 = np.empty((n, m))
            rows = np.empty(distinct)
            e = np.empty(k * width)
            prev = np.empty((k + 1) * TILE)
            cur = np.empty((k + 1) * TILE)
            bp = np.empty(TILE + k)
            bc = np.empty(TILE + k)
            for g in range(wid, groups, workers):
                if done[0] < b:
                    break
                g0 = g * LANES
                lanes = min(LANES, b - g0)
                if not skip:
                    _bound_costs(
                        is_exp, useeds[g0 : g0 + lanes], distinct, n, table, costs, zbuf, jbuf, eta, urow
                    )
                    for li in range(lams.size):
                        lane_bound[:] = np.inf
                        if edit:
                            for start in range(m - k + 1):
                                _relaxed_bound(
                                    costs, labels, start, k, n, np.float32(gap), np.float32(row_gap),
                                    np.float32(lams[li]),
                                    prev32, cur32, last, lane_bound[:lanes],
                                )  # fmt: skip
                        else:
                            _basic_bound(costs, labels, k, n, last, lane_bound[:lanes])
                        for lane in range(lanes):
                            bounds[g0 + lane, li] = lane_bound[lane]
                for lane in range(lanes):
                    i = g0 + lane
                    best, lam = -np.inf, 0.0
                    for li in range(lams.size):
                        if bounds[i, li] > best:
                            best, lam = bounds[i, li], lams[li]
                    if skip or best <= observed + margin:
                        exact[i] = True
                        _exact_costs(is_exp, useeds[i], labels, distinct, n, c64, rows)
                        if edit:
                            stat = _edit_min(
                                c64, k, gamma, observed, e, prev, cur, lam, margin, bp, bc, free_end
                            )
                        else:
                            stat = _basic_min(c64, k, observed)
                        hits[i] = stat <= observed
                    if hits[i] and workers == 1 and stop_hits > 0:  # in draw order: stop at the h-th
                        found += 1
                        if found == stop_hits:
                            done[0] = i + 1
                            break
        return hits, bounds, exact, done[0]

    # one lane group runs serially: waking worker threads costs more than it saves there
    _indicators_parallel = njit(parallel=True, cache=True)(_indicators_impl)
    _indicators_serial = njit(cache=True)(_indicators_impl)

    @njit(cache=True)
    def _forward_one(eta, u, lr, insert_rate, skip_w, g, h, x):
        """-log Lambda of one key: `alignment.its_forward` with the cell ratios read from `lr`
        (ETA_BINS x DIFF_BINS, ratios, not logs) at (eta bin of the token, u - eta bin), the bins
        of `its_likelihood.cell_of`.
        `g` holds n + 2 entries, row r at g[2 + r] and rows n - 2, n - 1 copied in front, so that
        the skips (at most MAX_SKIP = 2 rows) are one loop without wrap-around tests."""
        n = u.size
        m = eta.size
        eta_bins = lr.shape[0]
        bins = lr.shape[1]
        half = bins / 2.0
        keep = 1.0 - insert_rate
        w1 = skip_w[0] if skip_w.size > 0 else 0.0
        w2 = skip_w[1] if skip_w.size > 1 else 0.0
        for r in range(n):
            g[2 + r] = 1.0 / n
        total = 0.0
        for t in range(m):
            g[0] = g[2 + (n - 2) % n]
            g[1] = g[2 + (n - 1) % n]
            for r in range(n):
                h[r] = g[r + 2] + w1 * g[r + 1] + w2 * g[r]
            e = eta[t]
            row = lr[min(np.int64(e * eta_bins), eta_bins - 1)]
            for r in range(n):
                j = min(np.int64((u[r] - e + 1.0) * half), bins - 1)
                x[r] = keep * h[r] * row[j]
            g[2] = insert_rate * h[0] + x[n - 1]
            for r in range(1, n):
                g[2 + r] = insert_rate * h[r] + x[r - 1]
            s = 0.0
            for r in range(n):
                s += g[2 + r]
            inv = 1.0 / s
            for r in range(n):
                g[2 + r] *= inv
            total += math.log(s)
        return -total

    @njit(parallel=True, cache=True)
    def _forward_nulls(seeds, labels, distinct, n, lr, insert_rate, skip_w):
        """The forward statistic under each null key (its eta and u drawn as `_exact_costs` does)."""
        b = seeds.size
        m = labels.size
        out = np.empty(b)
        useeds = seeds.view(np.uint64)
        for i in prange(b):
            rows = np.empty(distinct)
            u = np.empty(n)
            eta = np.empty(m)
            g, h, x = np.empty(n + 2), np.empty(n), np.empty(n)
            for d in range(distinct):
                rows[d] = _unit(_bits(useeds[i], d))
            for r in range(n):
                u[r] = _unit(_bits(useeds[i], distinct + r))
            for t in range(m):
                eta[t] = rows[labels[t]]
            out[i] = _forward_one(eta, u, lr, insert_rate, skip_w, g, h, x)
        return out


_TABLE = lower_table()


def _call(kernel, *args):
    """Call a cached kernel; numba's on-disk cache stores the module's import name, so an entry
    written under another name (this file imported as `watermark.null_kernels` before the
    package moved to `wm_toolkit`) fails to load with an ImportError. Drop every cache entry of
    this module then and compile afresh, once, instead of failing the detection."""
    try:
        return kernel(*args)
    except ImportError:
        for obj in list(globals().values()):
            cache = getattr(obj, "_cache", None)
            if cache is not None and hasattr(cache, "flush"):
                cache.flush()
        return kernel(*args)


def null_indicators(
    family: str,
    edit: bool,
    seeds: np.ndarray,
    labels: np.ndarray,
    distinct: int,
    key_length: int,
    k: int,
    gamma: float,
    lams: tuple[float, ...],
    observed: float,
    margin: float,
    stop_hits: int = 0,
    free_end: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(null statistic <= observed, lower bounds per multiplier in `lams`, which keys ran the
    exact DP) for each null key seed, in seed order. Bounds are inf where not computed.
    `stop_hits` > 0: the arrays may end at the key whose indicator is the stop_hits-th True
    (Besag-Clifford stops there anyway; one lane group at a time keeps that order)."""
    threads = numba.get_num_threads()
    kernel = _indicators_parallel if threads > 1 and len(seeds) > LANES else _indicators_serial
    hits, bounds, exact, done = _call(
        kernel,
        family == "exp",
        bool(edit),
        np.ascontiguousarray(seeds, dtype=np.int64),
        np.ascontiguousarray(labels, dtype=np.int64),
        int(distinct),
        int(key_length),
        int(k),
        float(gamma),
        np.asarray(lams, dtype=np.float64),
        float(observed),
        float(margin),
        _TABLE,
        threads,
        int(stop_hits),
        bool(free_end),
    )
    return hits[:done], bounds[:done], exact[:done]


def null_costs(family: str, seed: int, labels: np.ndarray, distinct: int, key_length: int) -> np.ndarray:
    """The (n, m) float64 costs of one null key (equals `DistortionFreeScheme.null_costs`)."""
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    out = np.empty((key_length, labels.size))
    seed64 = np.uint64(np.int64(seed).view(np.uint64))
    _call(_exact_costs, family == "exp", seed64, labels, distinct, key_length, out, np.empty(distinct))
    return out


def edit_min(costs: np.ndarray, k: int, gamma: float, free_end: bool = False) -> float:
    """Exact soft edit statistic of one (n, m) cost matrix (equals `alignment.levenshtein_min`)."""
    c = np.ascontiguousarray(costs, dtype=np.float64)
    n = c.shape[0]
    e, prev, cur = np.empty(k * (n + k - 1)), np.empty((k + 1) * TILE), np.empty((k + 1) * TILE)
    b = np.empty(TILE + k)
    return float(
        _call(_edit_min, c, k, float(gamma), -np.inf, e, prev, cur, -1.0, 0.0, b, b.copy(), bool(free_end))
    )


def basic_min(costs: np.ndarray, k: int) -> float:
    """Exact basic statistic of one (n, m) cost matrix (equals `alignment.basic_min`)."""
    return float(_call(_basic_min, np.ascontiguousarray(costs, dtype=np.float64), k, -np.inf))


def skip_weights(skip_rate: float, key_length: int) -> np.ndarray:
    """Weights of skipping 1..MAX_SKIP key rows before a token (`alignment.its_forward`)."""
    if skip_rate <= 0.0:
        return np.zeros(0)
    return skip_rate ** np.arange(1, min(MAX_SKIP, key_length - 1) + 1, dtype=np.float64)


def forward_statistic(
    eta: np.ndarray, u: np.ndarray, lr: np.ndarray, insert_rate: float, skip_rate: float
) -> float:
    """The forward statistic of one key from its token etas (m,) and row uniforms (n,)."""
    eta = np.ascontiguousarray(eta, dtype=np.float64)
    u = np.ascontiguousarray(u, dtype=np.float64)
    lr = np.ascontiguousarray(lr, dtype=np.float64)
    n = u.size
    w = skip_weights(skip_rate, n)
    buf = (np.empty(n + 2), np.empty(n), np.empty(n))
    return float(_call(_forward_one, eta, u, lr, float(insert_rate), w, *buf))


def forward_nulls(
    seeds: np.ndarray, labels: np.ndarray, distinct: int, key_length: int, lr: np.ndarray,
    insert_rate: float, skip_rate: float,
) -> np.ndarray:  # fmt: skip
    """The forward statistic under each null key seed, in seed order (parallel over keys)."""
    return _call(
        _forward_nulls,
        np.ascontiguousarray(seeds, dtype=np.int64),
        np.ascontiguousarray(labels, dtype=np.int64),
        int(distinct),
        int(key_length),
        np.ascontiguousarray(lr, dtype=np.float64),
        float(insert_rate),
        skip_weights(skip_rate, key_length),
    )

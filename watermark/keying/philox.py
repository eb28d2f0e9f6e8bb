"""vLLM's watermark PRF (`PhiloxPRF`, version "philox4x32-10-v1") in numpy, bit for bit.

vLLM draws every Gumbel uniform of its native watermarks from Philox4x32-10 (Salmon et al. 2011)
keyed by a 64-bit integer (k0 = low 32 bits, k1 = high 32 bits):
- the context (w token ids, -1 for "before the text", taken mod 2^32) is absorbed four words at a
  time: state = (CONTEXT_DOMAIN, w, 0, 0); for each block at offset o, missing slot i filled with
  2^32 - 1 - i, state = philox(state ^ block, key = (k0 ^ o, k1));
- token t: out = philox((t >> 2, s0, s1, s2), key = (k0 ^ s3, k1 ^ TOKEN_DOMAIN)), word = out[t & 3];
- uniform = float32((word >> 8) + 1) / (2^24 + 1)): 2^24 levels in (0, 1).
`derive_key` is vLLM's dual-key derivation (SHA-256 of a domain and the key's 8 big-endian bytes).
This is vLLM's PRF, kept apart from wm's own (`keying.prf`) because its bits are vLLM's contract.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..settings import numba_or_none

MASK32 = np.uint64(0xFFFFFFFF)
M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
CONTEXT_DOMAIN = 0x574D4358
TOKEN_DOMAIN = 0x574D544B
UNIFORM_LEVELS = 1 << 24  # the uniform keeps the top 24 bits of a word
MAX_KEY = (1 << 64) - 1
VERSION = "philox4x32-10-v1"

Words = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def derive_key(key: int, domain: bytes) -> int:
    """vLLM's `derive_watermark_key`: first 8 bytes (big-endian) of SHA-256(domain + key as 8 bytes)."""
    digest = hashlib.sha256(domain + int(key).to_bytes(8, "big")).digest()
    return int.from_bytes(digest[:8], "big")


def philox4x32_10(counter: Words, key: tuple[np.ndarray, np.ndarray]) -> Words:
    """Ten Philox4x32 rounds on uint64 arrays holding 32-bit words (broadcasting)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        p0 = M0 * c0  # < 2^64: exact in uint64
        p1 = M1 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32
        if r != 9:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
    return c0, c1, c2, c3


def _words(x: np.ndarray) -> np.ndarray:
    """Token ids (int64, -1 for padding) as the unsigned 32-bit words vLLM uses (x & 0xFFFFFFFF)."""
    return np.asarray(x, dtype=np.int64).astype(np.uint64) & MASK32


def context_states(key: int, contexts: np.ndarray) -> Words:
    """The Philox state after absorbing each context row: contexts (n, w) int64 -> 4 x (n,) words."""
    ctx = _words(np.atleast_2d(contexts))
    n, w = ctx.shape
    k0, k1 = np.uint64(key & 0xFFFFFFFF), np.uint64(key >> 32)
    state = [np.full(n, CONTEXT_DOMAIN, np.uint64), np.full(n, w, np.uint64), np.zeros(n, np.uint64)]
    state.append(np.zeros(n, np.uint64))
    for offset in range(0, w, 4):
        block = [
            ctx[:, offset + i] if offset + i < w else np.full(n, 0xFFFFFFFF - i, np.uint64) for i in range(4)
        ]
        c0, c1, c2, c3 = (state[i] ^ block[i] for i in range(4))
        state = list(philox4x32_10((c0, c1, c2, c3), (k0 ^ np.uint64(offset), k1)))
    s0, s1, s2, s3 = state
    return s0, s1, s2, s3


def words(key: int, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """The 32-bit Philox word of each (context row, token): tokens broadcast against (n, 1)
    (one token per row: shape (n, 1); the whole vocabulary: shape (V,) -> (n, V))."""
    s0, s1, s2, s3 = (x[:, None] for x in context_states(key, contexts))
    t = _words(tokens)
    k0, k1 = np.uint64(key & 0xFFFFFFFF), np.uint64(key >> 32)
    out = philox4x32_10((t >> 2, s0, s1, s2), (k0 ^ s3, k1 ^ np.uint64(TOKEN_DOMAIN)))
    lane = t & np.uint64(3)
    word = np.where(lane == 0, out[0], out[1])
    word = np.where(lane == 2, out[2], word)
    return np.where(lane == 3, out[3], word)


def levels(key: int, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """m + 1 in 1..2^24 (int64): the uniform is float32((m + 1) / (2^24 + 1)). One token per
    context row (tokens (n, 1)) and the whole vocabulary (tokens (V,)) run in the numba kernels
    when they are there; other broadcasts, and every shape without numba, in numpy."""
    ks = kernels()
    ctx = np.atleast_2d(np.asarray(contexts, dtype=np.int64))
    tok = np.asarray(tokens, dtype=np.int64)
    if ks is not None and ctx.ndim == 2 and ctx.shape[1] > 0:
        k0, k1 = np.uint64(key & 0xFFFFFFFF), np.uint64(key >> 32)
        ctx = np.ascontiguousarray(ctx)
        if tok.ndim == 2 and tok.shape == (ctx.shape[0], 1):
            return ks[1](k0, k1, ctx, np.ascontiguousarray(tok[:, 0]))[:, None]
        if tok.ndim == 1:
            return ks[2](k0, k1, ctx, np.ascontiguousarray(tok))
    return levels_numpy(key, ctx, tok)


def levels_numpy(key: int, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """`levels` in numpy (the reference the kernels are tested against)."""
    return (words(key, contexts, tokens) >> np.uint64(8)).astype(np.int64) + 1


def uniforms(key: int, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """vLLM's `PhiloxPRF(key).uniform(contexts, tokens)`: float32 in (0, 1), bit for bit."""
    return (levels(key, contexts, tokens) / float(UNIFORM_LEVELS + 1)).astype(np.float32)


def check_key(key: int) -> int:
    if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= MAX_KEY:
        raise ValueError("a vLLM watermark key is an integer in [0, 2^64)")
    return key


# ---- numba kernels (integer arithmetic only: the same bits as the numpy functions above) --------
_KERNELS: list = []


def kernels():  # noqa: ANN201 - a tuple of numba dispatchers, or None
    """(column_levels, pair_levels, grid_levels), compiled once (cached on disk); None without
    numba or with `WM_NUMBA=0`. `column_levels(k0, k1, cols, tokens, out)`: cols[i, r] is slot i
    of row r's context blocks (32-bit words, a block's missing slots already filled with
    2^32 - 1 - i), each loop runs over the rows so that it vectorises (~10 ns a token, one core)."""
    if not _KERNELS:
        _KERNELS.append(_compile())
    return _KERNELS[0]


def _compile():  # noqa: ANN202
    numba = numba_or_none()
    if numba is None:
        return None
    njit = numba.njit
    rounds, token_level = _compile_rounds(njit)
    mask, cdom = MASK32, np.uint64(CONTEXT_DOMAIN)

    @njit(cache=True)
    def absorb_pass(a, b, c, d, cols, off, ko, k1):  # pragma: no cover - compiled
        for r in range(a.size):
            a[r], b[r], c[r], d[r] = rounds(
                a[r] ^ cols[off, r], b[r] ^ cols[off + 1, r], c[r] ^ cols[off + 2, r],
                d[r] ^ cols[off + 3, r], ko, k1,
            )  # fmt: skip

    @njit(cache=True)
    def token_pass(a, b, c, d, k0, k1, tokens, out):  # pragma: no cover - compiled
        for r in range(tokens.size):
            out[r] = token_level(a[r], b[r], c[r], d[r], k0, k1, tokens[r])

    @njit(cache=True)
    def column_levels(k0, k1, w, cols, tokens, out):  # pragma: no cover - compiled
        n = tokens.size
        a, b = np.full(n, cdom), np.full(n, np.uint64(w))
        c, d = np.zeros(n, np.uint64), np.zeros(n, np.uint64)
        for off in range(0, cols.shape[0], 4):
            absorb_pass(a, b, c, d, cols, off, k0 ^ np.uint64(off), k1)
        token_pass(a, b, c, d, k0, k1, tokens, out)

    @njit(cache=True)
    def pair_levels(k0, k1, contexts, tokens):  # pragma: no cover - compiled
        n, w = contexts.shape
        cols = np.empty((4 * ((w + 3) // 4), n), np.uint64)
        for i in range(cols.shape[0]):
            for r in range(n):
                cols[i, r] = (np.uint64(contexts[r, i]) & mask) if i < w else np.uint64(0xFFFFFFFF - i % 4)
        out = np.empty(n, np.int64)
        column_levels(k0, k1, w, cols, np.asarray(tokens).astype(np.uint64) & mask, out)
        return out

    return column_levels, pair_levels, _compile_grid(njit, rounds, token_level)


def _compile_rounds(njit):  # noqa: ANN001, ANN202
    """Philox4x32-10's rounds and the token step (uint64 words holding 32 bits)."""
    mask, m0, m1, w0, w1 = MASK32, M0, M1, W0, W1
    s32, s8, one, two = np.uint64(32), np.uint64(8), np.uint64(1), np.uint64(2)
    tdom = np.uint64(TOKEN_DOMAIN)

    @njit(inline="always")
    def rounds(c0, c1, c2, c3, k0, k1):  # pragma: no cover - compiled
        for _ in range(10):  # the key bump after the last round is never used
            p0 = m0 * c0
            p1 = m1 * c2
            c0, c1, c2, c3 = (p1 >> s32) ^ c1 ^ k0, p1 & mask, (p0 >> s32) ^ c3 ^ k1, p0 & mask
            k0, k1 = (k0 + w0) & mask, (k1 + w1) & mask
        return c0, c1, c2, c3

    @njit(inline="always")
    def token_level(s0, s1, s2, s3, k0, k1, t):  # pragma: no cover - compiled
        o0, o1, o2, o3 = rounds(t >> two, s0, s1, s2, k0 ^ s3, k1 ^ tdom)
        low, high = (o1 if t & one else o0), (o3 if t & one else o2)
        word = high if t & two else low
        return np.int64(word >> s8) + 1

    return rounds, token_level


def _compile_grid(njit, rounds, token_level):  # noqa: ANN001, ANN202
    """grid_levels(k0, k1, contexts (n, w), tokens (V,)) -> (n, V): every token of the vocabulary."""
    mask, cdom = MASK32, np.uint64(CONTEXT_DOMAIN)

    @njit(cache=True)
    def grid_row(s0, s1, s2, s3, k0, k1, tokens, out):  # pragma: no cover - compiled
        for v in range(tokens.size):
            out[v] = token_level(s0, s1, s2, s3, k0, k1, tokens[v])

    @njit(inline="always")
    def pair_state(k0, k1, ctx, state):  # pragma: no cover - compiled
        w = ctx.size
        s0, s1, s2, s3 = cdom, np.uint64(w), np.uint64(0), np.uint64(0)
        for off in range(0, w, 4):
            blk = np.empty(4, np.uint64)
            for i in range(4):
                blk[i] = (np.uint64(ctx[off + i]) & mask) if off + i < w else np.uint64(0xFFFFFFFF - i)
            s0, s1, s2, s3 = rounds(
                s0 ^ blk[0], s1 ^ blk[1], s2 ^ blk[2], s3 ^ blk[3], k0 ^ np.uint64(off), k1
            )
        state[0], state[1], state[2], state[3] = s0, s1, s2, s3

    @njit(cache=True)
    def grid_levels(k0, k1, contexts, tokens):  # pragma: no cover - compiled
        n, w = contexts.shape
        out = np.empty((n, tokens.size), dtype=np.int64)
        toks = tokens.astype(np.uint64) & mask
        for r in range(n):
            state = np.empty(4, np.uint64)
            pair_state(k0, k1, contexts[r], state)
            grid_row(state[0], state[1], state[2], state[3], k0, k1, toks, out[r])
        return out

    return grid_levels

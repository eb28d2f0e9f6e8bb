"""`prf.context_seeds` for many sub-keys at once: the same keyed BLAKE2b seeds, bit for bit.

A keyring tests one text under many keys; every key needs its own seed per distinct context
(a keyed BLAKE2b call each), and through hashlib each call costs about a microsecond of Python.
`many_context_seeds(subkeys, contexts)` returns `stack([prf.context_seeds(k, contexts) for k in
subkeys])`. With numba it runs BLAKE2b (RFC 7693) in one compiled loop over (key, context): a
context of h <= 16 ids is one 128-byte message block, and the keyed hash's first block (the
padded key) is compressed once per key and its chaining value reused, so a seed costs one
compression. Without numba (or with `WM_NUMBA=0`) it calls `prf.context_seeds` per key.
tests/test_prf_batch.py checks both paths against hashlib on random keys and context widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..settings import numba_or_none
from . import prf

PERSON = b"wm-prf-seed"  # prf.seed_of's personalisation
DIGEST_SIZE = 8
_IV = (
    0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
    0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179,
)  # fmt: skip
_SIGMA = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    (14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3),
    (11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4),
    (7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8),
    (9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13),
    (2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9),
    (12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11),
    (13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10),
    (6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5),
    (10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0),
)
_KERNELS: list = []


def many_context_seeds(subkeys: Sequence[bytes], contexts: np.ndarray) -> np.ndarray:
    """Seeds of each row of `contexts` (n, h) under each sub-key: int64 (len(subkeys), n),
    row k equal to `prf.context_seeds(subkeys[k], contexts)`."""
    return ManyKeySeeds(subkeys)(contexts)


class ManyKeySeeds:
    """`many_context_seeds` for a fixed list of sub-keys, their key blocks compressed once.

    In memory only: like `prf.SeedCache`, what it holds depends on the secret keys."""

    def __init__(self, subkeys: Sequence[bytes]):
        self.subkeys = list(subkeys)
        kernels = _kernels() if all(0 < len(k) <= 64 for k in self.subkeys) else None
        self._states = None if kernels is None else _chaining_values(kernels, self.subkeys)

    def __len__(self) -> int:
        return len(self.subkeys)

    def __call__(self, contexts: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """(len(rows), n) seeds of the rows of `contexts` under the sub-keys `rows` (default all)."""
        ctx = np.ascontiguousarray(np.asarray(contexts, dtype=np.int64))
        if ctx.ndim != 2:
            raise ValueError("contexts must be a 2-D array (n, h)")
        picked = np.arange(len(self.subkeys)) if rows is None else np.asarray(rows, dtype=np.int64)
        if self._states is None or ctx.shape[1] == 0 or ctx.shape[0] == 0:
            out = np.empty((len(picked), ctx.shape[0]), dtype=np.int64)
            for i, k in enumerate(picked):
                out[i] = prf.context_seeds(self.subkeys[int(k)], ctx)
            return out
        states = self._states if rows is None else np.ascontiguousarray(self._states[picked])
        return _kernels()[1](states, ctx.view(np.uint64)).view(np.int64)


def _chaining_values(kernels, subkeys: Sequence[bytes]) -> np.ndarray:
    """Each keyed hash's state after its key block, (len(subkeys), 8) uint64."""
    blocks = np.zeros((len(subkeys), 16), dtype=np.uint64)
    lengths = np.zeros(len(subkeys), dtype=np.uint64)
    for i, k in enumerate(subkeys):
        blocks[i] = np.frombuffer(k + bytes(128 - len(k)), dtype="<u8")
        lengths[i] = len(k)
    person = np.frombuffer(PERSON + bytes(16 - len(PERSON)), dtype="<u8").astype(np.uint64)
    return kernels[0](blocks, lengths, person, np.uint64(DIGEST_SIZE))


def _kernels():
    """(key states, seeds) numba kernels, compiled once and cached on disk; None without numba."""
    if not _KERNELS:
        numba = numba_or_none()
        _KERNELS.append(None if numba is None else _compile(numba.njit))
    return _KERNELS[0]


def _compile_compress(njit):
    """BLAKE2b's compression function F (RFC 7693, section 3.2), compiled."""
    iv = np.array(_IV, dtype=np.uint64)
    sigma = np.array(_SIGMA, dtype=np.int64)
    r32, r24, r16, r63 = np.uint64(32), np.uint64(24), np.uint64(16), np.uint64(63)
    s64 = np.uint64(64)
    full = np.uint64(0xFFFFFFFFFFFFFFFF)

    @njit(inline="always")
    def rotr(x, n):  # pragma: no cover - compiled
        return (x >> n) | (x << (s64 - n))

    @njit(inline="always")
    def g(a, b, c, d, x, y):  # pragma: no cover - compiled
        a = a + b + x
        d = rotr(d ^ a, r32)
        c = c + d
        b = rotr(b ^ c, r24)
        a = a + b + y
        d = rotr(d ^ a, r16)
        c = c + d
        b = rotr(b ^ c, r63)
        return a, b, c, d

    @njit(cache=True)
    def compress(h, m, t, last, v):  # pragma: no cover - compiled
        # the 16 working words in locals (registers), not in the array v
        v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
        v8, v9, v10, v11, v12, v13, v14, v15 = iv[0], iv[1], iv[2], iv[3], iv[4], iv[5], iv[6], iv[7]
        v12 ^= t
        if last:
            v14 ^= full
        for r in range(12):
            s = sigma[r % 10]
            v0, v4, v8, v12 = g(v0, v4, v8, v12, m[s[0]], m[s[1]])
            v1, v5, v9, v13 = g(v1, v5, v9, v13, m[s[2]], m[s[3]])
            v2, v6, v10, v14 = g(v2, v6, v10, v14, m[s[4]], m[s[5]])
            v3, v7, v11, v15 = g(v3, v7, v11, v15, m[s[6]], m[s[7]])
            v0, v5, v10, v15 = g(v0, v5, v10, v15, m[s[8]], m[s[9]])
            v1, v6, v11, v12 = g(v1, v6, v11, v12, m[s[10]], m[s[11]])
            v2, v7, v8, v13 = g(v2, v7, v8, v13, m[s[12]], m[s[13]])
            v3, v4, v9, v14 = g(v3, v4, v9, v14, m[s[14]], m[s[15]])
        h[0] ^= v0 ^ v8
        h[1] ^= v1 ^ v9
        h[2] ^= v2 ^ v10
        h[3] ^= v3 ^ v11
        h[4] ^= v4 ^ v12
        h[5] ^= v5 ^ v13
        h[6] ^= v6 ^ v14
        h[7] ^= v7 ^ v15

    return compress


def _compile(njit):
    """The two loops around BLAKE2b's compression: the keys' first blocks, then each context."""
    compress = _compile_compress(njit)
    iv = np.array(_IV, dtype=np.uint64)
    zero = np.uint64(0)

    @njit(cache=True)
    def key_states(blocks, lengths, person, digest):  # pragma: no cover - compiled
        out = np.empty((blocks.shape[0], 8), dtype=np.uint64)
        v = np.empty(16, dtype=np.uint64)
        for k in range(blocks.shape[0]):
            h = iv.copy()
            h[0] ^= np.uint64(0x01010000) ^ (lengths[k] << np.uint64(8)) ^ digest
            h[6] ^= person[0]
            h[7] ^= person[1]
            compress(h, blocks[k], np.uint64(128), False, v)
            out[k] = h
        return out

    @njit(cache=True)
    def seeds(states, ctx):  # pragma: no cover - compiled
        n, width = ctx.shape
        out = np.empty((states.shape[0], n), dtype=np.uint64)
        h = np.empty(8, dtype=np.uint64)
        m = np.empty(16, dtype=np.uint64)
        v = np.empty(16, dtype=np.uint64)
        blocks = (width + 15) // 16
        length = np.uint64(128 + 8 * width)
        for k in range(states.shape[0]):
            for u in range(n):
                h[:] = states[k]
                for b in range(blocks):
                    for i in range(16):
                        j = 16 * b + i
                        m[i] = ctx[u, j] if j < width else zero
                    last = b == blocks - 1
                    compress(h, m, length if last else np.uint64(128 * (b + 2)), last, v)
                out[k, u] = h[0]
        return out

    return key_states, seeds

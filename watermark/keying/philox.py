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
    """m + 1 in 1..2^24 (int64): the uniform is float32((m + 1) / (2^24 + 1))."""
    return (words(key, contexts, tokens) >> np.uint64(8)).astype(np.int64) + 1


def uniforms(key: int, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """vLLM's `PhiloxPRF(key).uniform(contexts, tokens)`: float32 in (0, 1), bit for bit."""
    return (levels(key, contexts, tokens) / float(UNIFORM_LEVELS + 1)).astype(np.float32)


def check_key(key: int) -> int:
    if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= MAX_KEY:
        raise ValueError("a vLLM watermark key is an integer in [0, 2^64)")
    return key

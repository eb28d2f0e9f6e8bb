"""The one keyed pseudo-random function shared by every scheme, in generation and detection.

Two layers:
1. `context_seeds`: a cryptographic 64-bit seed per context (keyed BLAKE2b of the context's
   token ids, or of a key position). Distinct contexts get independent seeds; repeated contexts
   are hashed once.
2. `mix`: a fast integer mixer (SplitMix64 increment + MurmurHash3 fmix64 finaliser) that turns
   (seed, counter) pairs into 64 pseudo-random bits, vectorised over torch int64 tensors. The
   counter is a token id (green lists, EXP key rows) or 0.

Integer arithmetic on int64 wraps identically on every device, and logical shifts are emulated
with masks, so the bits are identical on CPU and GPU and between the vocabulary-wide path used
in generation and the per-token path used in detection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from ..settings import numba_or_none

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as signed int64
_M1 = -49064778989728563  # 0xff51afd7ed558ccd
_M2 = -4265267296055464877  # 0xc4ceb9fe1a85ec53
_MASK_53 = (1 << 53) - 1
_SIGN = -(1 << 63)
_INV_2_53 = 1.0 / float(1 << 53)


def _to_int64(u: int) -> int:
    return u - (1 << 64) if u >= (1 << 63) else u


def seed_of(subkey: bytes, context: bytes) -> int:
    """The keyed seed of one context, as a signed 64-bit integer."""
    digest = hashlib.blake2b(context, key=subkey, digest_size=8, person=b"wm-prf-seed").digest()
    return int.from_bytes(digest, "little", signed=True)


def context_seeds(subkey: bytes, contexts: np.ndarray) -> np.ndarray:
    """Seeds for each row of `contexts` (shape (n, h), integer ids); h = 0 gives one shared seed.

    Rows are hashed once per distinct row, so cost scales with the number of distinct contexts.
    """
    ctx = np.ascontiguousarray(np.asarray(contexts, dtype=np.int64))
    if ctx.ndim != 2:
        raise ValueError("contexts must be a 2-D array (n, h)")
    n, h = ctx.shape
    if h == 0:
        return np.full(n, seed_of(subkey, b""), dtype=np.int64)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    uniq, inverse = np.unique(ctx, axis=0, return_inverse=True)
    le = uniq.astype("<i8", copy=False)
    seeds = np.fromiter((seed_of(subkey, row.tobytes()) for row in le), dtype=np.int64, count=len(le))
    return seeds[inverse.reshape(-1)]


class SeedCache:
    """`context_seeds` for one sub-key, memoised for one-token contexts (h = 1, the common case).

    Generation and detection meet the same previous tokens again and again, and each seed costs
    one keyed BLAKE2b call; a table indexed by token id makes repeats free. In memory only: seeds
    depend on the secret key and are never written anywhere.
    """

    _MAX_TABLE = 1 << 24

    def __init__(self, subkey: bytes):
        self.subkey = subkey
        self._table = np.zeros(0, dtype=np.int64)
        self._filled = np.zeros(0, dtype=bool)

    def __call__(self, contexts: np.ndarray) -> np.ndarray:
        ctx = np.asarray(contexts, dtype=np.int64)
        if ctx.ndim != 2 or ctx.shape[1] != 1 or ctx.size == 0:
            return context_seeds(self.subkey, ctx)
        ids = ctx[:, 0]
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self._MAX_TABLE:
            return context_seeds(self.subkey, ctx)
        if hi >= len(self._table):
            size = max(hi + 1, 2 * len(self._table))
            self._table = np.concatenate([self._table, np.zeros(size - len(self._table), dtype=np.int64)])
            self._filled = np.concatenate([self._filled, np.zeros(size - len(self._filled), dtype=bool)])
        uniq = np.unique(ids)
        missing = uniq[~self._filled[uniq]]
        if missing.size:
            self._table[missing] = context_seeds(self.subkey, missing.reshape(-1, 1))
            self._filled[missing] = True
        return self._table[ids]


def position_seeds(subkey: bytes, positions: np.ndarray | Sequence[int]) -> np.ndarray:
    """Seeds for key-sequence positions (EXP/ITS rows): the same PRF with a one-id context."""
    pos = np.asarray(positions, dtype=np.int64).reshape(-1, 1)
    return context_seeds(subkey, pos)


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> s).bitwise_and_((1 << (64 - s)) - 1)  # in place: the out-of-place & is ~25x slower


def _finalise_(z: torch.Tensor) -> torch.Tensor:
    """MurmurHash3 fmix64 in place on a fresh int64 tensor (in-place ops: ~3x less memory traffic)."""
    t = torch.empty_like(z)
    for mult in (_M1, _M2, None):
        torch.bitwise_right_shift(z, 33, out=t)
        t.bitwise_and_((1 << 31) - 1)  # logical shift: clear the sign-extended bits
        z.bitwise_xor_(t)
        if mult is not None:
            z.mul_(mult)
    return z


def mix(seeds: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """64 pseudo-random bits (as int64) for each broadcast pair (seed, counter)."""
    return _finalise_(seeds + (counters + 1) * _GOLDEN)


_VOCAB_TERMS: dict[tuple[int, str], torch.Tensor] = {}


def _vocab_term(vocab_size: int, device: torch.device) -> torch.Tensor:
    """(arange(V) + 1) * golden, cached per vocabulary size and device (used at every step)."""
    k = (vocab_size, str(device))
    if k not in _VOCAB_TERMS:
        ids = torch.arange(vocab_size, dtype=torch.int64, device=device)
        _VOCAB_TERMS[k] = ((ids + 1) * _GOLDEN).reshape(1, -1)
    return _VOCAB_TERMS[k]


def vocab_mix(seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """`mix(seeds[:, None], arange(V)[None, :])`, without rebuilding the vocabulary term."""
    return _finalise_(seeds.reshape(-1, 1) + _vocab_term(vocab_size, seeds.device))


def to_unit(bits: torch.Tensor) -> torch.Tensor:
    """Top 53 bits to a float64 uniform strictly inside (0, 1), safe for log(u) and log(1-u)."""
    return (_shr(bits, 11).to(torch.float64) + 0.5) * _INV_2_53


def uniforms(seeds: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """U(0,1) draws for broadcast (seed, counter) pairs; the shared source of all randomness."""
    return to_unit(mix(seeds, counters))


def vocab_uniforms(seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Uniforms for every token of the vocabulary under each seed: shape (len(seeds), vocab_size).

    On CPU one serial numba loop computes the same bits (`_uniform_kernel`; the torch path makes
    ~15 passes over an int64 (batch, vocab) tensor, most of an EXP / Gumbel decoding step)."""
    kernel = _uniform_kernel() if seeds.device.type == "cpu" else None
    if kernel is not None:
        return torch.from_numpy(kernel(seeds.reshape(-1).detach().to(torch.int64).numpy(), int(vocab_size)))
    return vocab_uniforms_torch(seeds, vocab_size)


def vocab_uniforms_torch(seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The torch path of `vocab_uniforms` (any device; the reference the kernel is tested on)."""
    return to_unit(vocab_mix(seeds, vocab_size))


_UNIFORM: list = []


def _uniform_kernel():
    """`to_unit(mix(seed, j))` for every (seed, token) in one pass, compiled once and cached on
    disk; None without numba. The integer steps are `mix`'s, and the float steps (an exact
    conversion of 53 bits, + 0.5, * 2^-53) are exact in IEEE arithmetic, so the bits are torch's."""
    if not _UNIFORM:
        numba = numba_or_none()
        if numba is None:
            _UNIFORM.append(None)
            return None
        g, m1, m2 = (
            np.uint64(0x9E3779B97F4A7C15),
            np.uint64(0xFF51AFD7ED558CCD),
            np.uint64(0xC4CEB9FE1A85EC53),
        )
        s33, s11, one, inv = np.uint64(33), np.uint64(11), np.uint64(1), np.float64(_INV_2_53)

        @numba.njit(cache=True)
        def uniforms_serial(seeds, vocab_size):  # pragma: no cover - compiled
            out = np.empty((seeds.shape[0], vocab_size), dtype=np.float64)
            for b in range(seeds.shape[0]):
                seed = np.uint64(seeds[b])
                for j in range(vocab_size):
                    z = seed + (np.uint64(j) + one) * g
                    z = (z ^ (z >> s33)) * m1
                    z = (z ^ (z >> s33)) * m2
                    z = z ^ (z >> s33)
                    out[b, j] = (np.float64(z >> s11) + 0.5) * inv
            return out

        _UNIFORM.append(uniforms_serial)
    return _UNIFORM[0]


def unit_threshold(fraction: float) -> int:
    """Integer threshold t on the top 53 bits with P(bits < t) = fraction (to within 2^-53)."""
    return int(round(fraction * (1 << 53)))


def below(seeds: torch.Tensor, counters: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean `uniform(seed, counter) < fraction`, computed exactly in integers."""
    return _top53_below(mix(seeds, counters), fraction)


def vocab_below(seeds: torch.Tensor, vocab_size: int, fraction: float) -> torch.Tensor:
    """`below` for every token of the vocabulary under each seed: shape (len(seeds), vocab_size).

    On CPU one fused numba loop computes the same bits (`_fused_vocab_below`): the torch path
    makes ~15 passes over an int64 (batch, vocab) tensor, which at a 262,144-token vocabulary
    costs more per step than a small model's forward pass."""
    kernel = _fused_kernel() if seeds.device.type == "cpu" else None
    if kernel is not None:
        s = seeds.reshape(-1).detach().to(torch.int64).numpy()
        return torch.from_numpy(kernel(s, int(vocab_size), np.uint64(unit_threshold(fraction))))
    return vocab_below_torch(seeds, vocab_size, fraction)


def vocab_below_torch(seeds: torch.Tensor, vocab_size: int, fraction: float) -> torch.Tensor:
    """The torch path of `vocab_below` (any device; the reference the fused kernel is tested on)."""
    return _top53_below(vocab_mix(seeds, vocab_size), fraction)


_FUSED: list = []


def add_below_(
    scores: torch.Tensor, seeds: torch.Tensor, fraction: float, delta: float, parallel: bool | None = None
) -> bool:
    """`scores[b, j] += delta` where `below(seeds[b], j, fraction)`, in place, in one pass over a
    CPU float32 `scores` (batch, V); the green-list processor's step at large vocabularies. Returns
    False (nothing done) where the fused kernel does not apply (GPU, other dtypes, no numba).
    `parallel`: numba's threads (None: from PARALLEL_MIN_ELEMENTS scores on); the same bits either way."""
    kernels = _fused_kernels() if scores.device.type == "cpu" and scores.dtype == torch.float32 else None
    if kernels is None:
        return False
    s = seeds.reshape(-1).detach().to(torch.int64).numpy()
    if parallel is None:
        parallel = scores.numel() >= PARALLEL_MIN_ELEMENTS
    add = kernels[1] if parallel else kernels[2]
    add(scores.numpy(), s, np.uint64(unit_threshold(fraction)), np.float32(delta))
    return True


# Below this many scores a step adds delta in one thread: numba's thread pool, woken between two
# forward passes, fights torch's own threads for the cores (a batch-1 step at a 49,152-token
# vocabulary paid more for that than for the hashing), and one core hashes 10^6 entries in ~1 ms.
PARALLEL_MIN_ELEMENTS = 1 << 20


def _fused_kernel():
    kernels = _fused_kernels()
    return None if kernels is None else kernels[0]


def _fused_kernels():
    """The numba kernels (vocab_below, add_below_ parallel and serial), compiled once and cached on
    disk; None without numba.
    All decide green with `green`, the same integer steps as `mix` + `_top53_below`."""
    if not _FUSED:
        numba = numba_or_none()
        if numba is None:
            _FUSED.append(None)
            return None
        njit, prange = numba.njit, numba.prange
        g, m1, m2 = (
            np.uint64(0x9E3779B97F4A7C15),
            np.uint64(0xFF51AFD7ED558CCD),
            np.uint64(0xC4CEB9FE1A85EC53),
        )
        s33, s11, one = np.uint64(33), np.uint64(11), np.uint64(1)

        @njit(inline="always")
        def green(seed, j, threshold):  # pragma: no cover - compiled
            z = seed + (np.uint64(j) + one) * g
            z = (z ^ (z >> s33)) * m1
            z = (z ^ (z >> s33)) * m2
            z = z ^ (z >> s33)
            return (z >> s11) < threshold

        @njit(cache=True, parallel=True)
        def fused(seeds, vocab_size, threshold):  # pragma: no cover - compiled
            out = np.empty((seeds.shape[0], vocab_size), dtype=np.bool_)
            for b in range(seeds.shape[0]):
                seed = np.uint64(seeds[b])
                for j in prange(vocab_size):
                    out[b, j] = green(seed, j, threshold)
            return out

        @njit(cache=True, parallel=True)
        def add_fused(scores, seeds, threshold, delta):  # pragma: no cover - compiled
            for b in range(scores.shape[0]):
                seed = np.uint64(seeds[b])
                for j in prange(scores.shape[1]):
                    if green(seed, j, threshold):
                        scores[b, j] += delta

        @njit(cache=True)
        def add_serial(scores, seeds, threshold, delta):  # pragma: no cover - compiled
            for b in range(scores.shape[0]):
                seed = np.uint64(seeds[b])
                for j in range(scores.shape[1]):
                    if green(seed, j, threshold):
                        scores[b, j] += delta

        _FUSED.append((fused, add_fused, add_serial))
    return _FUSED[0]


def _top53_below(bits: torch.Tensor, fraction: float) -> torch.Tensor:
    # top 53 bits < t  <=>  unsigned bits < t << 11; compare in the signed domain by flipping the sign bit
    return (bits ^ _SIGN) < (unit_threshold(fraction) << 11) + _SIGN

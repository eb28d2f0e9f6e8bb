"""MPAC's error-correcting code: a shortened binary BCH code, decoded on its syndrome trellis.

The payload's k bits are followed by the c parity bits of a binary BCH code of designed distance
2t + 1 (generator g = lcm of the minimal polynomials of alpha, alpha^3, ..., alpha^(2t-1) over
GF(2^m), the smallest m with k + m t <= 2^m - 1; systematic encoding is a CRC with polynomial g).
Leading zero bits pad the codeword to whole r-ary symbols, one per message position.

Decoding is exact on the code's trellis (states: the c-bit division remainder, 2^c <= 65,536):
Viterbi finds the codeword maximising the sum of its positions' colour counts (maximum likelihood
for any green probability above 1/r), and the forward-backward pass gives, under that model with
green probability q, the posterior of the decoded payload over ALL 2^k payloads and of each bit.
The guaranteed correction radius in symbols, t_sym = (d_sym - 1) // 2, comes from the exact
minimum symbol weight of the code (a min-plus pass over the same trellis).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

# primitive polynomials of GF(2^m) (bit i = coefficient of x^i)
PRIMITIVE = {3: 0b1011, 4: 0b10011, 5: 0b100101, 6: 0b1000011, 7: 0b10001001, 8: 0b100011101}
MAX_PARITY_BITS = 16  # 2^16 trellis states


def _gf_exp(m: int) -> list[int]:
    """alpha^i in GF(2^m), i = 0..2^m - 2."""
    poly, size, x, out = PRIMITIVE[m], (1 << m) - 1, 1, []
    for _ in range(size):
        out.append(x)
        x <<= 1
        if x >> m:
            x ^= poly
    return out


def _gf_mul(a: int, b: int, m: int, exp: list[int], log: dict[int, int]) -> int:
    if a == 0 or b == 0:
        return 0
    return exp[(log[a] + log[b]) % ((1 << m) - 1)]


def minimal_polynomial(i: int, m: int) -> int:
    """The minimal polynomial over GF(2) of alpha^i: the product of (x - alpha^(i 2^j)) over its
    conjugacy class; its coefficients are 0/1 (returned as a bit mask)."""
    exp = _gf_exp(m)
    log = {v: k for k, v in enumerate(exp)}
    size = (1 << m) - 1
    conj, e = [], i % size
    while e not in conj:
        conj.append(e)
        e = (2 * e) % size
    coeffs = [1]  # GF(2^m) coefficients, lowest first
    for c in conj:
        root = exp[c]
        shifted = [0, *coeffs]  # x * poly
        for k, a in enumerate(coeffs):
            shifted[k] ^= _gf_mul(a, root, m, exp, log)
        coeffs = shifted
    if any(a not in (0, 1) for a in coeffs):
        raise AssertionError("minimal polynomial with coefficients outside GF(2)")
    return sum(a << k for k, a in enumerate(coeffs))


def poly_mul(a: int, b: int) -> int:
    """Product of two GF(2) polynomials (bit masks)."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        a, b = a << 1, b >> 1
    return out


def bch_generator(m: int, t: int) -> int:
    """g(x) = lcm of the minimal polynomials of alpha^1, alpha^3, ..., alpha^(2t - 1)."""
    g, seen = 1, set()
    for i in range(1, 2 * t, 2):
        mp = minimal_polynomial(i, m)
        if mp not in seen:
            seen.add(mp)
            g = poly_mul(g, mp)
    return g


@dataclass(frozen=True)
class Decoding:
    """The decoded payload and what the trellis says about it."""

    payload: int
    symbols: np.ndarray  # the decoded codeword, one symbol per position
    confidence: float  # posterior of this payload among all 2^k
    bit_confidence: np.ndarray  # posterior of each payload bit (MSB first) taking its decoded value
    corrected: int  # positions whose decoded colour has fewer tokens than their top colour


@dataclass(frozen=True)
class PayloadCode:
    """k payload bits, BCH parity for t bit errors, r-ary symbols (r = 2^w)."""

    payload_bits: int
    errors: int
    radix: int

    @functools.cached_property
    def field_degree(self) -> int:
        if self.errors == 0:
            return 0
        for m in sorted(PRIMITIVE):
            if self.payload_bits + m * self.errors <= (1 << m) - 1:
                return m
        raise ConfigError(
            f"no BCH code for {self.payload_bits} payload bits and {self.errors} errors (GF(2^m), m <= 8)"
        )

    @functools.cached_property
    def generator(self) -> int:
        return bch_generator(self.field_degree, self.errors) if self.errors else 1

    @property
    def parity_bits(self) -> int:
        return self.generator.bit_length() - 1

    @property
    def width(self) -> int:
        return self.radix.bit_length() - 1

    @property
    def padding(self) -> int:
        return -(self.payload_bits + self.parity_bits) % self.width

    @property
    def positions(self) -> int:
        return (self.payload_bits + self.parity_bits + self.padding) // self.width

    def check(self) -> None:
        if self.parity_bits > MAX_PARITY_BITS:
            raise ConfigError(
                f"the BCH code for {self.payload_bits} bits and {self.errors} errors needs "
                f"{self.parity_bits} parity bits; at most {MAX_PARITY_BITS} (trellis states 2^c)"
            )

    # ---- encoding --------------------------------------------------------------------------
    def parity(self, payload: int) -> int:
        """payload(x) x^c mod g(x): the CRC of the payload under g."""
        c, g = self.parity_bits, self.generator
        r = payload << c
        for i in range(self.payload_bits + c - 1, c - 1, -1):
            if (r >> i) & 1:
                r ^= g << (i - c)
        return r

    def encode(self, payload: int) -> np.ndarray:
        """The codeword's symbols (padding zeros, payload bits, parity bits; MSB first)."""
        if not 0 <= payload < 1 << self.payload_bits:
            raise ConfigError(f"payload does not fit in {self.payload_bits} bits")
        word = (payload << self.parity_bits) | self.parity(payload)
        w = self.width
        return np.array(
            [(word >> (w * (self.positions - 1 - p))) & (self.radix - 1) for p in range(self.positions)],
            dtype=np.int64,
        )

    # ---- the trellis -----------------------------------------------------------------------
    @functools.cached_property
    def transitions(self) -> np.ndarray:
        """next[state, symbol]: the division register after feeding the symbol's bits."""
        c = self.parity_bits
        states = np.arange(1 << c, dtype=np.int64)
        out = np.empty((1 << c, self.radix), dtype=np.int64)
        low, mask = self.generator & ((1 << c) - 1), (1 << c) - 1
        for sym in range(self.radix):
            s = states.copy()
            for b in range(self.width - 1, -1, -1):
                if c == 0:
                    break
                feedback = ((s >> (c - 1)) & 1) ^ ((sym >> b) & 1)
                s = ((s << 1) & mask) ^ (feedback * low)
            out[:, sym] = s
        return out

    @functools.cached_property
    def previous(self) -> np.ndarray:
        """prev[state, symbol]: the state that `symbol` leads from into `state` (each column of
        `transitions` is a permutation: g(0) = 1)."""
        prev = np.empty_like(self.transitions)
        for sym in range(self.radix):
            prev[self.transitions[:, sym], sym] = np.arange(len(prev))
        return prev

    def allowed(self) -> np.ndarray:
        """(positions, r) mask: the first symbol's padding bits are zero."""
        ok = np.ones((self.positions, self.radix), dtype=bool)
        ok[0, np.arange(self.radix) >= 1 << (self.width - self.padding)] = False
        return ok

    def viterbi(self, scores: np.ndarray) -> np.ndarray:
        """The codeword maximising sum_p scores[p, c_p] (scores: (positions, r))."""
        prev, n_states = self.previous, len(self.previous)
        gain = np.where(self.allowed(), scores, -np.inf)
        value = np.full(n_states, -np.inf)
        value[0] = 0.0
        back = np.zeros((self.positions, n_states), dtype=np.int8)
        for p in range(self.positions):
            cand = value[prev] + gain[p]  # (states, r): arrive in each state by each symbol
            back[p] = cand.argmax(axis=1)
            value = cand[np.arange(n_states), back[p]]
        out, state = np.zeros(self.positions, dtype=np.int64), 0
        for p in range(self.positions - 1, -1, -1):
            out[p] = back[p, state]
            state = prev[state, out[p]]
        return out

    def marginals(self, log_weights: np.ndarray) -> tuple[np.ndarray, float]:
        """Posterior of each symbol at each position over the codewords with probability
        proportional to exp(sum_p log_weights[p, c_p]), and log of the normaliser Z."""
        nxt, prev, n_states = self.transitions, self.previous, len(self.transitions)
        w = np.where(self.allowed(), np.exp(log_weights - log_weights.max(axis=1, keepdims=True)), 0.0)
        log_z = float(log_weights.max(axis=1).sum())
        fwd = np.zeros((self.positions + 1, n_states))
        fwd[0, 0] = 1.0
        for p in range(self.positions):
            fwd[p + 1] = fwd[p][prev] @ w[p]
            total = fwd[p + 1].sum()
            fwd[p + 1] /= total
            log_z += math.log(total)
        log_z += math.log(fwd[-1, 0])
        bwd = np.zeros(n_states)
        bwd[0] = 1.0
        post = np.zeros((self.positions, self.radix))
        for p in range(self.positions - 1, -1, -1):
            ahead = w[p][None, :] * bwd[nxt]  # (states, r)
            post[p] = fwd[p] @ ahead
            post[p] /= post[p].sum()
            bwd = ahead.sum(axis=1)
            bwd /= bwd.max()
        return post, log_z

    def decode(self, counts: np.ndarray, log_rho: float, symbols: np.ndarray | None = None) -> Decoding:
        """Decode (positions, r) colour counts; log_rho = log(q (r - 1) / (1 - q)) >= 0 (the
        likelihood ratio of a token on its position's symbol); `symbols`: the Viterbi codeword
        when the caller has it already."""
        counts = np.asarray(counts, dtype=np.float64)
        symbols = self.viterbi(counts) if symbols is None else symbols
        log_w = log_rho * counts
        post, log_z = self.marginals(log_w)
        log_best = float(log_w[np.arange(self.positions), symbols].sum())
        payload = self.payload_of(symbols)
        bits = self._bit_posteriors(post)  # P(bit = 1), payload bits MSB first
        decoded = np.array([(payload >> (self.payload_bits - 1 - j)) & 1 for j in range(self.payload_bits)])
        corrected = int((counts[np.arange(self.positions), symbols] < counts.max(axis=1)).sum())
        return Decoding(
            payload=payload,
            symbols=symbols,
            confidence=min(1.0, math.exp(log_best - log_z)),
            bit_confidence=np.where(decoded == 1, bits, 1.0 - bits),
            corrected=corrected,
        )

    def payload_of(self, symbols: np.ndarray) -> int:
        word = 0
        for s in symbols:
            word = (word << self.width) | int(s)
        return (word >> self.parity_bits) & ((1 << self.payload_bits) - 1)

    def _bit_posteriors(self, post: np.ndarray) -> np.ndarray:
        out = np.empty(self.payload_bits)
        for j in range(self.payload_bits):
            idx = self.padding + j  # bit index in the padded word, MSB first
            p, b = divmod(idx, self.width)
            set_ = (np.arange(self.radix) >> (self.width - 1 - b)) & 1 == 1
            out[j] = post[p, set_].sum()
        return out

    # ---- distance --------------------------------------------------------------------------
    def min_weight(self, per_symbol: np.ndarray) -> int:
        """The least total cost of a nonzero codeword, cost per_symbol[s] for each symbol s
        (popcount: the bit distance; s != 0: the symbol distance)."""
        nxt, n_states, ok = self.transitions, len(self.transitions), self.allowed()
        big = 1 << 30
        zero = True  # the all-zero prefix sits in state 0 at cost 0
        cost = np.full(n_states, big, dtype=np.int64)  # some nonzero symbol so far
        for p in range(self.positions):
            new = np.full(n_states, big, dtype=np.int64)
            for sym in np.flatnonzero(ok[p]):
                np.minimum.at(new, nxt[:, sym], cost + per_symbol[sym])
                if zero and sym != 0:
                    new[nxt[0, sym]] = min(new[nxt[0, sym]], int(per_symbol[sym]))
            cost = np.minimum(new, big)
        return int(cost[0])

    @functools.cached_property
    def symbol_distance(self) -> int:
        return self.min_weight((np.arange(self.radix) != 0).astype(np.int64))

    @functools.cached_property
    def bit_distance(self) -> int:
        weights = np.array([bin(s).count("1") for s in range(self.radix)], dtype=np.int64)
        return self.min_weight(weights)

    @property
    def correctable(self) -> int:
        """Symbol errors the code always corrects."""
        return (self.symbol_distance - 1) // 2


@functools.lru_cache(maxsize=64)
def payload_code(payload_bits: int, errors: int, radix: int) -> PayloadCode:
    code = PayloadCode(payload_bits, errors, radix)
    code.check()
    return code

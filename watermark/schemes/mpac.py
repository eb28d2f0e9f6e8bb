"""MPAC (Yoo, Ahn, Kwak, NAACL 2024): a multi-bit payload in a KGW-style green list.

The payload (8 to 64 bits) plus the parity of a shortened BCH code (`mpac_code.py`) is cut into L
r-ary symbols, one per message position. At each token the keyed PRF of the previous h ids picks
(a) the position this token carries, uniform on L, and (b) a colouring of the vocabulary into r
equal colours (token v has colour floor(r u(seed, v))); the colour named by that position's symbol
is the green list and gets +delta.

Detection counts the distinct (context, token) pairs of each position by colour. The text is
"watermarked at all" when S = sum over positions of the largest colour count is large: given the
positions (which depend only on the contexts), each pair's colour is uniform on r and independent
under H0, so S is a sum of independent maxima of uniform multinomials, whose law is computed
exactly (`statistics.pvalues.log10_max_count_tail`): the p-value is valid whatever the payload.
The payload is the codeword maximising the sum of its colours' counts (Viterbi on the code's
trellis); its confidence is its posterior among all 2^k payloads under a model in which each
token sits on its position's colour with probability q (estimated from the excess of that sum
over its null mean, so it is 1/r, no information, on unwatermarked text). A payload is reported
only when the text is watermarked at alpha, fewer positions disagree with the codeword than the
code's symbol distance (t_sym = (d_sym - 1) // 2 errors are always corrected; up to d_sym - 1 the
soft counts choose), and the confidence reaches `min_payload_confidence`; otherwise
"inconclusive" and why.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import special
from transformers import LogitsProcessor

from ..config import SchemeConfig, check_range, register_config
from ..errors import ConfigError
from ..keying import prf
from ..statistics.pvalues import log10_max_count_tail, max_count_mean, max_count_pmf
from .base import Detection, TextTooShortError, WatermarkScheme, as_token_array, first_occurrences
from .mpac_code import Decoding, PayloadCode, payload_code
from .registry import register_scheme

RADIXES = (2, 4, 8, 16)
MAX_CONTEXT_WIDTH = 8
MAX_ECC_ERRORS = 4
MAX_DELTA = 1e6
DEFAULT_ALPHA = 1e-3  # the level a payload is read at when detect() is given none (wm detect's default)
_HEX = re.compile(r"(?:0[xX])?([0-9a-fA-F]{1,16})")


def parse_payload(text: str, bits: int) -> int:
    """A hex payload ('0x1234ABCD' or '1234abcd') as an integer that fits in `bits` bits."""
    match = _HEX.fullmatch(text.strip())
    if match is None:
        raise ConfigError("payload must be 1 to 16 hex digits, optionally after 0x (e.g. 0x1234ABCD)")
    value = int(match.group(1), 16)
    if value >> bits:
        raise ConfigError(f"payload {text.strip()} does not fit in payload_bits = {bits}")
    return value


def payload_width(text: str) -> int:
    """The bits a hex payload spells: 4 per digit, leading zeros included (0x00ff: 16 bits)."""
    match = _HEX.fullmatch(text.strip())
    if match is None:
        raise ConfigError("payload must be 1 to 16 hex digits, optionally after 0x (e.g. 0x1234ABCD)")
    return 4 * len(match.group(1))


def format_payload(value: int, bits: int) -> str:
    return f"0x{value:0{-(-bits // 4)}x}"


@register_config("mpac")
@dataclass(frozen=True)
class MpacConfig(SchemeConfig):
    """payload_bits k (8-64); payload: the hex payload generation embeds (detection never reads
    it); radix r colours per position; ecc_errors t: bit errors the BCH code corrects (0: no
    code); delta: green logit bias; context_width h; min_payload_confidence: the posterior a
    payload needs to be reported."""

    detection_only = ("min_payload_confidence",)

    scheme: str = "mpac"
    payload_bits: int = 32
    payload: str | None = None
    radix: int = 4
    ecc_errors: int = 2
    delta: float = 3.0  # the paper's 2.0 recovers 70 % of 32-bit payloads from SmolLM2's 200 tokens
    context_width: int = 1
    min_payload_confidence: float = 0.99

    def validate(self) -> None:
        check_range("payload_bits", self.payload_bits, 8, 64)
        if self.radix not in RADIXES:
            raise ConfigError(f"radix must be one of {', '.join(map(str, RADIXES))}, got {self.radix}")
        check_range("ecc_errors", self.ecc_errors, 0, MAX_ECC_ERRORS)
        check_range("delta", self.delta, 0.0, MAX_DELTA)
        check_range("context width", self.context_width, 1, MAX_CONTEXT_WIDTH)
        check_range("min_payload_confidence", self.min_payload_confidence, 0.5, 1.0)
        if self.vocab_size is not None and self.vocab_size < self.radix:
            raise ConfigError(f"a vocabulary of {self.vocab_size} cannot hold {self.radix} colours")
        payload_code(self.payload_bits, self.ecc_errors, self.radix)  # ConfigError if too large
        if self.payload is not None:
            parse_payload(self.payload, self.payload_bits)


@dataclass(frozen=True)
class MpacDetection(Detection):
    """`statistic` = S, the sum over positions of the largest colour count. payload fields: the
    best codeword (`payload_candidate`), its posterior, each payload bit's posterior (MSB first),
    how many positions the code corrected, how many it always corrects (t_sym) and the most it
    accepts (d_sym - 1: up to there the hard decisions are no other codeword, and the posterior
    decides); `payload` is set (hex) only when `payload_status` is "decoded", else
    `payload_reason` says why not."""

    green_count: int
    z_score: float
    green_fraction: float
    null: str
    payload_bits: int
    payload_candidate: str
    payload_confidence: float
    payload_bit_confidence: tuple[float, ...]
    payload_corrected: int
    payload_correctable: int
    payload_max_corrected: int
    min_payload_confidence: float
    payload: str | None = None
    payload_status: str = "inconclusive"
    payload_reason: str | None = None
    token_mask: tuple[int, ...] = field(default=(), repr=False)

    def payload_report(self, alpha: float) -> tuple[str | None, str, str | None]:
        """(payload or None, "decoded" | "inconclusive", the reason when inconclusive) at alpha."""
        if not self.watermarked(alpha):
            return None, "inconclusive", f"the text is not watermarked at alpha = {alpha:g}: no payload read"
        if self.payload_corrected > self.payload_max_corrected:
            return (
                None,
                "inconclusive",
                (
                    f"{self.payload_corrected} positions disagree with the best codeword, more than the "
                    f"{self.payload_max_corrected} its code's distance allows"
                ),
            )
        if self.payload_confidence < self.min_payload_confidence:
            return (
                None,
                "inconclusive",
                (
                    f"confidence {self.payload_confidence:.3g} is below {self.min_payload_confidence:g} "
                    f"({self.num_tokens_scored} tokens scored): longer text is needed"
                ),
            )
        return self.payload_candidate, "decoded", None

    def at_level(self, alpha: float) -> MpacDetection:
        payload, status, reason = self.payload_report(alpha)
        return replace(self, payload=payload, payload_status=status, payload_reason=reason)

    def to_dict(self, alpha: float | None = None) -> dict[str, Any]:
        return super(MpacDetection, self.at_level(alpha) if alpha is not None else self).to_dict(alpha)


@register_scheme("mpac")
class MpacScheme(WatermarkScheme):
    config_cls: ClassVar[type[SchemeConfig]] = MpacConfig
    config: MpacConfig

    def __init__(self, config: MpacConfig, key):
        super().__init__(config, key)
        h = config.context_width
        self._colour_seeds = prf.SeedCache(key.derive(f"mpac/colour/h={h}"))
        self._position_seeds = prf.SeedCache(key.derive(f"mpac/position/h={h}"))
        self.code: PayloadCode = payload_code(config.payload_bits, config.ecc_errors, config.radix)
        self.message: np.ndarray | None = None
        if config.payload is not None:
            self.message = self.code.encode(parse_payload(config.payload, config.payload_bits))

    # ---- the PRF, shared by both halves --------------------------------------------------------
    def colour_seeds(self, contexts: np.ndarray) -> np.ndarray:
        return self._colour_seeds(contexts)

    def positions_of(self, contexts: np.ndarray) -> np.ndarray:
        """The message position each context's token carries, uniform on L."""
        seeds = torch.from_numpy(self._position_seeds(contexts))
        u = prf.uniforms(seeds, torch.zeros_like(seeds)).numpy()
        return np.minimum((u * self.code.positions).astype(np.int64), self.code.positions - 1)

    def colours_of(self, seeds: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Colour of broadcast (seed, token) pairs: floor(r u), exactly the top log2(r) bits."""
        return (prf.uniforms(seeds, tokens) * self.config.radix).to(torch.int64)

    def vocab_colours(self, seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(len(seeds), vocab_size) colours, one colouring per seed."""
        return (prf.vocab_uniforms(seeds.reshape(-1), vocab_size) * self.config.radix).to(torch.int64)

    # ---- embedding -----------------------------------------------------------------------------
    def processor(self) -> MpacLogitsProcessor:
        if self.message is None:
            raise ConfigError("the mpac scheme embeds a payload: give one (wm generate --payload HEX)")
        return MpacLogitsProcessor(self)

    # ---- detection -----------------------------------------------------------------------------
    def scored(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(colour, position, counted) of each token after the first h; counted: the first
        occurrence of its (context, token) pair (a repeat is the same draw again)."""
        h = self.config.context_width
        if ids.size < h + 1:
            raise TextTooShortError(f"text has {ids.size} tokens; the mpac detector needs at least {h + 1}")
        windows = np.lib.stride_tricks.sliding_window_view(ids, h + 1)
        contexts, tokens = windows[:, :h], windows[:, h].copy()
        seeds = self.colour_seeds(contexts)
        colours = self.colours_of(torch.from_numpy(seeds), torch.from_numpy(tokens)).numpy()
        return colours, self.positions_of(contexts), first_occurrences(seeds, tokens)

    def colour_counts(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """((L, r) counts of the counted pairs, colours, positions)."""
        colours, positions, counted = self.scored(ids)
        counts = np.zeros((self.code.positions, self.config.radix), dtype=np.int64)
        np.add.at(counts, (positions[counted], colours[counted]), 1)
        return counts, colours, positions

    def green_probability(self, counts: np.ndarray) -> float:
        """q, the chance a token sits on its position's colour: the value at which the expected sum
        of the positions' largest counts equals the observed one (the maxima's selection bias
        accounted for exactly, for positions of up to 256 tokens), so 1/r (no information) on text
        that shows no more than chance."""
        r, sizes = self.config.radix, counts.sum(axis=1)
        observed, total = float(counts.max(axis=1).sum()), int(sizes.sum())
        if total == 0:
            return 1.0 / r
        lo, hi = 1.0 / r, 1.0 - 0.5 / total
        if _expected_sum(sizes, lo, r) >= observed:
            return lo
        if _expected_sum(sizes, hi, r) <= observed:
            return hi
        while hi - lo > 1e-3:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _expected_sum(sizes, mid, r) < observed else (lo, mid)
        return lo  # the lower end: never more confident than the data allow

    def decode_payload(self, counts: np.ndarray) -> Decoding:
        r = self.config.radix
        symbols = self.code.viterbi(counts.astype(np.float64))
        q = self.green_probability(counts)
        return self.code.decode(counts, math.log(q * (r - 1) / (1.0 - q)), symbols=symbols)

    def detect(self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None) -> MpacDetection:
        cfg, r = self.config, self.config.radix
        ids = as_token_array(token_ids, cfg.vocab_size)
        counts, colours, positions = self.colour_counts(ids)
        sizes = counts.sum(axis=1)
        total, stat = int(sizes.sum()), int(counts.max(axis=1).sum())
        log10_p = log10_max_count_tail(sizes.tolist(), stat, r)
        log10_floor = -sum(max(int(n) - 1, 0) for n in sizes) * math.log10(r)
        mean = sum(max_count_mean(int(n), r) for n in sizes)
        var = sum(_variance(int(n), r) for n in sizes)
        dec = self.decode_payload(counts)
        mask = np.full(ids.size, -1, dtype=np.int64)
        mask[cfg.context_width :] = (colours == dec.symbols[positions]).astype(np.int64)
        det = MpacDetection(
            scheme=cfg.scheme,
            p_value=10.0**log10_p,
            num_tokens_scored=total,
            statistic=float(stat),
            log10_p_value=log10_p,
            p_value_floor=10.0**log10_floor,
            green_count=stat,
            z_score=(stat - mean) / math.sqrt(var) if var > 0 else 0.0,
            green_fraction=stat / total if total else 0.0,
            null=f"exact: sum over {self.code.positions} positions of the largest of {r} uniform colour counts",
            payload_bits=cfg.payload_bits,
            payload_candidate=format_payload(dec.payload, cfg.payload_bits),
            payload_confidence=dec.confidence,
            payload_bit_confidence=tuple(round(float(c), 6) for c in dec.bit_confidence),
            payload_corrected=dec.corrected,
            payload_correctable=self.code.correctable,
            payload_max_corrected=self.code.symbol_distance - 1,
            min_payload_confidence=cfg.min_payload_confidence,
            token_mask=tuple(mask.tolist()),
        )
        return det.at_level(DEFAULT_ALPHA if alpha is None else alpha)


EXACT_MEAN_MAX = 256  # positions with more tokens use E[max] ~ max(n q, E0[max]) (bias -> 0)


def _expected_sum(sizes: np.ndarray, q: float, r: int) -> float:
    return sum(_expected_max(int(n), round(q, 6), r) for n in sizes if n > 0)


@functools.lru_cache(maxsize=1 << 16)
def _expected_max(n: int, q: float, r: int) -> float:
    """E[max cell] of Multinomial(n; q, then (1 - q) / (r - 1) for each other cell): by
    Poissonisation, P[max <= m] = (Pois(n q) * Pois(n (1 - q) / (r - 1))^(r-1)) truncated at m,
    read at n, over Pois(n)(n)."""
    if q <= 1.0 / r:
        return max_count_mean(n, r)
    if n > EXACT_MEAN_MAX:
        return max(n * q, max_count_mean(n, r))
    lo = -(-n // r)
    j = np.arange(n + 1)
    on, off = _poisson(j, n * q), _poisson(j, n * (1.0 - q) / (r - 1))
    norm, mean = float(_poisson(np.array([n]), float(n))[0]), float(lo)
    for m in range(lo, n):
        both = np.convolve(on[: m + 1], _power(off[: m + 1], r - 1, n))
        below = min(float(both[n]) / norm, 1.0) if both.size > n else 0.0  # P[max <= m]
        mean += 1.0 - below
        if below > 1.0 - 1e-12:
            break
    return mean


def _poisson(j: np.ndarray, lam: float) -> np.ndarray:
    """Poisson(lam) pmf at j (scipy.stats' pmf costs ~0.7 ms a call in argument checks)."""
    return np.exp(j * math.log(lam) - lam - special.gammaln(j + 1.0)) if lam > 0 else (j == 0) * 1.0


def _power(a: np.ndarray, k: int, n: int) -> np.ndarray:
    out = np.ones(1)
    for _ in range(k):
        out = np.convolve(out, a)[: n + 1]
    return out


def _variance(n: int, r: int) -> float:
    if n == 0:
        return 0.0
    pmf = max_count_pmf(n, r)
    m = np.arange(pmf.size)
    return float(pmf @ m**2 - (pmf @ m) ** 2)


class MpacLogitsProcessor(LogitsProcessor):
    """Adds delta to the tokens of the colour that the current position's symbol names; works
    for any batch (each row under its own context), padding and decoding mode."""

    def __init__(self, scheme: MpacScheme):
        if scheme.message is None:
            raise ConfigError("the mpac processor needs a payload")
        self.scheme = scheme
        self.h = scheme.config.context_width
        self.delta = float(scheme.config.delta)
        self.message = torch.from_numpy(scheme.message)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] < self.h:
            raise ConfigError(f"context width {self.h} needs a prompt of at least {self.h} tokens")
        v = self.scheme.vocab_size_for(scores.shape[-1])
        ctx = input_ids[:, -self.h :].detach().to("cpu", torch.int64).numpy()
        seeds = torch.from_numpy(self.scheme.colour_seeds(ctx)).to(scores.device)
        symbols = self.message[torch.from_numpy(self.scheme.positions_of(ctx))].to(scores.device)
        green = self.scheme.vocab_colours(seeds, v) == symbols.reshape(-1, 1)
        out = scores.clone()
        out[:, :v].add_(green.to(scores.dtype), alpha=self.delta)
        return out

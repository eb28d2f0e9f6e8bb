"""SynthID-Text (Dathathri et al., Nature 2024): tournament sampling over keyed g-values.

Each of m layers has a g-function g_l(context, token) in {0, 1}; the context is the previous
ngram_len - 1 token ids. The non-distortionary 2-candidate tournament maps the final next-token
distribution p, layer by layer, to
    p_{l+1}(x) = p_l(x) * (1 + g_l(x) - G_l),   G_l = sum_y p_l(y) g_l(y),
the exact marginal of a knock-out tournament between 2^m i.i.d. draws (papers.md part 2, 1.2).
Over a key, g-values are i.i.d. Bernoulli(1/2), so E[p_{l+1}(x)] = p_l(x): distortion-free in
expectation for every fresh context. A context already seen in this text would reuse its
g-values, so that step samples from p unchanged (the paper's repeated-context masking).

K candidates per match (`num_candidates`, with `distortionary`): each match draws K i.i.d.
candidates from the previous layer's output and the highest g_l wins, ties broken uniformly among
the tied candidates. With G = G_l the winner is a g = 1 token unless all K draws have g = 0, so
    p_{l+1}(x) = p_l(x) * (1 - (1 - G)^K) / G   if g_l(x) = 1,
    p_{l+1}(x) = p_l(x) * (1 - G)^(K - 1)        if g_l(x) = 0,
the exact marginal of a K-ary knock-out over K^m draws; K = 2 gives 1 + g - G again. This is
DeepMind's reference `update_scores_distortionary(scores, g, num_leaves)` (synthid_text's
logits_processing.py, used there whenever num_leaves != 2), i.e. what that code calls
distortionary tournament watermarking, repeated-context masking kept as there. It is not
distortion-free for K > 2, under any law of i.i.d. g-values: on two tokens with p(a) = q the
expected p_{l+1}(a) over keys is q + r (1 - (1 - q)^K + q^K - 2q), r = P(g(a) > g(b)) =
P(g(a) < g(b)), which is q for every q only when K = 2 or r = 0 (fair coins: r = 1/4; K = 3,
q = 0.8: 0.776). So a config with K > 2 must say `distortionary: true` (`--synthid-candidates K
--synthid-distortionary`), and `distortionary` means exactly that: the paper's body was not
available (papers.md part 2, 1.1-1.2), so nothing else (no other g law, no unmasked repeats)
is read into it. Detection does not depend on K: the null law below holds for any text
independent of the key; K > 2 only raises the chance that the winner's g-values are 1.

This module holds the tournament and the g-score statistics shared with hf-synthid, and the
native scheme, whose g-values are m bits of wm's PRF: g_l = bit l of mix(seed(context), token).

Detection keeps each distinct context once (its first occurrence; repeated n-grams go with it),
N positions in all. Under H0 the N * m g-values are i.i.d. Bernoulli(1/2), so
- mean score: sum of g ~ Binomial(N m, 1/2), exact;
- weighted mean: sum_l c_l g_l with the paper's weights linspace(10, 1, m) (as integers
  c_l = 10 (m - 1) - 9 l): an exact integer convolution (`stats.log10_lattice_tail`).
Both are reported; the verdict uses `score` ("weighted" by default: the paper's stronger score).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import SchemeConfig, check_range, register_config
from ..errors import ConfigError
from ..keying import prf
from ..statistics.pvalues import binomial_tail, lattice_tail, log10_binomial_tail, log10_lattice_tail
from ..statistics.spans import CountEvidence
from .base import Detection, TextTooShortError, WatermarkScheme, as_token_array
from .distortion_free import FinalDistributionProcessor
from .registry import register_scheme
from .spans import SpanMixin

SCORES = ("weighted", "mean")
MAX_LAYERS = 64  # one 64-bit PRF output per (context, token) gives every layer's bit
MAX_NGRAM_LEN = 1024  # keeps contexts (and their hashing) bounded
MAX_CANDIDATES = 1024  # K per match: two per-row factors per layer whatever K, bounded all the same


def layer_weights(m: int) -> np.ndarray:
    """The weighted-mean weights linspace(10, 1, m) as the smallest proportional integers."""
    if m == 1:
        return np.ones(1, dtype=np.int64)
    c = 10 * (m - 1) - 9 * np.arange(m, dtype=np.int64)
    return c // math.gcd(*c.tolist())


def layer_patterns(bits: torch.Tensor, layers: int) -> torch.Tensor:
    """The low `layers` bits of 64-bit words, as int32 when they fit (half the memory traffic)."""
    return bits.to(torch.int32) if layers <= 32 else bits


def match_factors(mass: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One K-candidate match's factors (g = 1, g = 0) per row, from the g = 1 mass G (B, 1):
    (1 - (1 - G)^K) / G and (1 - G)^(K - 1), in float64 through log1p / expm1 (the plain form
    loses every digit of 1 - (1 - G)^K for G below float32's epsilon; G = 0 gives the limit K)."""
    g = mass.to(torch.float64).clamp(0.0, 1.0)
    log_miss = torch.log1p(-g)  # log(1 - G), -inf at G = 1: then the factors are 1 and 0
    win = torch.where(g > 0, -torch.expm1(k * log_miss) / g, torch.full_like(g, float(k)))
    return win, torch.exp((k - 1) * log_miss)


def tournament(probs: torch.Tensor, patterns: torch.Tensor, layers: int, candidates: int = 2) -> torch.Tensor:
    """The tournament's output distribution, layers applied in order, each on the previous
    layer's output. probs: (B, V); patterns: (B, V) integers whose bit l is g_l; candidates: K
    per match (K > 2: the distortionary form, see the module docstring).

    Computed in float32 like transformers (relative error ~1e-6; 3-4x faster than float64).
    """
    if candidates != 2:
        return _k_tournament(probs, patterns, layers, candidates)
    p = probs.to(torch.float32, copy=True)
    for layer in range(layers):
        g = ((patterns >> layer) & 1).to(torch.float32)
        mass = torch.linalg.vecdot(g, p).unsqueeze(1)
        p.mul_(g.add_(1.0 - mass))
    return p.clamp_(min=0.0).to(probs.dtype)  # 1 - G can round a hair below 0 when G = 1


def _k_tournament(probs: torch.Tensor, patterns: torch.Tensor, layers: int, k: int) -> torch.Tensor:
    """K candidates per match: p <- p * (lose + g (win - lose)) per layer, factors per row."""
    p = probs.to(torch.float32, copy=True)
    for layer in range(layers):
        g = ((patterns >> layer) & 1).to(torch.float32)
        win, lose = match_factors(torch.linalg.vecdot(g, p).unsqueeze(1), k)
        p.mul_(g.mul_((win - lose).to(torch.float32)).add_(lose.to(torch.float32)))
    return p.to(probs.dtype)


def first_contexts(windows: np.ndarray, context: int) -> np.ndarray:
    """Mask of windows whose context (first `context` ids) appears for the first time."""
    if context == 0:
        out = np.zeros(len(windows), dtype=bool)
        out[:1] = True
        return out
    _, first = np.unique(windows[:, :context], axis=0, return_index=True)
    out = np.zeros(len(windows), dtype=bool)
    out[first] = True
    return out


@dataclass(frozen=True)
class SynthIDDetection(Detection):
    """`statistic`: the chosen score's sum (weighted: sum of c_l g_l; mean: sum of g)."""

    score: str
    mean_score: float
    weighted_mean_score: float
    p_value_mean: float
    p_value_weighted: float
    layers: int
    null: str
    token_mask: tuple[int, ...] = ()  # per input token: 1 scored, 0 repeated context, -1 context prefix


@dataclass(frozen=True)
class GScoreNull:
    """Per-position null pmfs of the g-count (0..m) and of the weighted sum (0..sum c)."""

    count_pmf: np.ndarray
    weighted_pmf: np.ndarray
    description: str


def fair_coin_null(m: int) -> GScoreNull:
    """m i.i.d. Bernoulli(1/2) g-values per position (wm's PRF)."""
    weighted = np.ones(1)
    for c in layer_weights(m):
        nxt = np.zeros(len(weighted) + c)
        nxt[: len(weighted)] += 0.5 * weighted
        nxt[c:] += 0.5 * weighted
        weighted = nxt
    count = np.array([math.comb(m, i) for i in range(m + 1)], dtype=np.float64) / 2.0**m
    return GScoreNull(count, weighted, "binomial(N m, 1/2); weighted: exact convolution")


def g_score_detection(
    scheme: str, g: np.ndarray, null: GScoreNull, score: str, mask: np.ndarray, exact_count: bool
) -> SynthIDDetection:
    """Both scores of the (N, m) g-values of the kept positions, with their exact p-values.

    exact_count: the count is Binomial(N m, 1/2) (fair i.i.d. coins), else the N-fold
    convolution of the per-position count pmf.
    """
    n, m = g.shape
    w = layer_weights(m)
    count = int(g.sum())
    wsum = int((g @ w).sum())
    if exact_count:
        p_mean, lp_mean = binomial_tail(count, n * m, 0.5), log10_binomial_tail(count, n * m, 0.5)
        floor_mean = binomial_tail(n * m, n * m, 0.5)
    else:
        comp = [(null.count_pmf, n)]
        lp_mean = log10_lattice_tail(comp, count)
        p_mean = 10.0**lp_mean
        floor_mean = lattice_tail(comp, n * (len(np.trim_zeros(null.count_pmf, "b")) - 1))
    wcomp = [(null.weighted_pmf, n)]
    lp_w = log10_lattice_tail(wcomp, wsum)
    p_w = 10.0**lp_w
    floor_w = lattice_tail(wcomp, n * (len(np.trim_zeros(null.weighted_pmf, "b")) - 1))
    chosen = (
        (p_w, lp_w, floor_w, float(wsum))
        if score == "weighted"
        else (p_mean, lp_mean, floor_mean, float(count))
    )
    return SynthIDDetection(
        scheme=scheme,
        p_value=chosen[0],
        log10_p_value=chosen[1],
        p_value_floor=chosen[2],
        num_tokens_scored=n,
        statistic=chosen[3],
        score=score,
        mean_score=count / (n * m),
        weighted_mean_score=wsum / (n * int(w.sum())),
        p_value_mean=p_mean,
        p_value_weighted=p_w,
        layers=m,
        null=null.description,
        token_mask=tuple(mask.tolist()),
    )


@register_config("synthid")
@dataclass(frozen=True)
class SynthIDConfig(SchemeConfig):
    """ngram_len: context of ngram_len - 1 previous tokens plus the token; num_layers m (<= 64);
    score: "weighted" or "mean", the score whose p-value decides the verdict; num_candidates K
    per match (2..1024) and distortionary (true exactly when K > 2: see the module docstring).

    K and distortionary are written only when set away from 2 / false, so every config,
    calibration, keyring entry and generation cache of the 2-candidate scheme stays byte for
    byte what it was."""

    detection_only = ("score",)

    scheme: str = "synthid"
    ngram_len: int = 5
    num_layers: int = 30
    score: str = "weighted"
    num_candidates: int = 2
    distortionary: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for name, default in _WRITTEN_WHEN_SET.items():
            if out[name] == default:
                del out[name]
        return out

    def validate(self) -> None:
        if self.ngram_len < 2:
            raise ConfigError(f"ngram_len must be >= 2 (at least one context token), got {self.ngram_len}")
        check_range("ngram_len", self.ngram_len, 2, MAX_NGRAM_LEN)
        if not 1 <= self.num_layers <= MAX_LAYERS:
            raise ConfigError(f"num_layers must be in 1..{MAX_LAYERS}, got {self.num_layers}")
        if self.score not in SCORES:
            raise ConfigError(f"unknown score {self.score!r}; known: {', '.join(SCORES)}")
        check_range("num_candidates", self.num_candidates, 2, MAX_CANDIDATES)
        if self.num_candidates > 2 and not self.distortionary:
            raise ConfigError(
                f"num_candidates {self.num_candidates} > 2 makes the tournament distortionary (the "
                "expected next-token distribution over keys is no longer the model's): ask for it with "
                "distortionary: true (--synthid-distortionary)"
            )
        if self.distortionary and self.num_candidates == 2:
            raise ConfigError(
                "distortionary needs num_candidates > 2 (--synthid-candidates K): "
                "the 2-candidate tournament is the non-distortionary one"
            )


_WRITTEN_WHEN_SET = {"num_candidates": 2, "distortionary": False}


@register_scheme("synthid")
class SynthIDScheme(SpanMixin, WatermarkScheme):
    config_cls = SynthIDConfig
    config: SynthIDConfig
    acts_on_final_distribution = True

    def __init__(self, config: SynthIDConfig, key):
        super().__init__(config, key)
        self._subkey = key.derive(f"synthid/n={config.ngram_len}")
        self._null = fair_coin_null(config.num_layers)

    def seeds_for(self, contexts: np.ndarray) -> np.ndarray:
        return prf.context_seeds(self._subkey, contexts)

    def g_values(self, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """(n, m) g-values of n (context, token) pairs."""
        bits = prf.mix(torch.from_numpy(self.seeds_for(contexts)), torch.from_numpy(tokens)).reshape(-1, 1)
        layers = torch.arange(self.config.num_layers, dtype=torch.int64).reshape(1, -1)
        return ((bits >> layers) & 1).numpy().astype(np.int8)

    def watermarked_probs(self, contexts: np.ndarray, probs: torch.Tensor) -> torch.Tensor:
        """The tournament's distribution for each row's context (B, n - 1) and final probs (B, V)."""
        seeds = torch.from_numpy(self.seeds_for(contexts)).to(probs.device)
        m, k = self.config.num_layers, self.config.num_candidates
        return tournament(probs, layer_patterns(prf.vocab_mix(seeds, probs.shape[-1]), m), m, k)

    def processor(
        self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0
    ) -> SynthIDLogitsProcessor:
        """The tournament sampler; give it the sampling settings unless it runs after
        transformers' warpers (see `FinalDistributionProcessor`)."""
        return SynthIDLogitsProcessor(self, temperature=temperature, top_p=top_p, top_k=top_k)

    def span_evidence(self, ids: np.ndarray) -> CountEvidence:
        """`detect_spans` on the mean score: each token with a context not seen before in the text
        carries m fair coins under H0 (its g-values), so a window's g-count is Binomial(m t, 1/2)."""
        cfg = self.config
        n = cfg.ngram_len
        if ids.size < n:
            raise TextTooShortError(f"text has {ids.size} tokens; the synthid detector needs at least {n}")
        windows = np.lib.stride_tricks.sliding_window_view(ids, n)
        kept = first_contexts(windows, n - 1)
        trials = np.zeros(ids.size, dtype=np.int64)
        hits = np.zeros(ids.size, dtype=np.int64)
        at = np.flatnonzero(kept) + n - 1
        trials[at] = cfg.num_layers
        hits[at] = self.g_values(windows[kept, : n - 1], windows[kept, n - 1].copy()).sum(axis=1)
        return CountEvidence(trials, hits, 0.5, description="binomial per window, mean g-value score")

    def detect(self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None) -> SynthIDDetection:
        cfg = self.config
        n = cfg.ngram_len
        ids = as_token_array(token_ids, cfg.vocab_size)
        if ids.size < n:
            raise TextTooShortError(f"text has {ids.size} tokens; the synthid detector needs at least {n}")
        windows = np.lib.stride_tricks.sliding_window_view(ids, n)
        kept = first_contexts(windows, n - 1)
        g = self.g_values(windows[kept, : n - 1], windows[kept, n - 1].copy())
        mask = np.full(ids.size, -1, dtype=np.int64)
        mask[n - 1 :] = kept.astype(np.int64)
        return g_score_detection(cfg.scheme, g, self._null, cfg.score, mask, exact_count=True)


def sample(probs: torch.Tensor) -> torch.Tensor:
    """One token per row drawn from probs with torch's global RNG (seeded like generate()'s own
    sampling). The tournament samples by construction, so greedy decoding does not apply."""
    return torch.multinomial(probs, 1).squeeze(1)


class SynthIDLogitsProcessor(FinalDistributionProcessor):
    """Tournament sampling from the final distribution (after temperature / top-k / top-p).

    The context is each row's previous ngram_len - 1 ids (prompt included); a context the row
    has already used in this generate() call samples from the unmodified distribution.

    Example:
        >>> scheme = build_scheme({"scheme": "synthid", "vocab_size": len(tok)}, Key.generate())
        >>> gens = watermark.generation.generate(model, tok, ["Tell me a story."], scheme=scheme)
    """

    scheme: SynthIDScheme

    def start(self, batch: int) -> None:
        self.seen: list[set[tuple[int, ...]]] = [set() for _ in range(batch)]

    def pick(self, input_ids: torch.LongTensor, step: int, log_probs: torch.Tensor) -> torch.Tensor:
        return sample(self.distribution(input_ids, log_probs))

    def distribution(self, input_ids: torch.LongTensor, log_probs: torch.Tensor) -> torch.Tensor:
        """The tournament's distribution per row (unmodified where the row's context repeats)."""
        c = self.scheme.config.ngram_len - 1
        if input_ids.shape[1] < c:
            raise ConfigError(f"ngram_len {c + 1} needs a prompt of at least {c} tokens")
        ctx = input_ids[:, -c:].detach().to("cpu", torch.int64).numpy()
        probs = log_probs.exp()
        fresh = []
        for b, row in enumerate(map(tuple, ctx.tolist())):
            if row not in self.seen[b]:
                self.seen[b].add(row)
                fresh.append(b)
        if fresh:
            idx = torch.tensor(fresh, device=probs.device)
            probs[idx] = self.scheme.watermarked_probs(ctx[fresh], probs[idx])
        return probs

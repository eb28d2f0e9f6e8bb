"""DiPmark (Wu et al., ICML 2024) and the gamma-reweight of the Unbiased watermark (Hu et al., ICLR 2024).

Per context c (the previous h token ids) the key gives a permutation pi of the vocabulary: the
tokens sorted by their keyed uniforms `prf.vocab_uniforms(seed(c))`. On the permuted cumulative
distribution A_i = P(pi_1) + ... + P(pi_i) the alpha-reweight
    F(x) = max(x - alpha, 0) + max(x - (1 - alpha), 0)
gives P_W(pi_i) = F(A_i) - F(A_{i-1}): the mass in [0, alpha] is dropped, the mass in
[1 - alpha, 1] doubled. Averaged over uniform permutations E[P_W] = P (distribution-preserving).
alpha = 1/2 is Hu et al.'s gamma-reweight, F(x) = max(2x - 1, 0) (scheme `gamma-reweight`).

The reweight acts on the final distribution (after temperature / top-k / top-p, see
`FinalDistributionProcessor`) and sampling then draws from P_W.

Detection needs no model: green = the last V - floor(gamma V) positions of the permutation (the
second half for gamma = 1/2), which the reweight favours. Under H0 (text independent of the key) a
token's rank in a uniform permutation is uniform, so it is green with probability
q = (V - floor(gamma V)) / V. Two tokens ranked by the same permutation are dependent (ranks are
drawn without replacement), so only the first occurrence of each context is scored; distinct
contexts have independent permutations and the green count is exactly Binomial(T, q).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from transformers import LogitsProcessor

from ..config import SchemeConfig, check_range, register_config
from ..errors import ConfigError
from ..keying import prf
from ..statistics.pvalues import binomial_tail, log10_binomial_tail, z_score
from ..statistics.spans import CountEvidence
from .base import Detection, TextTooShortError, WatermarkScheme, as_token_array, sampling_warpers
from .greenlist import MAX_CONTEXT_WIDTH
from .registry import register_scheme
from .spans import SpanMixin

DEFAULT_ALPHA = {"dipmark": 0.45, "gamma-reweight": 0.5}  # DiPmark's paper / MarkLLM; Hu et al.
RANK_CHUNK = 64  # contexts whose full vocabulary uniforms are held at once during detection


# ---- the keyed permutation, shared with delta-reweight ------------------------------------------
def keyed_permutations(seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(B, V) permutations: row b lists the token ids in increasing order of their keyed uniforms
    (a uniformly random permutation per seed; ties, at 2^-53, broken by token id)."""
    return torch.argsort(prf.vocab_uniforms(seeds.reshape(-1), vocab_size), dim=-1, stable=True)


def token_ranks(seeds: np.ndarray, tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """The 0-based position of each token in its seed's permutation (`keyed_permutations`), without
    sorting: the number of tokens with a smaller uniform (ties broken by id as the sort does)."""
    out = np.empty(len(seeds), dtype=np.int64)
    ids = torch.arange(vocab_size, dtype=torch.int64).reshape(1, -1)
    for s in range(0, len(seeds), RANK_CHUNK):
        u = prf.vocab_uniforms(torch.from_numpy(seeds[s : s + RANK_CHUNK]), vocab_size)
        t = torch.from_numpy(tokens[s : s + RANK_CHUNK]).reshape(-1, 1)
        uy = u.gather(1, t)
        rank = (u < uy).sum(dim=1) + ((u == uy) & (ids < t)).sum(dim=1)
        out[s : s + RANK_CHUNK] = rank.numpy()
    return out


def first_seed_occurrences(seeds: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each context seed: the positions scored by detectors whose
    per-context draws (a permutation, one uniform) tie all tokens of that context together."""
    mask = np.zeros(len(seeds), dtype=bool)
    mask[np.unique(seeds, return_index=True)[1]] = True
    return mask


def permutation_vocab(config: SchemeConfig, scores_width: int) -> int:
    """The vocabulary the permutation runs over: the config's, which detection uses as well."""
    v = config.vocab_size
    if v is None:
        raise ConfigError(
            f"the {config.scheme} scheme permutes the whole vocabulary: its config needs vocab_size "
            "(len(tokenizer); `wm generate` sets it)"
        )
    if v > scores_width:
        raise ConfigError(f"the config's vocab_size {v} exceeds the model's {scores_width} logits")
    return v


# ---- the alpha-reweight -------------------------------------------------------------------------
def alpha_reweight(permuted_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """P_W in permuted order from P in permuted order (rows): F(A_i) - F(A_{i-1}) with
    F(x) = max(x - alpha, 0) + max(x - (1 - alpha), 0) on the cumulative sums A."""
    cdf = permuted_probs.to(torch.float64).cumsum(dim=-1)
    cdf = cdf / cdf[:, -1:]
    f = (cdf - alpha).clamp_(min=0.0) + (cdf - (1.0 - alpha)).clamp_(min=0.0)
    return torch.diff(f, dim=-1, prepend=torch.zeros_like(f[:, :1])).clamp_(min=0.0)


def reweight_log_probs(log_probs: torch.Tensor, perms: torch.Tensor, alpha: float) -> torch.Tensor:
    """log P_W in vocabulary order for log P (B, V) under permutations (B, V)."""
    probs = log_probs.to(torch.float64).exp()
    w = alpha_reweight(probs.gather(1, perms), alpha)
    return torch.empty_like(probs).scatter_(1, perms, w).log()


# ---- config, detection --------------------------------------------------------------------------
@register_config("dipmark", "gamma-reweight")
@dataclass(frozen=True)
class DiPmarkConfig(SchemeConfig):
    """alpha: reweight strength in (0, 1/2] (dipmark 0.45; gamma-reweight is 1/2); gamma: the red
    fraction of the permutation at detection (green = the rest); context_width h >= 1."""

    detection_only = ("gamma",)

    scheme: str = "dipmark"
    alpha: float | None = None  # None: the scheme's default (DEFAULT_ALPHA)
    gamma: float = 0.5
    context_width: int = 4

    def __post_init__(self) -> None:
        if self.alpha is None and self.scheme in DEFAULT_ALPHA:
            object.__setattr__(self, "alpha", DEFAULT_ALPHA[self.scheme])
        super().__post_init__()

    def validate(self) -> None:
        alpha = cast(float, self.alpha)  # set by __post_init__: the scheme names are DEFAULT_ALPHA's
        check_range("alpha", alpha, 0.0, 0.5)
        if self.alpha == 0.0:
            raise ConfigError("alpha 0 leaves the distribution unchanged: no watermark")
        if self.scheme == "gamma-reweight" and self.alpha != 0.5:
            raise ConfigError("gamma-reweight is the alpha = 1/2 reweight; use dipmark for other alphas")
        if not 0.0 < self.gamma < 1.0:
            raise ConfigError(f"gamma must be in (0, 1), got {self.gamma}")
        if (
            self.vocab_size is not None
            and not 1 <= math.floor(self.gamma * self.vocab_size) < self.vocab_size
        ):
            raise ConfigError(
                f"gamma {self.gamma:g} leaves no red or no green rank in {self.vocab_size} tokens"
            )
        check_range("context width", self.context_width, 1, MAX_CONTEXT_WIDTH)


@dataclass(frozen=True)
class DiPmarkDetection(Detection):
    """`statistic`: green count among the first occurrences of each context."""

    green_count: int
    green_probability: float
    z_score: float
    token_mask: tuple[int, ...] = ()  # per input token: 1 green, 0 red, -1 not scored


@register_scheme("dipmark", "gamma-reweight")
class DiPmarkScheme(SpanMixin, WatermarkScheme):
    config_cls = DiPmarkConfig
    config: DiPmarkConfig
    acts_on_final_distribution = True

    def __init__(self, config: DiPmarkConfig, key):
        super().__init__(config, key)
        self._seeds = prf.SeedCache(key.derive(f"{config.scheme}/h={config.context_width}"))

    def seeds_for(self, contexts: np.ndarray) -> np.ndarray:
        return self._seeds(contexts)

    def vocab_size_for(self, scores_width: int) -> int:
        return permutation_vocab(self.config, scores_width)

    def reweighted(self, contexts: np.ndarray, log_probs: torch.Tensor) -> torch.Tensor:
        """log P_W (B, V) for contexts (B, h) and final log-probabilities (B, V)."""
        seeds = torch.from_numpy(self.seeds_for(contexts)).to(log_probs.device)
        perms = keyed_permutations(seeds, log_probs.shape[-1])
        alpha = cast(float, self.config.alpha)  # never None once built (__post_init__)
        return reweight_log_probs(log_probs, perms, alpha)

    def processor(
        self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0
    ) -> ReweightLogitsProcessor:
        """The reweight; give it the sampling settings unless it runs after transformers' warpers."""
        return ReweightLogitsProcessor(self, temperature=temperature, top_p=top_p, top_k=top_k)

    @property
    def green_probability(self) -> float:
        v = self.config.vocab_size
        if v is None:
            raise ConfigError(f"the {self.config.scheme} detector needs the config's vocab_size")
        return (v - math.floor(self.config.gamma * v)) / v

    def scored_positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(green, counted) for the tokens after the first h; counted = first occurrence of the context."""
        cfg = self.config
        h = cfg.context_width
        if cfg.vocab_size is None:
            raise ConfigError(f"the {cfg.scheme} detector needs the config's vocab_size")
        if ids.size < h + 1:
            raise TextTooShortError(
                f"text has {ids.size} tokens; the {cfg.scheme} detector needs at least {h + 1}"
            )
        windows = np.lib.stride_tricks.sliding_window_view(ids, h + 1)
        seeds, tokens = self.seeds_for(windows[:, :h]), windows[:, h].copy()
        counted = first_seed_occurrences(seeds)
        green = np.zeros(len(seeds), dtype=bool)
        red = math.floor(cfg.gamma * cfg.vocab_size)
        green[counted] = token_ranks(seeds[counted], tokens[counted], cfg.vocab_size) >= red
        return green, counted

    def span_evidence(self, ids: np.ndarray) -> CountEvidence:
        """Per-token green indicators for `detect_spans`, scored exactly as `detect` scores them."""
        h = self.config.context_width
        green, counted = self.scored_positions(ids)
        scored, hit = np.zeros(ids.size, dtype=bool), np.zeros(ids.size, dtype=bool)
        scored[h:], hit[h:] = counted, green
        return CountEvidence(scored, hit, self.green_probability, description="binomial per window")

    def detect(self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None) -> DiPmarkDetection:
        cfg = self.config
        h = cfg.context_width
        ids = as_token_array(token_ids, cfg.vocab_size)
        green, counted = self.scored_positions(ids)
        t, g, q = int(counted.sum()), int(green.sum()), self.green_probability
        mask = np.full(ids.size, -1, dtype=np.int64)
        mask[h:] = np.where(counted, green.astype(np.int64), -1)
        return DiPmarkDetection(
            scheme=cfg.scheme,
            p_value=binomial_tail(g, t, q),
            log10_p_value=log10_binomial_tail(g, t, q),
            num_tokens_scored=t,
            statistic=float(g),
            p_value_floor=binomial_tail(t, t, q),
            green_count=g,
            green_probability=q,
            z_score=z_score(g, t, q),
            token_mask=tuple(mask.tolist()),
        )


class ReweightLogitsProcessor(LogitsProcessor):
    """Replaces the logits by log P_W of the final distribution; sampling (or greedy search) then
    draws from P_W. Tokens past the config's vocabulary get -inf.

    Example:
        >>> scheme = build_scheme({"scheme": "dipmark", "vocab_size": len(tok)}, Key.generate())
        >>> gens = watermark.modeling.generation.generate(model, tok, ["Tell me a story."], scheme=scheme)
    """

    def __init__(self, scheme: DiPmarkScheme, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0):
        self.scheme = scheme
        self.warpers = sampling_warpers(temperature, top_p, top_k)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        h = self.scheme.config.context_width
        if input_ids.shape[1] < h:
            raise ConfigError(f"context width {h} needs a prompt of at least {h} tokens")
        final = scores
        for warper in self.warpers:
            final = warper(input_ids, final)
        v = self.scheme.vocab_size_for(scores.shape[-1])
        log_probs = torch.log_softmax(final[:, :v].to(torch.float64), dim=-1)
        ctx = input_ids[:, -h:].detach().to("cpu", torch.int64).numpy()
        out = torch.full_like(scores, -math.inf)
        out[:, :v] = self.scheme.reweighted(ctx, log_probs).to(out.dtype)
        return out

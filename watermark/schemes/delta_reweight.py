"""delta-reweight, the Unbiased watermark's decoder (Hu et al., ICLR 2024).

Per context c (the previous h token ids) the key gives a uniform u(c) and a permutation pi(c) of
the vocabulary (`dipmark.keyed_permutations`, from an independent sub-key). The watermarked
distribution is the delta on the token whose interval of the permuted cumulative distribution
holds u: y = pi_i with A_{i-1} <= u < A_i (inverse-transform sampling). Over the key u is uniform,
so P(y = v) = P(v) exactly: distortion-free for every fresh context. Hu et al. order the tokens
arbitrarily; the keyed order is what lets detection work without the model.

Model-free detection: with rho = (rank of y in pi + 1/2) / V, the circular distance
d = (u - rho) mod 1 is exactly U(0, 1) under H0 (u is uniform and independent of the permutation
and of a text independent of the key), so e = 2 min(d, 1 - d) is U(0, 1) and -log(e) is Exp(1).
A watermarked token sits where u falls, near rho when the distribution spreads its mass (A_{i-1}
is about rho for a high-entropy step), so e is small. One (u, pi) per context ties all its tokens
together: only the first occurrence of each context is scored, and the T scores sum to
exactly Gamma(T, 1) under H0 (`gamma_tail`). The paper's log-likelihood-ratio score, which needs the
model, is `reweight_llr.py` (`wm detect --llr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..config import SchemeConfig, check_range, register_config
from ..errors import ConfigError
from ..keying import prf
from ..statistics.pvalues import gamma_tail, log10_gamma_tail
from ..statistics.spans import GammaEvidence
from .base import Detection, TextTooShortError, WatermarkScheme, as_token_array
from .dipmark import first_seed_occurrences, keyed_permutations, permutation_vocab, token_ranks
from .distortion_free import FinalDistributionProcessor
from .greenlist import MAX_CONTEXT_WIDTH
from .registry import register_scheme
from .spans import SpanMixin

MIN_DISTANCE = 2.0**-60  # e is clipped below (never reached by 53-bit uniforms): a smaller score, still valid


def inverse_sample(log_probs: torch.Tensor, perms: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The token pi_i with A_{i-1} <= u < A_i on each row's permuted cumulative distribution."""
    probs = log_probs.to(torch.float64).exp().gather(1, perms)
    cdf = probs.cumsum(dim=-1)
    cdf = cdf / cdf[:, -1:]  # the last entry is exactly 1, and u < 1
    index = torch.searchsorted(cdf, u.reshape(-1, 1).to(cdf), right=True).clamp_(max=perms.shape[1] - 1)
    return perms.gather(1, index).reshape(-1)


def circular_scores(u: np.ndarray, ranks: np.ndarray, vocab_size: int) -> np.ndarray:
    """-log(2 min(d, 1 - d)) with d = (u - (rank + 1/2) / V) mod 1: Exp(1) under H0."""
    d = np.mod(u - (ranks + 0.5) / vocab_size, 1.0)
    e = np.maximum(2.0 * np.minimum(d, 1.0 - d), MIN_DISTANCE)
    return -np.log(e)


@register_config("delta-reweight")
@dataclass(frozen=True)
class DeltaReweightConfig(SchemeConfig):
    """context_width h: how many previous tokens seed the permutation and the uniform (>= 1)."""

    scheme: str = "delta-reweight"
    context_width: int = 4

    def validate(self) -> None:
        check_range("context width", self.context_width, 1, MAX_CONTEXT_WIDTH)


@dataclass(frozen=True)
class DeltaReweightDetection(Detection):
    """`statistic`: the sum of -log(2 min(d, 1 - d)) over the first occurrence of each context."""

    mean_score: float
    token_mask: tuple[int, ...] = ()  # per input token: 1 scored, 0 repeated context, -1 context prefix


@register_scheme("delta-reweight")
class DeltaReweightScheme(SpanMixin, WatermarkScheme):
    config_cls = DeltaReweightConfig
    config: DeltaReweightConfig
    acts_on_final_distribution = True

    def __init__(self, config: DeltaReweightConfig, key):
        super().__init__(config, key)
        h = config.context_width
        self._perm_seeds = prf.SeedCache(key.derive(f"delta-reweight/permutation/h={h}"))
        self._u_seeds = prf.SeedCache(key.derive(f"delta-reweight/uniform/h={h}"))

    def vocab_size_for(self, scores_width: int) -> int:
        return permutation_vocab(self.config, scores_width)

    def codes(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(permutation seeds, u) of contexts (n, h)."""
        u_seeds = torch.from_numpy(self._u_seeds(contexts))
        u = prf.uniforms(u_seeds, torch.zeros_like(u_seeds)).numpy()
        return self._perm_seeds(contexts), u

    def choose(self, contexts: np.ndarray, log_probs: torch.Tensor) -> torch.Tensor:
        """Decode one token per row of `contexts` (B, h) from final log-probabilities (B, V)."""
        seeds, u = self.codes(contexts)
        perms = keyed_permutations(torch.from_numpy(seeds).to(log_probs.device), log_probs.shape[-1])
        return inverse_sample(log_probs, perms, torch.from_numpy(u).to(log_probs.device))

    def processor(
        self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0
    ) -> DeltaReweightLogitsProcessor:
        """The decoder; give it the sampling settings unless it runs after transformers' warpers."""
        return DeltaReweightLogitsProcessor(self, temperature=temperature, top_p=top_p, top_k=top_k)

    def token_scores(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, counted) for the tokens after the first h; counted = first occurrence of the context."""
        cfg = self.config
        h = cfg.context_width
        if cfg.vocab_size is None:
            raise ConfigError("the delta-reweight detector needs the config's vocab_size")
        if ids.size < h + 1:
            raise TextTooShortError(
                f"text has {ids.size} tokens; the delta-reweight detector needs at least {h + 1}"
            )
        windows = np.lib.stride_tricks.sliding_window_view(ids, h + 1)
        seeds, u = self.codes(windows[:, :h])
        tokens = windows[:, h].copy()
        counted = first_seed_occurrences(seeds)
        scores = np.zeros(len(seeds))
        ranks = token_ranks(seeds[counted], tokens[counted], cfg.vocab_size)
        scores[counted] = circular_scores(u[counted], ranks, cfg.vocab_size)
        return scores, counted

    def span_evidence(self, ids: np.ndarray) -> GammaEvidence:
        """Per-token scores for `detect_spans`, scored exactly as `detect` scores them."""
        h = self.config.context_width
        scores, counted = self.token_scores(ids)
        scored, per_token = np.zeros(ids.size, dtype=bool), np.zeros(ids.size)
        scored[h:], per_token[h:] = counted, scores
        return GammaEvidence(scored, per_token, description="Gamma tail per window")

    def detect(
        self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None
    ) -> DeltaReweightDetection:
        cfg = self.config
        h = cfg.context_width
        ids = as_token_array(token_ids, cfg.vocab_size)
        scores, counted = self.token_scores(ids)
        t, s = int(counted.sum()), float(scores[counted].sum())
        mask = np.full(ids.size, -1, dtype=np.int64)
        mask[h:] = counted.astype(np.int64)
        return DeltaReweightDetection(
            scheme=cfg.scheme,
            p_value=gamma_tail(s, t),
            log10_p_value=log10_gamma_tail(s, t),
            num_tokens_scored=t,
            statistic=s,
            mean_score=s / t,
            token_mask=tuple(mask.tolist()),
        )


class DeltaReweightLogitsProcessor(FinalDistributionProcessor):
    """delta-reweight embedding: (u, pi) seeded by each row's previous h tokens (prompt included).

    Example:
        >>> scheme = build_scheme({"scheme": "delta-reweight", "vocab_size": len(tok)}, Key.generate())
        >>> gens = watermark.modeling.generation.generate(model, tok, ["Tell me a story."], scheme=scheme)
    """

    scheme: DeltaReweightScheme

    def pick(self, input_ids: torch.LongTensor, step: int, log_probs: torch.Tensor) -> torch.Tensor:
        h = self.scheme.config.context_width
        if input_ids.shape[1] < h:
            raise ConfigError(f"context width {h} needs a prompt of at least {h} tokens")
        ctx = input_ids[:, -h:].detach().to("cpu", torch.int64).numpy()
        return self.scheme.choose(ctx, log_probs)

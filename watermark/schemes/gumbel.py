"""Aaronson's Gumbel / exponential watermark: the EXP decoder keyed by the previous h tokens.

r_v = PRF(context of the previous h token ids, v); the decoder picks argmax_v r_v ** (1 / p_v),
which is distortion-free for one draw and deterministic given the context. Detection scores each
distinct (context, token) pair once with -log(1 - r_token): under H0 these are i.i.d. Exp(1), so
their sum over T pairs is exactly Gamma(T, 1) (`stats.gamma_tail`). Repeated pairs would repeat
the same r and break that null, which is why they are scored once.
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
from .base import Detection, TextTooShortError, WatermarkScheme, as_token_array, first_occurrences
from .distortion_free import FinalDistributionProcessor, exponential_argmin
from .greenlist import MAX_CONTEXT_WIDTH
from .registry import register_scheme
from .spans import SpanMixin


@register_config("gumbel")
@dataclass(frozen=True)
class GumbelConfig(SchemeConfig):
    """context_width h: how many previous tokens seed the uniforms (>= 1)."""

    scheme: str = "gumbel"
    context_width: int = 4

    def validate(self) -> None:
        if self.context_width < 1:
            raise ConfigError(f"the gumbel scheme needs context width >= 1, got {self.context_width}")
        check_range("context width", self.context_width, 1, MAX_CONTEXT_WIDTH)


@dataclass(frozen=True)
class GumbelDetection(Detection):
    """`statistic`: sum of -log(1 - r) over the scored distinct (context, token) pairs."""

    mean_score: float
    token_mask: tuple[int, ...] = ()  # per input token: 1 scored, 0 repeated pair, -1 context prefix


@register_scheme("gumbel")
class GumbelScheme(SpanMixin, WatermarkScheme):
    config_cls = GumbelConfig
    config: GumbelConfig
    acts_on_final_distribution = True

    def __init__(self, config: GumbelConfig, key):
        super().__init__(config, key)
        self._subkey = key.derive(f"gumbel/h={config.context_width}")

    def seeds_for(self, contexts: np.ndarray) -> np.ndarray:
        return prf.context_seeds(self._subkey, contexts)

    def choose(self, contexts: np.ndarray, log_probs: torch.Tensor) -> torch.Tensor:
        """Decode one token per row of `contexts` (shape (B, h)) from log-probabilities (B, V)."""
        seeds = torch.from_numpy(self.seeds_for(contexts)).to(log_probs.device)
        return exponential_argmin(prf.vocab_uniforms(seeds, log_probs.shape[-1]), log_probs)

    def processor(
        self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0
    ) -> GumbelLogitsProcessor:
        """The decoder; give it the sampling settings unless it runs after transformers' warpers
        (see `FinalDistributionProcessor`)."""
        return GumbelLogitsProcessor(self, temperature=temperature, top_p=top_p, top_k=top_k)

    def token_scores(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(-log(1 - r), counted) for the tokens after the first h; counted = the first occurrence
        of the (context, token) pair (a repeat repeats the same r)."""
        h = self.config.context_width
        if ids.size < h + 1:
            raise TextTooShortError(f"text has {ids.size} tokens; the gumbel detector needs at least {h + 1}")
        windows = np.lib.stride_tricks.sliding_window_view(ids, h + 1)
        seeds_np, tokens = self.seeds_for(windows[:, :h]), windows[:, h].copy()
        counted = first_occurrences(seeds_np, tokens)
        r = prf.uniforms(torch.from_numpy(seeds_np), torch.from_numpy(tokens))
        return (-torch.log1p(-r)).numpy(), counted

    def span_evidence(self, ids: np.ndarray) -> GammaEvidence:
        """Per-token scores for `detect_spans`, scored exactly as `detect` scores them."""
        h = self.config.context_width
        scores, counted = self.token_scores(ids)
        scored = np.zeros(ids.size, dtype=bool)
        per_token = np.zeros(ids.size)
        scored[h:], per_token[h:] = counted, scores
        return GammaEvidence(scored, per_token, description="Gamma tail per window")

    def detect(self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None) -> GumbelDetection:
        cfg = self.config
        h = cfg.context_width
        ids = as_token_array(token_ids, cfg.vocab_size)
        n = ids.size
        scores, counted = self.token_scores(ids)
        t = int(counted.sum())
        s = float(scores[counted].sum())
        mask = np.full(n, -1, dtype=np.int64)
        mask[h:] = counted.astype(np.int64)
        return GumbelDetection(
            scheme=cfg.scheme,
            p_value=gamma_tail(s, t),
            log10_p_value=log10_gamma_tail(s, t),
            num_tokens_scored=t,
            statistic=s,
            mean_score=s / t,
            token_mask=tuple(mask.tolist()),
        )


class GumbelLogitsProcessor(FinalDistributionProcessor):
    """Gumbel embedding: uniforms seeded by each row's previous h tokens (prompt included).

    Example:
        >>> scheme = build_scheme({"scheme": "gumbel", "vocab_size": len(tok)}, Key.generate())
        >>> gens = watermark.generation.generate(model, tok, ["Tell me a story."], scheme=scheme)
    """

    scheme: GumbelScheme

    def pick(self, input_ids: torch.LongTensor, step: int, log_probs: torch.Tensor) -> torch.Tensor:
        h = self.scheme.config.context_width
        if input_ids.shape[1] < h:
            raise ConfigError(f"context width {h} needs a prompt of at least {h} tokens")
        ctx = input_ids[:, -h:].detach().to("cpu", torch.int64).numpy()
        return self.scheme.choose(ctx, log_probs)

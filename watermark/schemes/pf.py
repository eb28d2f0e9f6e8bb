"""The Permute-and-Flip (PF) decoder and its watermark (Zhao, Li, Wang, ICLR 2025).

The PF decoder (McKenna and Sheldon's permute-and-flip mechanism applied to next-token logits l
at temperature T) has the same law as report-noisy-max with exponential noise:
    y = argmax_v  l_v / T + E_v,   E_v ~ Exp(1) i.i.d.
(softmax sampling is the same argmax with Gumbel noise). The watermark draws the noise from the
key: E_v = -log r_v, r_v = PRF(context of the previous h ids, v), so the text is a deterministic
function of the context and, over the key, each step follows the PF decoder's distribution exactly.
It acts on the final distribution: log p_v = log_softmax(l / T) after top-k / top-p differs from
l_v / T by a per-row constant, so y = argmax_v log p_v - log r_v.

Detection scores each distinct (context, token) pair once with -log r_y: under H0 these are
i.i.d. Exp(1), so their sum over T pairs is exactly Gamma(T, 1) (`gamma_tail`), the paper's test.
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
from .distortion_free import FinalDistributionProcessor
from .greenlist import MAX_CONTEXT_WIDTH
from .registry import register_scheme
from .spans import SpanMixin


def pf_argmax(uniforms: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """The PF decoder with noise -log r: argmax_v log p_v - log r_v, per row."""
    if uniforms.device.type == "cpu":
        score = log_probs.numpy() - np.log(uniforms.numpy())
        return torch.from_numpy(score.argmax(axis=-1))
    return (log_probs - torch.log(uniforms)).argmax(dim=-1)


@register_config("pf")
@dataclass(frozen=True)
class PFConfig(SchemeConfig):
    """context_width h: how many previous tokens seed the noise (>= 1)."""

    scheme: str = "pf"
    context_width: int = 4

    def validate(self) -> None:
        check_range("context width", self.context_width, 1, MAX_CONTEXT_WIDTH)


@dataclass(frozen=True)
class PFDetection(Detection):
    """`statistic`: sum of -log r over the scored distinct (context, token) pairs."""

    mean_score: float
    token_mask: tuple[int, ...] = ()  # per input token: 1 scored, 0 repeated pair, -1 context prefix


@register_scheme("pf")
class PFScheme(SpanMixin, WatermarkScheme):
    config_cls = PFConfig
    config: PFConfig
    acts_on_final_distribution = True

    def __init__(self, config: PFConfig, key):
        super().__init__(config, key)
        self._seeds = prf.SeedCache(key.derive(f"pf/h={config.context_width}"))

    def seeds_for(self, contexts: np.ndarray) -> np.ndarray:
        return self._seeds(contexts)

    def choose(self, contexts: np.ndarray, log_probs: torch.Tensor) -> torch.Tensor:
        """Decode one token per row of `contexts` (B, h) from final log-probabilities (B, V)."""
        seeds = torch.from_numpy(self.seeds_for(contexts)).to(log_probs.device)
        return pf_argmax(prf.vocab_uniforms(seeds, log_probs.shape[-1]), log_probs)

    def processor(self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0) -> PFLogitsProcessor:
        """The decoder; give it the sampling settings unless it runs after transformers' warpers."""
        return PFLogitsProcessor(self, temperature=temperature, top_p=top_p, top_k=top_k)

    def token_scores(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(-log r, counted) for the tokens after the first h; counted = first occurrence of the pair."""
        h = self.config.context_width
        if ids.size < h + 1:
            raise TextTooShortError(f"text has {ids.size} tokens; the pf detector needs at least {h + 1}")
        windows = np.lib.stride_tricks.sliding_window_view(ids, h + 1)
        seeds, tokens = self.seeds_for(windows[:, :h]), windows[:, h].copy()
        r = prf.uniforms(torch.from_numpy(seeds), torch.from_numpy(tokens))
        return (-torch.log(r)).numpy(), first_occurrences(seeds, tokens)

    def span_evidence(self, ids: np.ndarray) -> GammaEvidence:
        """Per-token scores for `detect_spans`, scored exactly as `detect` scores them."""
        h = self.config.context_width
        scores, counted = self.token_scores(ids)
        scored, per_token = np.zeros(ids.size, dtype=bool), np.zeros(ids.size)
        scored[h:], per_token[h:] = counted, scores
        return GammaEvidence(scored, per_token, description="Gamma tail per window")

    def detect(self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None) -> PFDetection:
        cfg = self.config
        h = cfg.context_width
        ids = as_token_array(token_ids, cfg.vocab_size)
        scores, counted = self.token_scores(ids)
        t, s = int(counted.sum()), float(scores[counted].sum())
        mask = np.full(ids.size, -1, dtype=np.int64)
        mask[h:] = counted.astype(np.int64)
        return PFDetection(
            scheme=cfg.scheme,
            p_value=gamma_tail(s, t),
            log10_p_value=log10_gamma_tail(s, t),
            num_tokens_scored=t,
            statistic=s,
            mean_score=s / t,
            token_mask=tuple(mask.tolist()),
        )


class PFLogitsProcessor(FinalDistributionProcessor):
    """PF embedding: noise seeded by each row's previous h tokens (prompt included).

    Example:
        >>> scheme = build_scheme({"scheme": "pf", "vocab_size": len(tok)}, Key.generate())
        >>> gens = watermark.modeling.generation.generate(model, tok, ["Tell me a story."], scheme=scheme)
    """

    scheme: PFScheme

    def pick(self, input_ids: torch.LongTensor, step: int, log_probs: torch.Tensor) -> torch.Tensor:
        h = self.scheme.config.context_width
        if input_ids.shape[1] < h:
            raise ConfigError(f"context width {h} needs a prompt of at least {h} tokens")
        ctx = input_ids[:, -h:].detach().to("cpu", torch.int64).numpy()
        return self.scheme.choose(ctx, log_probs)

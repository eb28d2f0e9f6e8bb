"""The log-likelihood-ratio (LLR) score of the reweight schemes (Hu et al., ICLR 2024, section 5;
DiPmark's model-aware score): dipmark, gamma-reweight and delta-reweight, detected with a model.

At each scored position t (the first occurrence of each context, exactly the positions the
model-free detectors score) Q is the model's next-token distribution given the text before t
(after a prefix: the formatted prompt where it is known, else the start token), after the sampling settings
(`final_log_probs`, the rule of `FinalDistributionProcessor`), and Q_W its reweight under the key:
the scheme's own `reweighted` (dipmark's alpha-reweight of the keyed permutation) or, for
delta-reweight, the point mass on the token its `choose` decodes (inverse sampling). With a mixing
weight eps in [0, 1),
    Q'_W = (1 - eps) Q_W + eps Q,      s_t = log Q'_W(x_t) - log Q(x_t),      S = sum_t s_t
(eps = 0: the paper's plain LLR; a token Q gives no mass scores s_t = 0, as Q'_W gives it none).

Validity, whatever model and settings are used: for a key-independent Q every reweight preserves
the distribution on average over the key, E_key[Q_W(x)] = Q(x) for every x, hence
E_key[exp(s_t)] = 1; distinct contexts get independent permutations and uniforms, so under H0 (the
text independent of the key, so the Q_t are too) exp(S) is a product of independent mean-1
nonnegative factors: a test martingale. By Markov's (Ville's, for any stopping point) inequality
P[exp(S) >= 1 / p] <= p, so p = min(1, exp(-S)) is a valid, anytime-valid p-value; it is computed
as log10 p = min(0, -S / ln 10). A model other than the generating one, other sampling settings or
a missing prompt make Q differ from the distribution the text was sampled from: that costs power,
never validity.

Why eps: Q_W gives no mass to some tokens (dipmark drops the permuted mass below alpha;
delta-reweight's Q_W is a point mass), so with eps = 0 one position where the detecting model's
decoded token differs from the text's gives s_t = -inf and S = -inf (p = 1). Hu et al. answer this
with a maximin LLR; the mixture keeps the same validity argument (E_key[Q'_W(x)] = Q(x)), bounds
each position's loss by log(eps), and costs at most log(1 / (1 - eps)) per agreeing position.
Default: `DEFAULT_EPSILON` (delta-reweight needs eps > 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .base import Detection, TextTooShortError, WatermarkScheme, as_token_array, sampling_warpers
from .delta_reweight import DeltaReweightScheme
from .dipmark import DiPmarkScheme, first_seed_occurrences

DEFAULT_EPSILON = 0.1
ROW_CHUNK = 64  # scored positions whose full float64 distributions are reweighted at once
LN10 = math.log(10.0)


@dataclass(frozen=True)
class LLRSettings:
    """How Q is built from the model's logits and mixed: the sampling settings the text was
    generated with (temperature / top-p / top-k, as `generate` takes them) and eps."""

    epsilon: float = DEFAULT_EPSILON
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon < 1.0:
            raise ConfigError(f"the LLR mixing weight eps must be in [0, 1), got {self.epsilon:g}")
        if not self.temperature > 0.0 or not 0.0 < self.top_p <= 1.0 or self.top_k < 0:
            raise ConfigError("the LLR's sampling settings need temperature > 0, top_p in (0, 1], top_k >= 0")


@dataclass(frozen=True)
class LLRDetection(Detection):
    """`statistic` = `llr_score` = S (nats); `p_value` = min(1, exp(-S)). Where S = -inf (eps = 0)
    `llr_score` is None, p = 1 and `statistic` sums the finite s_t only (JSON has no -inf).
    `model_free_*`: the scheme's model-free test of the same text; `llr`: the model and settings."""

    llr_score: float | None  # None where S = -inf (eps = 0 and a token Q_W rules out)
    llr_log10_p_value: float
    llr_impossible_tokens: int  # scored tokens with Q'_W(x) = 0 (only with eps = 0)
    model_free_p_value: float
    model_free_log10_p_value: float
    llr: dict[str, Any] = field(default_factory=dict)
    token_mask: tuple[int, ...] = ()  # the model-free detection's


def _reweight(scheme: WatermarkScheme) -> DiPmarkScheme | DeltaReweightScheme:
    """The scheme, if it is one the LLR score is defined for."""
    if not isinstance(scheme, DiPmarkScheme | DeltaReweightScheme):
        raise ConfigError(
            f"the LLR score is for dipmark, gamma-reweight and delta-reweight, not {scheme.name}"
        )
    return scheme


def scored_positions(scheme: WatermarkScheme, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token indices t, contexts (n, h)) of the first occurrence of each context: the model-free
    detectors' scored positions (their seeds, their `first_seed_occurrences`)."""
    scheme = _reweight(scheme)
    h = scheme.config.context_width
    if ids.size < h + 1:
        raise TextTooShortError(
            f"text has {ids.size} tokens; the {scheme.name} detector needs at least {h + 1}"
        )
    windows = np.lib.stride_tricks.sliding_window_view(ids, h + 1)
    contexts = windows[:, :h]
    seeds = scheme.seeds_for(contexts) if isinstance(scheme, DiPmarkScheme) else scheme.codes(contexts)[0]
    counted = np.flatnonzero(first_seed_occurrences(seeds))
    return counted + h, np.ascontiguousarray(contexts[counted])


def final_log_probs(
    logits: torch.Tensor, contexts: torch.Tensor, vocab_size: int, warpers: list
) -> torch.Tensor:
    """log Q: the sampling warpers, then float64 log-softmax over the scheme's vocabulary, exactly
    `FinalDistributionProcessor.final_log_probs` (and dipmark's processor) at generation."""
    final = logits
    for warper in warpers:
        final = warper(contexts, final)
    return torch.log_softmax(final[:, :vocab_size].to(torch.float64), dim=-1)


def watermarked_log_probs(
    scheme: WatermarkScheme, contexts: np.ndarray, log_q: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """log Q_W(x) per row: the scheme's own reweight (the functions generation runs)."""
    if isinstance(scheme, DiPmarkScheme):
        return scheme.reweighted(contexts, log_q).gather(1, tokens.reshape(-1, 1)).reshape(-1)
    assert isinstance(scheme, DeltaReweightScheme)
    chosen = scheme.choose(contexts, log_q)
    return torch.where(chosen == tokens, 0.0, -math.inf).to(torch.float64)


def llr_scores(
    scheme: WatermarkScheme,
    contexts: np.ndarray,
    tokens: np.ndarray,
    logits: torch.Tensor,
    settings: LLRSettings,
) -> np.ndarray:
    """s_t = log((1 - eps) Q_W(x_t) + eps Q(x_t)) - log Q(x_t) for rows of logits (n, V_model)."""
    scheme = _reweight(scheme)
    v = scheme.vocab_size_for(logits.shape[-1])
    warpers = sampling_warpers(settings.temperature, settings.top_p, settings.top_k)
    out = np.zeros(len(tokens))
    eps = settings.epsilon
    for s in range(0, len(tokens), ROW_CHUNK):
        ctx = contexts[s : s + ROW_CHUNK]
        x = torch.from_numpy(np.asarray(tokens[s : s + ROW_CHUNK], dtype=np.int64)).to(logits.device)
        log_q = final_log_probs(
            logits[s : s + ROW_CHUNK], torch.from_numpy(ctx).to(logits.device), v, warpers
        )
        lq = log_q.gather(1, x.reshape(-1, 1)).reshape(-1)
        lw = watermarked_log_probs(scheme, ctx, log_q, x)
        mixed = lw if eps == 0.0 else torch.logaddexp(lw + math.log1p(-eps), lq + math.log(eps))
        score = torch.where(torch.isneginf(lq), 0.0, mixed - lq)  # Q(x) = 0: Q'_W(x) = 0 for every key
        out[s : s + ROW_CHUNK] = score.cpu().numpy()
    return out


def llr_detection(
    scheme: WatermarkScheme, ids: np.ndarray, scores: np.ndarray, settings: LLRSettings, info: dict[str, Any]
) -> LLRDetection:
    """The detection of one text from its per-position LLR scores (and its model-free test)."""
    total = float(scores.sum())
    log10_p = 0.0 if total <= 0.0 else -total / LN10  # min(0, -S / ln 10); S = -inf gives 0
    plain = scheme.detect(ids)
    eps = settings.epsilon
    # dipmark's Q_W(x) / Q(x) <= 2 (the reweight's slope), so S <= T log(2 - eps): the smallest p
    floor = math.exp(-len(scores) * math.log(2.0 - eps)) if isinstance(scheme, DiPmarkScheme) else 0.0
    return LLRDetection(
        scheme=scheme.name,
        p_value=10.0**log10_p,
        log10_p_value=log10_p,
        num_tokens_scored=len(scores),
        statistic=total if math.isfinite(total) else float(scores[np.isfinite(scores)].sum()),
        p_value_floor=floor,
        llr_score=total if math.isfinite(total) else None,
        llr_log10_p_value=log10_p,
        llr_impossible_tokens=int(np.isneginf(scores).sum()),
        model_free_p_value=plain.p_value,
        model_free_log10_p_value=float(plain.log10_p_value),  # type: ignore[arg-type]
        llr=dict(info),
        token_mask=getattr(plain, "token_mask", ()),
    )


def position_scores(
    scheme: WatermarkScheme,
    model: Any,
    texts: Sequence[np.ndarray],
    start_id: int,
    settings: LLRSettings,
    *,
    prefixes: Sequence[Sequence[int] | None] | None = None,
    max_batch_tokens: int = 1024,
) -> list[np.ndarray]:
    """Per text, s_t at its scored positions (`scored_positions`' order), the model run over the
    texts in batches (`forward_logits`: each text after its prefix, None = the start token)."""
    from ..modeling.entropy import forward_logits

    where = [scored_positions(scheme, ids) for ids in texts]  # too short: refused before the model runs
    scores = [np.zeros(len(t)) for t, _ in where]
    passes = forward_logits(model, texts, start_id, max_batch_tokens=max_batch_tokens, prefixes=prefixes)
    for i, a, logits in passes:
        positions, contexts = where[i]
        keep = np.flatnonzero((positions >= a) & (positions < a + logits.shape[0]))
        if keep.size:
            rows = logits[torch.from_numpy(positions[keep] - a).to(logits.device)]
            scores[i][keep] = llr_scores(scheme, contexts[keep], texts[i][positions[keep]], rows, settings)
    return scores


def detect_llr_many(
    scheme: WatermarkScheme,
    model: Any,
    texts: Iterable[Sequence[int] | np.ndarray],
    start_id: int,
    settings: LLRSettings | None = None,
    *,
    epsilon: float | None = None,
    prefixes: Sequence[Sequence[int] | None] | None = None,
    info: dict[str, Any] | None = None,
    max_batch_tokens: int = 1024,
) -> list[LLRDetection]:
    """The LLR detection of each text (the model run over them in batches, on its device).
    `prefixes`: per text the ids it followed (the formatted prompt: Q is then the generating
    distribution) or None (the start token); any key-independent prefix keeps the test valid.
    `epsilon` overrides the settings' eps; `info` (e.g. the model's name) goes into `llr`."""
    settings = settings or LLRSettings()
    if epsilon is not None:
        settings = LLRSettings(epsilon, settings.temperature, settings.top_p, settings.top_k)
    arrays = [as_token_array(t, scheme.config.vocab_size) for t in texts]
    scores = position_scores(
        scheme, model, arrays, start_id, settings, prefixes=prefixes, max_batch_tokens=max_batch_tokens
    )
    details = {**(info or {}), "epsilon": settings.epsilon, "temperature": settings.temperature,
               "top_p": settings.top_p, "top_k": settings.top_k}  # fmt: skip
    return [llr_detection(scheme, ids, s, settings, details) for ids, s in zip(arrays, scores, strict=True)]

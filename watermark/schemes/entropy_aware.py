"""Entropy-aware detection for the green-list family and gumbel: SWEET and EWD.

Low-entropy tokens (code syntax, list markers, forced answers) carry almost no watermark, yet the
plain test counts them like any other. Given each position's entropy under a language model
(`modeling.entropy.position_entropies`, computed from the text alone):
- SWEET (Lee et al. 2023) scores only positions whose Shannon entropy is at least `threshold`
  (default 0.9 nats, the setting of MarkLLM's SWEET config);
- EWD (Lu et al. 2024) weights each position by its entropy minus the smallest entropy of the
  text's scored positions (the authors' weight): green lists use KGW's spike entropy with the
  scheme's (gamma, delta) modulus as in the paper; gumbel, which has no delta, the Shannon entropy.

The weights depend on the text and the model only, never on the key, so under H0 they are
constants: the statistic is the weighted sum of the scheme's own per-token scores with the
weights put on an integer grid (`statistics.weighted.quantize_weights`), and its p-value is the
exact tail of that sum (`statistics.weighted`: weighted Bernoulli(gamma), weighted unigram
hypergeometric, weighted Exp(1); the last one provably conservative by a truncation bound of at
most 1e-8 of the tail). A repeated (context, token) pair is scored once, as plain detection does,
with the largest weight among its occurrences; `count_repeats` scores them all (approximate, as
in plain detection). All-equal weights (SWEET with threshold 0) give the plain test's p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from ..errors import ConfigError
from ..keying import prf
from ..modeling.entropy import PositionEntropies, spike_modulus
from ..statistics.pvalues import log10_hypergeom_tail
from ..statistics.weighted import (
    WEIGHT_LEVELS,
    log10_weighted_binomial_tail,
    log10_weighted_gamma_tail,
    log10_weighted_hypergeom_tail,
    quantize_weights,
)
from .base import Detection, TextTooShortError, WatermarkScheme, as_token_array, first_occurrences
from .greenlist import GreenListScheme
from .gumbel import GumbelScheme

METHODS = ("sweet", "ewd")
SWEET_THRESHOLD = 0.9  # nats
MAX_THRESHOLD = 100.0


@dataclass(frozen=True)
class EntropyDetection(Detection):
    """A weighted test's result. `statistic`: the sum of the integer-weighted scores;
    `num_tokens_scored`: positions with a positive weight; `entropy_weighting`: how (JSON field)."""

    entropy_weighting: dict[str, Any] = field(default_factory=dict)
    token_mask: tuple[int, ...] = ()  # as the scheme's plain mask; -1 also where the weight is 0


@dataclass(frozen=True)
class WeightedGreenListDetection(EntropyDetection):
    green_count: int = 0  # green positions among those weighted
    z_score: float = 0.0  # (S - gamma sum k) / sqrt(gamma (1 - gamma) sum k^2): display only
    green_fraction: float = 0.0  # weighted: S / sum k


def supports(scheme: WatermarkScheme) -> bool:
    """Entropy-aware detection exists for the green-list family and gumbel."""
    return type(scheme) in (GreenListScheme, GumbelScheme)


def check_method(method: str, threshold: float | None) -> None:
    if method not in METHODS:
        raise ConfigError(f"unknown entropy weighting {method!r}; known: {', '.join(METHODS)}")
    if threshold is not None and not 0.0 <= threshold <= MAX_THRESHOLD:
        raise ConfigError(f"the entropy threshold must be in [0, {MAX_THRESHOLD:g}] nats, got {threshold:g}")


def ewd_modulus(scheme: WatermarkScheme) -> float | None:
    """The spike-entropy modulus EWD needs from the model (green lists), None for gumbel."""
    if isinstance(scheme, GreenListScheme):
        return spike_modulus(scheme.config.gamma, scheme.config.delta)
    return None


def scored_prefix(scheme: WatermarkScheme) -> int:
    """How many first tokens the scheme never scores (its context); other schemes are refused."""
    if not supports(scheme):
        raise ConfigError(f"entropy-aware detection is for kgw, unigram and gumbel, not {scheme.name}")
    if isinstance(scheme, GreenListScheme):
        return scheme.config.prefix_length
    return cast(GumbelScheme, scheme).config.context_width


def entropy_weights(
    scheme: WatermarkScheme, entropies: PositionEntropies, method: str, threshold: float | None = None
) -> np.ndarray:
    """Per-token weights (one per token of the text; the first h, never scored, get 0)."""
    check_method(method, threshold)
    h = scored_prefix(scheme)
    weights = np.zeros(len(entropies.shannon))
    if method == "sweet":
        tau = SWEET_THRESHOLD if threshold is None else threshold
        weights[h:] = entropies.shannon[h:] >= tau  # >=: threshold 0 keeps every position (plain test)
        return weights
    source = entropies.spike if ewd_modulus(scheme) is not None else entropies.shannon
    if source is None:
        raise ConfigError("EWD on a green list needs the spike entropies (give the scheme's modulus)")
    if len(source) > h:
        weights[h:] = source[h:] - source[h:].min()
    return weights


def weighted_first(seeds: np.ndarray, tokens: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One occurrence of each distinct (seed, token) pair: the one with the largest weight (the
    earliest among equals, so equal weights keep plain detection's first occurrences)."""
    order = np.argsort(-weights, kind="stable")
    mask = np.zeros(len(weights), dtype=bool)
    mask[order] = first_occurrences(seeds[order], tokens[order])
    return mask


def _token_weights(weights: Sequence[float] | np.ndarray, n: int, h: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size != n:
        raise ConfigError(f"{w.size} weights for a text of {n} tokens: one weight per token is needed")
    if not np.all(np.isfinite(w)) or (w.size and w.min() < 0.0):
        raise ConfigError("entropy weights must be finite and non-negative")
    return w[h:]


def detect_weighted(
    scheme: WatermarkScheme,
    token_ids: Sequence[int] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    *,
    info: dict[str, Any] | None = None,
    levels: int = WEIGHT_LEVELS,
) -> EntropyDetection:
    """Test one text with per-token weights (key-free: from the text and a model only); `info`
    goes into `entropy_weighting` (method, model, threshold)."""
    h = scored_prefix(scheme)
    ids = as_token_array(token_ids, scheme.config.vocab_size)
    if ids.size < h + 1:
        raise TextTooShortError(
            f"text has {ids.size} tokens; the {scheme.name} detector needs at least {h + 1}"
        )
    w = _token_weights(weights, ids.size, h)
    windows = np.lib.stride_tricks.sliding_window_view(ids, h + 1)
    tokens = windows[:, h].copy()
    extra = {**(info or {}), "levels": levels}
    if isinstance(scheme, GreenListScheme):
        return _greenlist(scheme, ids, windows, tokens, w, extra)
    assert isinstance(scheme, GumbelScheme)
    return _gumbel(scheme, ids, windows, tokens, w, extra)


def _mask(n: int, h: int, values: np.ndarray, kept: np.ndarray) -> tuple[int, ...]:
    mask = np.full(n, -1, dtype=np.int64)
    mask[h:] = np.where(kept, values.astype(np.int64), -1)
    return tuple(mask.tolist())


def _greenlist(scheme: GreenListScheme, ids, windows, tokens, w, extra) -> WeightedGreenListDetection:
    cfg, h = scheme.config, scheme.config.prefix_length
    seeds = scheme.token_seeds(windows)
    green = scheme.is_green(torch.from_numpy(seeds), torch.from_numpy(tokens)).numpy()
    counted = np.ones(len(w), dtype=bool) if cfg.count_repeats else weighted_first(seeds, tokens, w)
    k = np.where(counted, quantize_weights(w, levels=extra["levels"]), 0)
    kept = k > 0
    obs, total, t = int(k[green].sum()), int(k.sum()), int(kept.sum())
    approx = " (repeats counted: approximate)" if cfg.count_repeats else ""
    vocab, marked = scheme.fixed_list_size(ids) if cfg.context_width == 0 else (0, 0)
    if cfg.context_width == 0 and not cfg.count_repeats:
        prob = marked / vocab
        null = "weighted hypergeometric (exact)"
        log10_p = log10_weighted_hypergeom_tail(k[kept], obs, vocab, marked)
        log10_floor = log10_hypergeom_tail(t, vocab, marked, t)  # every weighted token green
    else:
        prob = cfg.gamma if cfg.context_width else marked / vocab
        null = "weighted binomial (exact lattice convolution)" + approx
        log10_p = log10_weighted_binomial_tail(k[kept], obs, prob)
        log10_floor = t * math.log10(prob)  # every weighted position green
    spread = math.sqrt(prob * (1.0 - prob) * float((k.astype(np.float64) ** 2).sum()))
    return WeightedGreenListDetection(
        scheme=cfg.scheme,
        p_value=10.0**log10_p,
        num_tokens_scored=t,
        statistic=float(obs),
        log10_p_value=log10_p,
        p_value_floor=10.0**log10_floor,
        entropy_weighting={**extra, "null": null, "weight_sum": total, "positions_weighted": t},
        token_mask=_mask(ids.size, h, green, kept),
        green_count=int((green & kept).sum()),
        z_score=(obs - prob * total) / spread if spread > 0 else 0.0,
        green_fraction=obs / total if total else 0.0,
    )


def _gumbel(scheme: GumbelScheme, ids, windows, tokens, w, extra) -> EntropyDetection:
    h = scheme.config.context_width
    seeds = scheme.seeds_for(windows[:, :h])
    r = prf.uniforms(torch.from_numpy(seeds), torch.from_numpy(tokens))
    scores = (-torch.log1p(-r)).numpy()  # as GumbelScheme.token_scores
    counted = weighted_first(seeds, tokens, w)
    k = np.where(counted, quantize_weights(w, levels=extra["levels"]), 0)
    kept = k > 0
    s = float((k[kept] * scores[kept]).sum())
    log10_p = log10_weighted_gamma_tail(k[kept], s)
    return EntropyDetection(
        scheme=scheme.config.scheme,
        p_value=10.0**log10_p,
        num_tokens_scored=int(kept.sum()),
        statistic=s,
        log10_p_value=log10_p,
        p_value_floor=0.0 if kept.any() else 1.0,
        entropy_weighting={
            **extra,
            "null": "weighted sum of Exp(1): negative-binomial mixture of Gammas (exact lattice, conservative truncation)",
            "weight_sum": int(k.sum()),
            "positions_weighted": int(kept.sum()),
        },
        token_mask=_mask(ids.size, h, counted, kept | ~counted),
    )

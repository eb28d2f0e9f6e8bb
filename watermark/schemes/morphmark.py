"""MorphMark (Wang, Gu, Wu, Yang, ACL 2025): a green-list watermark whose strength follows the
green mass.

The green list is KGW's (a gamma fraction of the vocabulary per context of h previous ids, from
the shared PRF). Where KGW adds a fixed delta to green logits, MorphMark moves a fraction r of the
red mass to the green list, with r an increasing function of the green mass P_G:
    r = 0 when P_G < p0, else r = k P_G (linear), exp(k P_G) - 1 (exp) or log(1 + k P_G) (log),
clipped to [0, 1]; then every red probability is multiplied by 1 - r and every green one by
1 + r (1 - P_G) / P_G, so the green mass becomes P_G + r (1 - P_G). Defaults are the authors'
(MarkLLM's config: gamma 1/2, exp rule, k 1.30, p0 0.15, h = 1).

Detection is KGW's, unchanged: green tokens among the distinct (context, token) pairs, exactly
Binomial(T, gamma) under H0 (`GreenListScheme.detect`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from transformers import LogitsProcessor

from ..config import SchemeConfig, check_range, register_config
from ..errors import ConfigError
from ..keying import prf
from .greenlist import MAX_CONTEXT_WIDTH, GreenListScheme
from .registry import register_scheme

RULES = ("linear", "exp", "log")
DEFAULT_K = {"linear": 1.55, "exp": 1.30, "log": 2.15}
MAX_K = 1e3


def strength(green_mass: torch.Tensor, rule: str, k: float, p0: float) -> torch.Tensor:
    """r(P_G): 0 below p0, else the rule's increasing function, clipped to [0, 1]."""
    if rule == "linear":
        r = k * green_mass
    elif rule == "exp":
        r = torch.expm1(k * green_mass)
    elif rule == "log":
        r = torch.log1p(k * green_mass)
    else:
        raise ConfigError(f"unknown MorphMark rule {rule!r}; known: {', '.join(RULES)}")
    return torch.where(green_mass < p0, torch.zeros_like(r), r).clamp_(0.0, 1.0)


def morph(probs: torch.Tensor, green: torch.Tensor, rule: str, k: float, p0: float) -> torch.Tensor:
    """The MorphMark distribution of probs (B, V) with green masks (B, V)."""
    p = probs.to(torch.float64)
    g = green.to(torch.bool)
    mass = (p * g).sum(dim=-1, keepdim=True)
    r = strength(mass, rule, k, p0)
    green_scale = 1.0 + r * (1.0 - mass) / mass.clamp(min=1e-300)
    return p * torch.where(g, green_scale, 1.0 - r)


@register_config("morphmark")
@dataclass(frozen=True)
class MorphMarkConfig(SchemeConfig):
    """gamma: green fraction; rule / k / p0: the strength r(P_G); context_width h >= 1;
    count_repeats: score every (context, token) occurrence (not exact)."""

    detection_only = ("count_repeats",)

    scheme: str = "morphmark"
    gamma: float = 0.5
    rule: str = "exp"
    k: float | None = None  # None: the rule's default (DEFAULT_K)
    p0: float = 0.15
    context_width: int = 1
    count_repeats: bool = False

    def __post_init__(self) -> None:
        if self.k is None and self.rule in DEFAULT_K:
            object.__setattr__(self, "k", DEFAULT_K[self.rule])
        super().__post_init__()

    # what the green-list machinery reads: MorphMark seeds its lists as KGW's LeftHash does
    @property
    def seeding(self) -> str:
        return "lefthash"

    @property
    def prefix_length(self) -> int:
        return self.context_width

    def validate(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ConfigError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.rule not in RULES:
            raise ConfigError(f"unknown MorphMark rule {self.rule!r}; known: {', '.join(RULES)}")
        check_range("k", cast(float, self.k), 0.0, MAX_K)  # set: the rule is known (checked above)
        check_range("p0", self.p0, 0.0, 1.0)
        check_range("context width", self.context_width, 1, MAX_CONTEXT_WIDTH)


@register_scheme("morphmark")
class MorphMarkScheme(GreenListScheme):
    config_cls = MorphMarkConfig
    config: MorphMarkConfig  # type: ignore[assignment]

    def __init__(self, config: MorphMarkConfig, key):
        super().__init__(config, key)  # type: ignore[arg-type]
        self._subkey = key.derive(f"morphmark/h={config.context_width}")
        self._seed_cache = prf.SeedCache(self._subkey)

    def processor(self) -> MorphMarkLogitsProcessor:  # type: ignore[override]
        return MorphMarkLogitsProcessor(self)


class MorphMarkLogitsProcessor(LogitsProcessor):
    """Replaces the logits by the log of the MorphMark distribution (batched; any padding: the
    context is each row's last h ids, prompt included). Tokens past the vocabulary keep their logits.

    Example:
        >>> scheme = build_scheme({"scheme": "morphmark", "vocab_size": len(tok)}, Key.generate())
        >>> gens = watermark.modeling.generation.generate(model, tok, ["Tell me a story."], scheme=scheme)
    """

    def __init__(self, scheme: MorphMarkScheme):
        self.scheme = scheme

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        cfg = self.scheme.config
        h = cfg.context_width
        if input_ids.shape[1] < h:
            raise ConfigError(f"context width {h} needs a prompt of at least {h} tokens")
        v = self.scheme.vocab_size_for(scores.shape[-1])
        ctx = input_ids[:, -h:].detach().to("cpu", torch.int64).numpy()
        seeds = torch.from_numpy(self.scheme.seeds_for(ctx)).to(scores.device)
        green = self.scheme.vocab_green_mask(seeds, v).to(scores.device)
        log_z = torch.logsumexp(scores[:, :v].to(torch.float64), dim=-1, keepdim=True)
        probs = (scores[:, :v].to(torch.float64) - log_z).exp()
        out = scores.clone()
        # log_z added back: the vocabulary's logits keep their scale against any past its end
        k = cast(float, cfg.k)  # never None once built: __post_init__ sets the rule's default
        out[:, :v] = (morph(probs, green, cfg.rule, k, cfg.p0).log() + log_z).to(scores.dtype)
        return out

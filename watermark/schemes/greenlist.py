"""Green-list watermarks (Kirchenbauer et al. 2023; Zhao et al. 2023 for h = 0).

Token v is green in context c (the previous h token ids) when the shared PRF gives
uniform(seed, v) < gamma, where the seed is
- `lefthash`: the keyed hash of the h previous ids (h = 1 is KGW's LeftHash, h = 0 Unigram);
- `selfhash`: the Reliability paper's SelfHash (algorithm 3, self-salted anchored min-hash): the
  window is the h - 1 previous ids plus the candidate v itself, and the seed is min_i seed(x_i, v)
  over all h ids of the window, the candidate's own (v, v) term included; h counts the candidate,
  as in the paper's code and transformers (default h = 4: three previous ids + the candidate).
  During generation only the top `candidates` tokens are tested, each against its own list.
Generation adds delta to green logits. Detection counts green tokens among distinct scored
(seed, token) pairs; under H0 each distinct pair is green with probability gamma independently,
so the count is exactly Binomial(T, gamma). With h = 0 there is one fixed list of K tokens and the
unique tokens of a text hit it with a Hypergeometric(N, K, m) count, the exact null used there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, cast

import numpy as np
import torch
from transformers import LogitsProcessor

from ..config import SchemeConfig, check_range, register_config
from ..errors import ConfigError
from ..keying import prf
from ..statistics.pvalues import (
    binomial_tail,
    hypergeom_tail,
    log10_binomial_tail,
    log10_hypergeom_tail,
    z_score,
)
from ..statistics.spans import CountEvidence
from .base import Detection, TextTooShortError, WatermarkScheme, as_token_array, first_occurrences
from .registry import register_scheme
from .spans import SpanMixin

SEEDINGS = ("lefthash", "selfhash")
SELFHASH_DEFAULT_WIDTH = 4  # the paper's and transformers' h for selfhash: 3 previous ids + the candidate
# bounds that keep memory bounded: contexts are (tokens x h) int64 arrays, candidates a top-k per step
MAX_CONTEXT_WIDTH = 32
MAX_CANDIDATES = 4096
MAX_DELTA = 1e6  # far beyond any useful bias; keeps float32 logits finite


@register_config("kgw", "unigram")
@dataclass(frozen=True)
class GreenListConfig(SchemeConfig):
    """gamma: green fraction; delta: logit bias; context_width h (0 = Unigram); count_repeats:
    score every (context, token) occurrence instead of each distinct pair once (not exact)."""

    detection_only = ("count_repeats",)

    scheme: str = "kgw"
    gamma: float = 0.25
    delta: float = 2.0
    context_width: int | None = None  # None: 0 for unigram, 1 for lefthash kgw, 4 for selfhash
    seeding: str = "lefthash"
    count_repeats: bool = False
    candidates: int = 40  # selfhash: how many top tokens are tested during generation

    @staticmethod
    def default_context_width(scheme: str, seeding: str) -> int:
        if scheme == "unigram":
            return 0
        return SELFHASH_DEFAULT_WIDTH if seeding == "selfhash" else 1

    def __post_init__(self) -> None:
        if self.context_width is None:
            object.__setattr__(self, "context_width", self.default_context_width(self.scheme, self.seeding))
        super().__post_init__()

    def replace(self, **changes):
        """Changing the seeding keeps a default context width at the new seeding's default."""
        if (
            "seeding" in changes
            and "context_width" not in changes
            and self.context_width == self.default_context_width(self.scheme, self.seeding)
        ):
            changes["context_width"] = None
        return super().replace(**changes)

    def check_version(self) -> None:
        super().check_version()
        if self.version < 2 and self.seeding == "selfhash":
            raise ConfigError(
                "this config was made by wm's first selfhash (config version 1: no self term, other lists); "
                "its texts cannot be tested by this version, which implements the paper's selfhash: "
                "regenerate them (wm generate --seeding selfhash)"
            )

    def generation_dict(self) -> dict:
        out = super().generation_dict()
        if self.seeding == "selfhash":
            out["version"] = self.version  # the old and new selfhash emit different texts
        return out

    @property
    def prefix_length(self) -> int:
        """How many previous ids decide a token's list (selfhash's window also holds the token)."""
        width = cast(int, self.context_width)  # never None once built: __post_init__ sets the default
        return width - 1 if self.seeding == "selfhash" else width

    def validate(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ConfigError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.vocab_size is not None and not 1 <= self.gamma * self.vocab_size <= self.vocab_size - 1:
            raise ConfigError(
                f"gamma {self.gamma:g} leaves no green or no red token in a vocabulary of {self.vocab_size}"
            )
        check_range("delta", self.delta, 0.0, MAX_DELTA)
        width = cast(int, self.context_width)  # set by __post_init__ before validate()
        check_range("context width", width, 0, MAX_CONTEXT_WIDTH)
        if self.scheme == "unigram" and self.context_width != 0:
            raise ConfigError("the unigram scheme has context width 0")
        if self.seeding not in SEEDINGS:
            raise ConfigError(f"unknown seeding {self.seeding!r}; known: {', '.join(SEEDINGS)}")
        if self.seeding == "selfhash" and width < 1:
            raise ConfigError("selfhash seeding needs a context width of at least 1 (the candidate itself)")
        check_range("candidates", self.candidates, 1, MAX_CANDIDATES)


@dataclass(frozen=True)
class GreenListDetection(Detection):
    green_count: int
    z_score: float
    green_fraction: float
    null: str
    token_mask: tuple[int, ...] = ()  # per input token: 1 green, 0 red, -1 not scored (context prefix)


@register_scheme("kgw", "unigram")
class GreenListScheme(SpanMixin, WatermarkScheme):
    config_cls: ClassVar[type[SchemeConfig]] = GreenListConfig  # MorphMark's serves it too (duck-typed)
    config: GreenListConfig

    def __init__(self, config: GreenListConfig, key):
        super().__init__(config, key)
        # selfhash-v2: the self-salted min-hash (v, v term included); never the lists of the old one
        label = "selfhash-v2" if config.seeding == "selfhash" else config.seeding
        self._subkey = key.derive(f"greenlist/{label}/h={config.context_width}")
        self._seed_cache = prf.SeedCache(self._subkey)
        self._fixed_lists: dict[tuple[str, int], torch.Tensor] = {}

    # ---- the green list, shared by both halves -------------------------------------------------
    def seeds_for(self, contexts: np.ndarray) -> np.ndarray:
        """LeftHash PRF seeds of contexts, shape (n, h)."""
        return self._seed_cache(contexts)

    def selfhash_seeds(self, contexts: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """SelfHash seeds: min over the window (previous ids and the candidate v itself) of
        seed(x_i, v), anchored at v. `contexts` holds the h - 1 previous ids, shape (n, h - 1)."""
        window = np.concatenate([contexts, candidates.reshape(-1, 1)], axis=1)
        n, h = window.shape
        pairs = np.stack([window, np.repeat(candidates.reshape(-1, 1), h, axis=1)], axis=2).reshape(n * h, 2)
        return prf.context_seeds(self._subkey, pairs).reshape(n, h).min(axis=1)

    def token_seeds(self, windows: np.ndarray) -> np.ndarray:
        """The seed that decides each window's last token, for windows of the prefix ids + 1 token."""
        p = self.config.prefix_length
        if self.config.seeding == "selfhash":
            return self.selfhash_seeds(windows[:, :p], windows[:, p])
        return self.seeds_for(windows[:, :p])

    def is_green(self, seeds: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """Green test for broadcast (seed, token) pairs."""
        return prf.below(seeds, token_ids, self.config.gamma)

    def vocab_green_mask(self, seeds: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(len(seeds), vocab_size) boolean green lists, one per seed."""
        return prf.vocab_below(seeds.reshape(-1), vocab_size, self.config.gamma)

    def fixed_green_mask(self, vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The single list used when h = 0 (cached per device)."""
        k = (str(device), vocab_size)
        if k not in self._fixed_lists:
            seed = torch.tensor(self.seeds_for(np.zeros((1, 0), dtype=np.int64)), device=device)
            self._fixed_lists[k] = self.vocab_green_mask(seed, vocab_size)[0]
        return self._fixed_lists[k]

    def green_token_ids(self, vocab_size: int | None = None) -> np.ndarray:
        """The Unigram list (h = 0 only): ground truth for evaluating stealing attacks."""
        if self.config.context_width != 0:
            raise ConfigError("a context-dependent scheme has no single green list")
        v = vocab_size or self.config.vocab_size
        if v is None:
            raise ConfigError("vocab_size is unknown")
        return np.flatnonzero(self.fixed_green_mask(v).numpy())

    # ---- embedding -----------------------------------------------------------------------------
    def processor(self) -> GreenListLogitsProcessor:
        return GreenListLogitsProcessor(self)

    # ---- detection -----------------------------------------------------------------------------
    @property
    def min_tokens(self) -> int:
        return self.config.prefix_length + 1

    def scored_positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(green, counted) for the tokens after the first h: green under their own context, and
        counted = the first occurrence of their (seed, token) pair (every token with count_repeats).
        A repeated pair repeats the same coin flip, so only its first occurrence is scored."""
        h = self.config.prefix_length
        if ids.size < self.min_tokens:
            raise TextTooShortError(
                f"text has {ids.size} tokens; the {self.config.scheme} detector needs at least {self.min_tokens}"
            )
        windows = np.lib.stride_tricks.sliding_window_view(ids, h + 1)  # (n - h, h + 1): context + token
        seeds = self.token_seeds(windows)
        tokens = windows[:, h].copy()
        green = self.is_green(torch.from_numpy(seeds), torch.from_numpy(tokens)).numpy()
        counted = (
            np.ones(len(windows), dtype=bool)
            if self.config.count_repeats
            else first_occurrences(seeds, tokens)
        )
        return green, counted

    def fixed_list_size(self, ids: np.ndarray) -> tuple[int, int]:
        """Unigram: (vocabulary V, green-list size K) of the one fixed list."""
        cfg = self.config
        vocab = cfg.vocab_size or int(ids.max()) + 1
        k = int(self.fixed_green_mask(vocab).sum())
        if not 0 < k < vocab:
            raise ConfigError(f"the green list of gamma {cfg.gamma:g} holds {k} of {vocab} tokens: no test")
        return vocab, k

    @property
    def has_spans(self) -> bool:
        """Windows are exact only with each (context, token) pair scored once."""
        return not self.config.count_repeats

    def span_evidence(self, ids: np.ndarray) -> CountEvidence:
        """Per-token green indicators for `detect_spans`: scored exactly as `detect` scores them."""
        cfg = self.config
        if cfg.count_repeats:
            raise ConfigError("span detection scores each (context, token) pair once: drop count_repeats")
        h = cfg.prefix_length
        green, counted = self.scored_positions(ids)
        scored = np.zeros(ids.size, dtype=bool)
        hit = np.zeros(ids.size, dtype=bool)
        scored[h:], hit[h:] = counted, green
        if cfg.context_width == 0:
            vocab, k = self.fixed_list_size(ids)
            return CountEvidence(
                scored, hit, k / vocab, hypergeom=(vocab, k), description="hypergeometric per window"
            )
        return CountEvidence(scored, hit, cfg.gamma, description="binomial per window")

    def detect(self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None) -> GreenListDetection:
        cfg = self.config
        h = cfg.prefix_length
        ids = as_token_array(token_ids, cfg.vocab_size)
        n = ids.size
        green, counted = self.scored_positions(ids)
        t = int(counted.sum())
        g = int(green[counted].sum())
        if cfg.context_width == 0:  # one fixed list (unigram)
            vocab, k = self.fixed_list_size(ids)
            prob = k / vocab
            if cfg.count_repeats:
                null = "binomial (repeats counted: approximate)"
                p, log10_p = binomial_tail(g, t, prob), log10_binomial_tail(g, t, prob)
                floor = binomial_tail(t, t, prob)
            else:
                null = "hypergeometric"
                p, log10_p = hypergeom_tail(g, vocab, k, t), log10_hypergeom_tail(g, vocab, k, t)
                floor = hypergeom_tail(t, vocab, k, t)
        else:
            null = "binomial (repeats counted: approximate)" if cfg.count_repeats else "binomial"
            prob = cfg.gamma
            p, log10_p = binomial_tail(g, t, prob), log10_binomial_tail(g, t, prob)
            floor = binomial_tail(t, t, prob)  # every scored pair green: gamma ** t
        mask = np.full(n, -1, dtype=np.int64)
        mask[h:] = green.astype(np.int64)
        z = z_score(g, t, prob)
        return GreenListDetection(
            scheme=cfg.scheme,
            p_value=p,
            num_tokens_scored=t,
            statistic=float(g),
            log10_p_value=log10_p,
            p_value_floor=floor,
            green_count=g,
            z_score=z,
            green_fraction=g / t if t else 0.0,
            null=null,
            token_mask=tuple(mask.tolist()),
        )


class GreenListLogitsProcessor(LogitsProcessor):
    """Adds delta to the logits of green tokens; works for any batch, padding and decoding mode.

    Example:
        >>> from transformers import LogitsProcessorList
        >>> scheme = GreenListScheme(GreenListConfig(vocab_size=len(tok)), Key.generate())
        >>> out = model.generate(**enc, logits_processor=LogitsProcessorList([scheme.processor()]))
    """

    def __init__(self, scheme: GreenListScheme):
        self.scheme = scheme
        self.h = scheme.config.prefix_length
        self.delta = float(scheme.config.delta)

    def green_mask(self, input_ids: torch.LongTensor, vocab_size: int) -> torch.Tensor:
        if self.h == 0:
            return self.scheme.fixed_green_mask(vocab_size, input_ids.device).unsqueeze(0)
        if input_ids.shape[1] < self.h:
            raise ConfigError(f"context width {self.h} needs a prompt of at least {self.h} tokens")
        ctx = input_ids[:, -self.h :].detach().to("cpu", torch.int64).numpy()
        seeds = torch.from_numpy(self.scheme.seeds_for(ctx)).to(input_ids.device)
        return self.scheme.vocab_green_mask(seeds, vocab_size)

    def selfhash_bias(
        self, input_ids: torch.LongTensor, scores: torch.Tensor, vocab_size: int
    ) -> torch.Tensor:
        """+delta on those of the top candidates that are green under their own anchored seed."""
        k = min(self.scheme.config.candidates, vocab_size)
        cand = scores[:, :vocab_size].topk(k, dim=-1).indices  # (B, k)
        ctx = input_ids[:, input_ids.shape[1] - self.h :].detach().to("cpu", torch.int64).numpy()
        cand_np = cand.detach().to("cpu").numpy()
        seeds = self.scheme.selfhash_seeds(np.repeat(ctx, k, axis=0), cand_np.reshape(-1))
        green = self.scheme.is_green(torch.from_numpy(seeds), torch.from_numpy(cand_np.reshape(-1)))
        bias = torch.zeros_like(scores)
        bias.scatter_(
            1, cand, green.reshape(cand.shape).to(device=scores.device, dtype=scores.dtype) * self.delta
        )
        return bias

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        out = scores.clone()
        self.add_bias_(input_ids, out)
        return out

    def add_bias_(
        self, input_ids: torch.LongTensor, scores: torch.Tensor, parallel: bool | None = None
    ) -> None:
        """The bias added to `scores` in place (engines that own their logits batch, e.g. vLLM's
        plugin, skip the copy); `parallel` as in `prf.add_below_` (the same bits either way)."""
        v = self.scheme.vocab_size_for(scores.shape[-1])
        if self.scheme.config.seeding == "selfhash":
            if input_ids.shape[1] < self.h:
                raise ConfigError(f"selfhash needs a prompt of at least {self.h} tokens")
            scores.add_(self.selfhash_bias(input_ids, scores, v))
            return
        if self.h > 0 and input_ids.shape[1] >= self.h:  # CPU: one fused pass (large vocabularies)
            ctx = input_ids[:, -self.h :].detach().to("cpu", torch.int64).numpy()
            seeds = torch.from_numpy(self.scheme.seeds_for(ctx))
            if prf.add_below_(scores[:, :v], seeds, self.scheme.config.gamma, self.delta, parallel):
                return
        scores[:, :v].add_(self.green_mask(input_ids, v).to(scores.dtype), alpha=self.delta)

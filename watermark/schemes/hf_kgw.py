"""transformers' KGW watermark (`WatermarkLogitsProcessor`, `WatermarkDetector`), bit for bit.

transformers draws each green list with its own generator, so wm's PRF cannot reproduce it; this
module calls the same torch functions with the same seeds instead:
- the integer `hashing_key` seeds a CPU `torch.Generator`; `randperm(1_000_003)` is the fixed table;
- `lefthash`: seed = hashing_key * (previous token id), whatever the context width (the width
  only decides how many leading tokens are skipped);
- `selfhash`: over the window of the last `context_width` ids *including the candidate*,
  seed = min_i(hashing_key * (table[x_i] + 1) * (table[candidate] + 1)) in wrapping int64;
- green list = randperm(V, generator seeded with seed % (2^64 - 1))[:int(V * gamma)], where V is
  the model config's `vocab_size` (stored as `model_vocab_size`; it can differ from len(tokenizer)).
Generation adds delta to green logits after the sampling warpers, where transformers puts it;
with selfhash only the 40 highest-scoring candidates are tested, each against its own list.

Detection scores each distinct (seed, token) pair once. A green list is a uniform K-subset of V
drawn per seed, so the green count of n_s distinct tokens under one seed is Hypergeometric(V, K,
n_s) and different seeds are independent: the exact null is the convolution of these
(`stats.log10_lattice_tail`), Binomial(T, K / V) when every seed scores one token. On CPU, torch
seeds its Mersenne Twister with the low 32 bits of the seed only, so seeds are grouped by those.
Green lists are made with the CPU generator: text watermarked by transformers on a GPU uses
another generator and is not matched.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as sps
from transformers import LogitsProcessor

from ..config import MAX_VOCAB_SIZE, SchemeConfig, check_range, register_config
from ..errors import ConfigError
from ..keying.hfkeys import HashingKey
from ..statistics.pvalues import lattice_tail, log10_lattice_tail, z_score
from ..statistics.spans import SeedGroupedCountEvidence
from .base import (
    Detection,
    TextTooShortError,
    WatermarkScheme,
    as_token_array,
    first_occurrences,
    sampling_warpers,
)
from .greenlist import MAX_CONTEXT_WIDTH, MAX_DELTA
from .registry import register_scheme
from .spans import SpanMixin

SEEDINGS = ("lefthash", "selfhash")
TABLE_SIZE = 1_000_003
SELFHASH_CANDIDATES = 40  # transformers' fixed number of candidates tested per step
_SEED_MOD = 2**64 - 1
_CACHE = 1024  # green lists kept per scheme (one bool per vocabulary entry each)


@register_config("hf-kgw")
@dataclass(frozen=True)
class HfKgwConfig(SchemeConfig):
    """transformers' `WatermarkingConfig` without its secret: gamma = greenlist_ratio, delta =
    bias, seeding = seeding_scheme, context_width; model_vocab_size = the model config's
    vocab_size that transformers permutes (None: the logits' width, or vocab_size)."""

    scheme: str = "hf-kgw"
    gamma: float = 0.25
    delta: float = 2.0
    seeding: str = "lefthash"
    context_width: int = 1
    model_vocab_size: int | None = None

    def validate(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ConfigError(f"gamma must be in (0, 1), got {self.gamma}")
        check_range("delta", self.delta, 0.0, MAX_DELTA)
        if self.seeding not in SEEDINGS:
            raise ConfigError(f"unknown seeding {self.seeding!r}; known: {', '.join(SEEDINGS)}")
        check_range("context width", self.context_width, 1, MAX_CONTEXT_WIDTH)
        if self.model_vocab_size is not None:
            check_range("model_vocab_size", self.model_vocab_size, 2, MAX_VOCAB_SIZE)
            if int(self.model_vocab_size * self.gamma) < 1:
                raise ConfigError("model_vocab_size * gamma must be at least 1 (an empty green list)")


@dataclass(frozen=True)
class HfKgwDetection(Detection):
    green_count: int
    z_score: float
    green_fraction: float
    null: str
    token_mask: tuple[int, ...] = ()  # per input token: 1 green, 0 red or repeated pair, -1 not scored


@register_scheme("hf-kgw")
class HfKgwScheme(SpanMixin, WatermarkScheme):
    """Green lists exactly as transformers makes them, for one integer hashing key."""

    accepts_integer_keys = True

    config_cls = HfKgwConfig
    config: HfKgwConfig
    acts_on_final_distribution = True  # transformers adds the bias after temperature / top-k / top-p

    def __init__(self, config: HfKgwConfig, key: HashingKey):
        if not isinstance(key, HashingKey):
            raise ConfigError(
                "the hf-kgw scheme takes transformers' integer hashing key: pass --hashing-key N, or "
                "--key FILE written by `wm keygen --hf-hashing-key N`"
            )
        super().__init__(config, key)
        self._hash_key = key.value
        self._generator = torch.Generator()
        self._table: torch.Tensor | None = None
        self._lists: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()

    # ---- the green list, shared by both halves -------------------------------------------------
    def permuted_size(self, scores_width: int | None = None) -> int:
        """V: the vocabulary transformers permutes (the model config's vocab_size)."""
        v = self.config.model_vocab_size or scores_width or self.config.vocab_size
        if v is None:
            raise ConfigError("hf-kgw needs model_vocab_size (the model config's vocab_size)")
        return int(v)

    def greenlist_size(self, v: int) -> int:
        return int(v * self.config.gamma)

    @property
    def table(self) -> torch.Tensor:
        """transformers' fixed_table: randperm(1_000_003) from a generator seeded with the key."""
        if self._table is None:
            self._generator.manual_seed(self._hash_key)
            self._table = torch.randperm(TABLE_SIZE, generator=self._generator)
        return self._table

    def lefthash_seeds(self, previous: np.ndarray) -> list[int]:
        return [(self._hash_key * int(x)) % _SEED_MOD for x in previous]

    def selfhash_seeds(self, windows: np.ndarray) -> list[int]:
        """Seeds of windows (n, context_width) whose last column is the candidate token."""
        w = torch.from_numpy(np.array(windows, dtype=np.int64))
        a = self.table[w % TABLE_SIZE] + 1
        b = self.table[w[:, -1] % TABLE_SIZE] + 1
        prod = (self._hash_key * a) * b[:, None]  # int64, wrapping like transformers' tensors
        return [int(s) % _SEED_MOD for s in prod.min(dim=1).values.tolist()]

    def green_mask(self, seed: int, v: int) -> torch.Tensor:
        """Boolean (v,) mask of the green list for one seed (an LRU cache of recent seeds)."""
        k = (seed, v)
        mask = self._lists.get(k)
        if mask is None:
            self._generator.manual_seed(seed)
            perm = torch.randperm(v, generator=self._generator)
            mask = torch.zeros(v, dtype=torch.bool)
            mask[perm[: self.greenlist_size(v)]] = True
            self._lists[k] = mask
            if len(self._lists) > _CACHE:
                self._lists.popitem(last=False)
        else:
            self._lists.move_to_end(k)
        return mask

    def scored(self, ids: np.ndarray) -> tuple[int, list[int], np.ndarray]:
        """(first scored position, seed of each scored token, the scored tokens)."""
        h = self.config.context_width
        if self.config.seeding == "lefthash":
            return h, self.lefthash_seeds(ids[h - 1 : -1]), ids[h:]
        windows = np.lib.stride_tricks.sliding_window_view(ids, h)
        return h - 1, self.selfhash_seeds(windows), windows[:, -1].copy()

    # ---- embedding -----------------------------------------------------------------------------
    def processor(self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0) -> HfKgwLogitsProcessor:
        """The biasing processor. transformers adds the bias after its warpers; given the sampling
        settings, this processor applies them first itself (then sample with neutral settings)."""
        return HfKgwLogitsProcessor(self, temperature=temperature, top_p=top_p, top_k=top_k)

    # ---- detection -----------------------------------------------------------------------------
    def scored_positions(self, ids: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(first scored position, effective seed, green, counted) of the scored tokens; counted =
        the first occurrence of its (effective seed, token) pair."""
        cfg = self.config
        h = cfg.context_width
        need = h + 1 if cfg.seeding == "lefthash" else h
        if ids.size < need:
            raise TextTooShortError(f"text has {ids.size} tokens; the hf-kgw detector needs at least {need}")
        v = self.permuted_size()
        start, seeds, tokens = self.scored(ids)
        effective = np.array([s & 0xFFFFFFFF for s in seeds], dtype=np.int64)  # what torch's CPU MT uses
        counted = first_occurrences(effective, tokens)
        green = np.array(
            [bool(t < v and self.green_mask(s, v)[t]) for s, t in zip(seeds, tokens.tolist(), strict=True)],
            dtype=bool,
        )
        return start, effective, green, counted

    def span_evidence(self, ids: np.ndarray) -> SeedGroupedCountEvidence:
        """Per-token green indicators and seeds for `detect_spans`, scored exactly as `detect` does."""
        v = self.permuted_size()
        start, effective, green, counted = self.scored_positions(ids)
        scored, hit, seeds = (
            np.zeros(ids.size, dtype=bool),
            np.zeros(ids.size, dtype=bool),
            np.zeros(ids.size, dtype=np.int64),
        )
        scored[start:], hit[start:], seeds[start:] = counted, green, effective
        return SeedGroupedCountEvidence(
            scored,
            hit,
            seeds,
            v,
            self.greenlist_size(v),
            description="hypergeometric per seed, convolved per window",
        )

    def detect(self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None) -> HfKgwDetection:
        cfg = self.config
        ids = as_token_array(token_ids, cfg.vocab_size)
        n = ids.size
        v = self.permuted_size()
        k = self.greenlist_size(v)
        start, effective, green, counted = self.scored_positions(ids)
        t = int(counted.sum())
        g = int(green[counted].sum())
        _, per_seed = np.unique(effective[counted], return_counts=True)
        sizes, groups = np.unique(per_seed, return_counts=True)
        components = [
            (sps.hypergeom.pmf(np.arange(s + 1), v, k, s), int(c)) for s, c in zip(sizes, groups, strict=True)
        ]
        null = "binomial" if sizes.max() == 1 else "hypergeometric per seed (exact convolution)"
        mask = np.full(n, -1, dtype=np.int64)
        mask[start:] = (green & counted).astype(np.int64)
        log10_p = log10_lattice_tail(components, g)
        return HfKgwDetection(
            scheme=cfg.scheme,
            p_value=10.0**log10_p,
            log10_p_value=log10_p,
            p_value_floor=lattice_tail(components, t),
            num_tokens_scored=t,
            statistic=float(g),
            green_count=g,
            z_score=z_score(g, t, k / v),
            green_fraction=g / t,
            null=null,
            token_mask=tuple(mask.tolist()),
        )


class HfKgwLogitsProcessor(LogitsProcessor):
    """transformers' `WatermarkLogitsProcessor`, on wm's shared green lists (same output).

    transformers adds the bias after its temperature / top-k / top-p warpers. Given the sampling
    settings (as `watermark.generation.generate` does), this processor applies them first itself,
    and generate() then samples with neutral settings; with `model.generate`, pass
    `watermarking_config=scheme.watermarking_config()` (or transformers' own `WatermarkingConfig`).
    """

    def __init__(self, scheme: HfKgwScheme, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0):
        self.scheme = scheme
        self.h = scheme.config.context_width
        self.delta = float(scheme.config.delta)
        self.warpers = sampling_warpers(temperature, top_p, top_k)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        if input_ids.shape[-1] < self.h:  # transformers skips the step too (with a warning)
            return scores
        s = self.scheme
        v = s.permuted_size(scores.shape[-1])
        ids = input_ids.detach().to("cpu", torch.int64)
        bias = torch.zeros(scores.shape, dtype=torch.bool)
        if s.config.seeding == "lefthash":
            for b, seed in enumerate(s.lefthash_seeds(ids[:, -1].numpy())):
                bias[b, :v] = s.green_mask(seed, v)
        else:
            k = min(SELFHASH_CANDIDATES, scores.shape[-1])
            cand = scores.detach().sort(dim=-1, descending=True).indices[:, :k].to("cpu")
            for b in range(ids.shape[0]):
                prefix = (
                    ids[b, ids.shape[1] - (self.h - 1) :].numpy() if self.h > 1 else np.zeros(0, np.int64)
                )
                windows = np.concatenate([np.tile(prefix, (k, 1)), cand[b].numpy().reshape(-1, 1)], axis=1)
                for c, seed in zip(cand[b].tolist(), s.selfhash_seeds(windows), strict=True):
                    if c < v and s.green_mask(seed, v)[c]:
                        bias[b, c] = True
        return scores + bias.to(scores.device, scores.dtype) * self.delta

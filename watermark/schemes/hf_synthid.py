"""transformers' SynthID-Text (`SynthIDTextWatermarkLogitsProcessor`), g-values bit for bit.

transformers' g-values (papers.md part 2, 1.3):
- hash(seq) = fold of h <- (h + x) * M + 1 over seq in wrapping int64, from h = 1, with
  M = 6364136223846793005; the n-gram's hash is then folded once with each layer key k_l;
- g_l = table[key_l mod S], table = randint(0, 2, (S,)) from a CPU generator seeded with
  sampling_table_seed (so g depends on torch's RNG: wm calls the same torch function).
Generation (wm's processor, same distribution as transformers'): the context is the previous
ngram_len - 1 *generated* tokens, zero-padded at the start (the prompt is not used); a context
whose hash is in the FIFO of the last context_history_size hashes is not watermarked.

Detection scores the text's n-grams, keeping each distinct context once (an unbounded seen-set:
transformers' FIFO of 1024 gives the same for texts up to that length). The null is
table-conditional: for a power-of-two S the index depends only on j = hash mod S, so with j
modelled uniform each position's g-vector is one of S known vectors; the count and the weighted
sum of N positions are the N-fold convolutions of those S-point pmfs (exact given the model).
For other table sizes each g is modelled Bernoulli(q), q = the table's fraction of ones.
Tables made on a GPU come from another generator and are not matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as sps

from ..config import SchemeConfig, check_range, register_config
from ..errors import ConfigError
from ..keying.hfkeys import SynthIDKeys
from .base import TextTooShortError, WatermarkScheme, as_token_array
from .distortion_free import FinalDistributionProcessor
from .registry import register_scheme
from .synthid import (
    MAX_NGRAM_LEN,
    SCORES,
    GScoreNull,
    SynthIDDetection,
    first_contexts,
    g_score_detection,
    layer_weights,
    sample,
    tournament,
)

MULTIPLIER = 6364136223846793005  # transformers' accumulate_hash LCG multiplier (fits in int64)
MAX_TABLE = 1 << 24  # transformers' limit on sampling_table_size
MAX_HISTORY = 1 << 20  # context FIFO entries per row (8 bytes each)
_ENUMERATE_CHUNK = 1 << 20


def accumulate_hash(h: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """transformers' hash: for each x along the last axis of data, h = (h + x) * M + 1 (int64)."""
    for i in range(data.shape[-1]):
        h = (h + data[..., i]) * MULTIPLIER + 1
    return h


@register_config("hf-synthid")
@dataclass(frozen=True)
class HfSynthIDConfig(SchemeConfig):
    """transformers' `SynthIDTextWatermarkingConfig` without its secret keys (the key carries
    them); score: "weighted" or "mean", the score whose p-value decides the verdict."""

    detection_only = ("score",)

    scheme: str = "hf-synthid"
    ngram_len: int = 5
    context_history_size: int = 1024
    sampling_table_seed: int = 0
    sampling_table_size: int = 1 << 16
    skip_first_ngram_calls: bool = False
    score: str = "weighted"

    def validate(self) -> None:
        check_range("ngram_len", self.ngram_len, 2, MAX_NGRAM_LEN)
        check_range("context_history_size", self.context_history_size, 1, MAX_HISTORY)
        if not 2 <= self.sampling_table_size <= MAX_TABLE:
            raise ConfigError(f"sampling_table_size must be in 2..2^24, got {self.sampling_table_size}")
        check_range("sampling_table_seed", self.sampling_table_seed, 0, 2**63 - 1)
        if self.score not in SCORES:
            raise ConfigError(f"unknown score {self.score!r}; known: {', '.join(SCORES)}")


@register_scheme("hf-synthid")
class HfSynthIDScheme(WatermarkScheme):
    accepts_integer_keys = True

    config_cls = HfSynthIDConfig
    config: HfSynthIDConfig
    acts_on_final_distribution = True  # transformers appends it after every warper

    def __init__(self, config: HfSynthIDConfig, key: SynthIDKeys):
        if not isinstance(key, SynthIDKeys):
            raise ConfigError(
                "the hf-synthid scheme takes transformers' SynthID keys: pass --synthid-keys 654,400,... "
                "or --key FILE written by `wm keygen --synthid-keys ...`"
            )
        super().__init__(config, key)
        self.keys = torch.tensor(key.values, dtype=torch.int64)
        gen = torch.Generator().manual_seed(config.sampling_table_seed)
        self.table = torch.randint(0, 2, (config.sampling_table_size,), generator=gen)
        self._null: GScoreNull | None = None
        self._patterns: torch.Tensor | None = None

    @property
    def layers(self) -> int:
        return len(self.keys)

    def g_from_hash(self, h: torch.Tensor) -> torch.Tensor:
        """g-values (..., m) of n-grams with hashes h (...)."""
        idx = torch.remainder((h.unsqueeze(-1) + self.keys) * MULTIPLIER + 1, self.config.sampling_table_size)
        return self.table[idx]

    @property
    def power_of_two(self) -> bool:
        s = self.config.sampling_table_size
        return s & (s - 1) == 0

    def residue_patterns(self) -> torch.Tensor:
        """Power-of-two tables: the g-vector depends on hash mod S only; entry j holds the
        g-vector of residue j as bits (bit l = g_l), so generation needs one gather per token."""
        if self._patterns is None:
            s, m = self.config.sampling_table_size, self.layers
            out = torch.empty(s, dtype=torch.int64)
            shifts = torch.arange(m, dtype=torch.int64)
            for start in range(0, s, _ENUMERATE_CHUNK):
                j = torch.arange(start, min(s, start + _ENUMERATE_CHUNK), dtype=torch.int64)
                out[start : start + len(j)] = (self.g_from_hash(j) << shifts).sum(dim=1)
            self._patterns = out.to(torch.int32) if m <= 31 else out
        return self._patterns

    def vocab_patterns(self, context_hash: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(B, V) g-vectors as bit patterns for every candidate token after each context hash."""
        h_tok = (context_hash.reshape(-1, 1) + torch.arange(vocab_size, dtype=torch.int64)) * MULTIPLIER + 1
        if self.power_of_two:
            return self.residue_patterns()[h_tok & (self.config.sampling_table_size - 1)]
        shifts = torch.arange(self.layers, dtype=torch.int64)
        return torch.stack([(self.g_from_hash(row) << shifts).sum(dim=1) for row in h_tok])

    def g_values(self, ngrams: np.ndarray) -> np.ndarray:
        """(n, m) g-values of n n-grams (n, ngram_len), as transformers' compute_g_values."""
        t = torch.from_numpy(np.array(ngrams, dtype=np.int64))
        h = accumulate_hash(torch.ones(t.shape[0], dtype=torch.int64), t)
        return self.g_from_hash(h).numpy().astype(np.int8)

    def null(self) -> GScoreNull:
        """Per-position pmfs of the g-count and the weighted sum under the table-conditional null."""
        if self._null is None:
            self._null = self._table_null()
        return self._null

    def _table_null(self) -> GScoreNull:
        s, m = self.config.sampling_table_size, self.layers
        w = torch.from_numpy(layer_weights(m))
        if self.power_of_two:  # the index depends on hash mod S only: enumerate all S residues
            shifts = torch.arange(m, dtype=torch.int64)
            g = (self.residue_patterns().to(torch.int64).unsqueeze(1) >> shifts) & 1
            counts = np.bincount(g.sum(dim=1).numpy(), minlength=m + 1)
            weighted: np.ndarray = np.bincount((g @ w).numpy(), minlength=int(w.sum()) + 1)
            return GScoreNull(
                counts / s, weighted / s, f"table-conditional (hash mod {s} uniform), exact convolution"
            )
        q = float(self.table.double().mean())
        weighted = np.ones(1)
        for c in layer_weights(m).tolist():
            nxt = np.zeros(len(weighted) + c)
            nxt[: len(weighted)] += (1 - q) * weighted
            nxt[c:] += q * weighted
            weighted = nxt
        counts = sps.binom.pmf(np.arange(m + 1), m, q)
        return GScoreNull(
            counts, weighted, f"independent Bernoulli(q = {q:.4f}) g-values (table of size {s})"
        )

    def processor(
        self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0
    ) -> HfSynthIDLogitsProcessor:
        """The tournament sampler; give it the sampling settings unless it runs after
        transformers' warpers (see `FinalDistributionProcessor`)."""
        return HfSynthIDLogitsProcessor(self, temperature=temperature, top_p=top_p, top_k=top_k)

    def detect(self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None) -> SynthIDDetection:
        cfg = self.config
        n = cfg.ngram_len
        ids = as_token_array(token_ids, cfg.vocab_size)
        if ids.size < n:
            raise TextTooShortError(f"text has {ids.size} tokens; the hf-synthid detector needs at least {n}")
        windows = np.lib.stride_tricks.sliding_window_view(ids, n)
        kept = first_contexts(windows, n - 1)
        g = self.g_values(windows[kept])
        mask = np.full(ids.size, -1, dtype=np.int64)
        mask[n - 1 :] = kept.astype(np.int64)
        return g_score_detection(cfg.scheme, g, self.null(), cfg.score, mask, exact_count=False)


class HfSynthIDLogitsProcessor(FinalDistributionProcessor):
    """transformers' SynthID-Text tournament, drawing from the same distribution as its processor.

    transformers returns the tournament's log-probabilities and lets generate() sample; this
    processor samples from them itself (as the other final-distribution decoders do), so it
    needs no particular place among the warpers.
    """

    scheme: HfSynthIDScheme

    def start(self, batch: int) -> None:
        self.history = torch.zeros(batch, self.scheme.config.context_history_size, dtype=torch.int64)

    def contexts(self, input_ids: torch.LongTensor, step: int) -> torch.Tensor:
        """The last ngram_len - 1 ids generated so far (`step` of them) in each row, zero-padded
        (transformers' state: the prompt is not used)."""
        c = self.scheme.config.ngram_len - 1
        generated = input_ids[:, input_ids.shape[1] - step :] if step else input_ids[:, :0]
        zeros = torch.zeros(input_ids.shape[0], c, dtype=torch.int64)
        return torch.cat([zeros, generated.detach().to("cpu", torch.int64)], dim=1)[:, -c:]

    def pick(self, input_ids: torch.LongTensor, step: int, log_probs: torch.Tensor) -> torch.Tensor:
        return sample(self.distribution(input_ids, step, log_probs))

    def distribution(self, input_ids: torch.LongTensor, step: int, log_probs: torch.Tensor) -> torch.Tensor:
        """The next-token distribution transformers' processor gives (updates the context FIFO)."""
        s = self.scheme
        probs = log_probs.exp()
        if s.config.skip_first_ngram_calls and step + 1 < s.config.ngram_len:
            return probs
        ctx_hash = accumulate_hash(
            torch.ones(input_ids.shape[0], dtype=torch.int64), self.contexts(input_ids, step)
        )
        repeated = (self.history == ctx_hash[:, None]).any(dim=1)
        self.history = torch.cat([ctx_hash[:, None], self.history[:, :-1]], dim=1)
        fresh = torch.nonzero(~repeated).flatten()
        if fresh.numel():
            patterns = s.vocab_patterns(ctx_hash[fresh], probs.shape[-1]).to(probs.device)
            rows = fresh.to(probs.device)
            probs[rows] = tournament(probs[rows], patterns, s.layers)
        return probs

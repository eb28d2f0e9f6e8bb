"""Keyring detection batched over the entries of one scheme family (issue 30 item 3).

Entries whose schemes differ only in their keys (same class, same config but the key
fingerprint, same tokenizer) share everything that does not depend on the key: the token
windows, their distinct contexts, which (context, token) pairs occur first, the key-free parts of
the statistic, and the p-value of equal arguments (a count of 37 green of 150 has one p-value
whatever the key). Only the seeds (one keyed BLAKE2b per distinct context and key,
`keying.prf_batch`) and the coin flips are computed per key, as (entries, tokens) arrays.

Each entry's log10 p-value and scored-token count are what its own `scheme.detect()` gives, bit
for bit (tests/test_keyring_batch.py): the same PRF bits, the same integer counts, the same
p-value functions on the same arguments, Gumbel's per-token logs on the same 1-D layout. One
detail is checked rather than assumed: detection counts the first occurrence of each distinct
(seed, token) pair, which equals the first (context, token) pair unless two distinct contexts
got the same 64-bit seed; an entry where that happens gets its own mask.
Batched: green lists (kgw lefthash and selfhash, unigram), gumbel, synthid. Everything else, and
any text a batch cannot score as a whole (too short, ids out of range), goes through `detect()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import WmError
from ..keying import prf
from ..keying.prf_batch import ManyKeySeeds
from ..schemes.base import as_token_array, first_occurrences
from ..schemes.greenlist import GreenListScheme
from ..schemes.gumbel import GumbelScheme
from ..schemes.synthid import SynthIDScheme, first_contexts, layer_weights
from ..statistics import pvalues

MEMO_MAX = 1 << 16  # p-values kept per family; cleared when full
SEED_TABLE_MAX = 1 << 23  # one-token contexts: a (entries, vocabulary) seed table up to this size


class _Memo:
    """p-value functions memoised on their (integer) arguments: the same call, the same float."""

    def __init__(self) -> None:
        self.values: dict[tuple, float] = {}

    def __call__(self, fn: Callable[..., float], *args: Any) -> float:
        k = (fn.__name__, *args)
        if k not in self.values:
            if len(self.values) >= MEMO_MAX:
                self.values.clear()
            self.values[k] = fn(*args)
        return self.values[k]


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows, inverse) of a 2-D integer array: rows[i] == distinct[inverse[i]]."""
    if rows.shape[1] == 1:
        uniq, inverse = np.unique(rows[:, 0], return_inverse=True)
        return uniq.reshape(-1, 1), inverse.reshape(-1)
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1)


def _injective(seeds: np.ndarray) -> np.ndarray:
    """Per row of (entries, distinct contexts) seeds: True when no two contexts share a seed."""
    if seeds.shape[1] < 2:
        return np.ones(seeds.shape[0], dtype=bool)
    s = np.sort(seeds, axis=1)
    return ~(s[:, 1:] == s[:, :-1]).any(axis=1)


def _pair_counted(seeds_u: np.ndarray, inverse: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """(entries, positions) first-occurrence masks of (seed, token) pairs, seeds given per distinct
    context (`seeds_u`, expanded by `inverse`): one shared mask where seeds separate contexts."""
    shared = first_occurrences(inverse.astype(np.int64), tokens)
    counted = np.broadcast_to(shared, (seeds_u.shape[0], len(tokens))).copy()
    for e in np.flatnonzero(~_injective(seeds_u)):  # a 64-bit seed collision: this entry's own mask
        counted[e] = first_occurrences(seeds_u[e, inverse], tokens)
    return counted


class FamilyBatch(ABC):
    """Entries of one scheme class and config (keys aside) on one tokenizer."""

    def __init__(self, schemes: Sequence[Any], tokenizer: str):
        self.schemes = list(schemes)
        self.tokenizer = tokenizer
        self.config = self.schemes[0].config
        self.seeds = ManyKeySeeds([s._subkey for s in self.schemes])
        self.memo = _Memo()

    def score(self, token_ids: np.ndarray, rows: np.ndarray) -> list[tuple[float, int]] | None:
        """(log10 p-value, tokens scored) of the entries `rows` (positions in this batch), as their
        own `detect()` gives them; None when the text must go entry by entry."""
        try:
            ids = as_token_array(token_ids, self.config.vocab_size)
        except WmError:
            return None
        if ids.size < self.min_tokens:
            return None
        return self._score(ids, np.asarray(rows, dtype=np.int64))

    @property
    @abstractmethod
    def min_tokens(self) -> int:
        """The shortest text the family's own detect() scores."""

    @abstractmethod
    def _score(self, ids: np.ndarray, rows: np.ndarray) -> list[tuple[float, int]]:
        """(log10 p-value, tokens scored) of the entries `rows` on a checked text."""


class GreenListBatch(FamilyBatch):
    """kgw (lefthash, selfhash) and unigram: green counts of every entry from shared windows."""

    def __init__(self, schemes: Sequence[Any], tokenizer: str):
        super().__init__(schemes, tokenizer)
        cfg = self.config
        self.h = cfg.prefix_length
        self.fixed = np.array(
            [s.seeds_for(np.zeros((1, 0), dtype=np.int64))[0] for s in self.schemes], dtype=np.int64
        ) if cfg.context_width == 0 else None  # fmt: skip
        self.table: np.ndarray | None = None  # one-token lefthash contexts: seeds by token id
        self.filled = np.zeros(0, dtype=bool)
        self.list_sizes: dict[int, tuple[int, int]] = {}

    @property
    def min_tokens(self) -> int:
        return self.h + 1

    def _score(self, ids: np.ndarray, rows: np.ndarray) -> list[tuple[float, int]]:
        cfg = self.config
        windows = np.lib.stride_tricks.sliding_window_view(ids, self.h + 1)
        tokens = windows[:, self.h].copy()
        seeds, counted = self._seeds_counted(windows, tokens, rows)
        green = prf.below(torch.from_numpy(seeds), torch.from_numpy(tokens).reshape(1, -1), cfg.gamma)
        t = counted.sum(axis=1)
        g = (green.numpy() & counted).sum(axis=1)
        out = []
        for r, ti, gi in zip(rows.tolist(), t.tolist(), g.tolist(), strict=True):
            out.append((self._log10_p(r, ids, gi, ti), ti))
        return out

    def _log10_p(self, row: int, ids: np.ndarray, g: int, t: int) -> float:
        """The same p-value call `GreenListScheme.detect` makes for these counts."""
        cfg = self.config
        if cfg.context_width != 0:
            return self.memo(pvalues.log10_binomial_tail, g, t, cfg.gamma)
        vocab, k = self._list_size(row, ids)
        if cfg.count_repeats:
            return self.memo(pvalues.log10_binomial_tail, g, t, k / vocab)
        return self.memo(pvalues.log10_hypergeom_tail, g, vocab, k, t)

    def _list_size(self, row: int, ids: np.ndarray) -> tuple[int, int]:
        if self.config.vocab_size is None:  # the vocabulary is read off the text: no caching
            return self.schemes[row].fixed_list_size(ids)
        if row not in self.list_sizes:
            self.list_sizes[row] = self.schemes[row].fixed_list_size(ids)
        return self.list_sizes[row]

    def _seeds_counted(
        self, windows: np.ndarray, tokens: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(entries, positions) seeds deciding each token and the first-occurrence masks."""
        cfg, n = self.config, len(tokens)
        if cfg.seeding == "selfhash":
            seeds = self._selfhash_seeds(windows, rows)
            counted = np.ones(seeds.shape, dtype=bool)
            if not cfg.count_repeats:  # a min-hash is no function of the context alone: per entry
                counted = np.stack([first_occurrences(s, tokens) for s in seeds])
            return seeds, counted
        if self.fixed is not None:  # unigram: one seed per entry
            seeds = np.repeat(self.fixed[rows].reshape(-1, 1), n, axis=1)
            first = first_occurrences(seeds[0], tokens)
            counted = np.broadcast_to(np.ones(n, bool) if cfg.count_repeats else first, seeds.shape)
            return seeds, counted
        uniq, inverse = distinct_rows(windows[:, : self.h])
        seeds_u = self._lefthash_seeds(uniq, rows)
        seeds = seeds_u[:, inverse]
        if cfg.count_repeats:
            return seeds, np.ones(seeds.shape, dtype=bool)
        return seeds, _pair_counted(seeds_u, inverse, tokens)

    def _lefthash_seeds(self, uniq: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Seeds of distinct contexts; one-token contexts through a table by token id."""
        if uniq.shape[1] != 1 or uniq.min() < 0:
            return self.seeds(uniq, rows)
        ids = uniq[:, 0]
        size = max(int(ids.max()) + 1, int(self.config.vocab_size or 0))
        if size * len(self.schemes) > SEED_TABLE_MAX:
            return self.seeds(uniq, rows)
        if self.table is None or self.table.shape[0] < size:
            self.table = np.zeros((size, len(self.schemes)), dtype=np.int64)  # token id -> every key's seed
            self.filled = np.zeros(size, dtype=bool)
        missing = ids[~self.filled[ids]]
        if missing.size:
            self.table[missing] = self.seeds(missing.reshape(-1, 1)).T
            self.filled[missing] = True
        picked = self.table[ids]  # (distinct contexts, keys): rows gathered, never the whole table
        return (picked if len(rows) == len(self.schemes) else picked[:, rows]).T

    def _selfhash_seeds(self, windows: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """min over the window of seed(x_i, v), v the window's last id (`selfhash_seeds`)."""
        n, h = windows.shape
        cand = windows[:, -1].reshape(-1, 1)
        pairs = np.stack([windows, np.repeat(cand, h, axis=1)], axis=2).reshape(n * h, 2)
        uniq, inverse = distinct_rows(pairs)
        return self.seeds(uniq, rows)[:, inverse].reshape(len(rows), n, h).min(axis=2)


class GumbelBatch(FamilyBatch):
    """gumbel: sums of -log(1 - r) over first (context, token) pairs, per entry."""

    @property
    def min_tokens(self) -> int:
        return self.config.context_width + 1

    def _score(self, ids: np.ndarray, rows: np.ndarray) -> list[tuple[float, int]]:
        h = self.config.context_width
        windows = np.lib.stride_tricks.sliding_window_view(ids, h + 1)
        tokens = windows[:, h].copy()
        uniq, inverse = distinct_rows(windows[:, :h])
        seeds_u = self.seeds(uniq, rows)
        counted = _pair_counted(seeds_u, inverse, tokens)
        r = prf.uniforms(torch.from_numpy(seeds_u[:, inverse]), torch.from_numpy(tokens).reshape(1, -1))
        out = []
        for e in range(len(rows)):
            # one 1-D row at a time, as detect() computes it: torch's vectorised log1p and its
            # scalar tail may differ in the last bit, and which elements take the tail depends on
            # the length of the array
            scores = (-torch.log1p(-r[e])).numpy()
            t = int(counted[e].sum())
            out.append((pvalues.log10_gamma_tail(float(scores[counted[e]].sum()), t), t))
        return out


class SynthIDBatch(FamilyBatch):
    """synthid: g-values of every entry at the first occurrence of each context."""

    def __init__(self, schemes: Sequence[Any], tokenizer: str):
        super().__init__(schemes, tokenizer)
        m = self.config.num_layers
        self.weights = layer_weights(m)
        self.layers = np.arange(m, dtype=np.uint64)
        self.null = self.schemes[0]._null

    @property
    def min_tokens(self) -> int:
        return self.config.ngram_len

    def _score(self, ids: np.ndarray, rows: np.ndarray) -> list[tuple[float, int]]:
        cfg = self.config
        c = cfg.ngram_len - 1
        windows = np.lib.stride_tricks.sliding_window_view(ids, c + 1)
        kept = first_contexts(windows, c)  # distinct contexts, key-free
        tokens = windows[kept, c].copy()
        seeds = self.seeds(windows[kept, :c], rows)
        bits = prf.mix(torch.from_numpy(seeds), torch.from_numpy(tokens).reshape(1, -1)).numpy()
        per_layer = ((bits.view(np.uint64)[:, :, None] >> self.layers) & np.uint64(1)).sum(axis=1)
        per_layer = per_layer.astype(np.int64)  # (entries, layers): how many g = 1 per layer
        n, m = len(tokens), cfg.num_layers
        out = []
        for count, wsum in zip(
            per_layer.sum(axis=1).tolist(), (per_layer @ self.weights).tolist(), strict=True
        ):
            if cfg.score == "weighted":
                lp = self.memo(self._weighted_tail, n, wsum)
            else:
                lp = self.memo(pvalues.log10_binomial_tail, count, n * m, 0.5)
            out.append((lp, n))
        return out

    def _weighted_tail(self, n: int, wsum: int) -> float:
        return pvalues.log10_lattice_tail([(self.null.weighted_pmf, n)], wsum)


BATCHES: dict[type, type[FamilyBatch]] = {
    GreenListScheme: GreenListBatch,
    GumbelScheme: GumbelBatch,
    SynthIDScheme: SynthIDBatch,
}


def family_key(scheme: Any, tokenizer: str) -> tuple | None:
    """Entries with equal keys here share a batch; None: this scheme is tested on its own."""
    if type(scheme) not in BATCHES:  # exact classes: a subclass may score differently
        return None
    config = scheme.config.to_dict()
    config.pop("key_fingerprint", None)
    return (type(scheme), tokenizer, tuple(sorted((k, repr(v)) for k, v in config.items())))


def plan_batches(members: Sequence[tuple[Any, str]]) -> list[tuple[list[int], FamilyBatch]]:
    """Group (scheme, tokenizer) members into family batches: (member positions, batch)."""
    groups: dict[tuple, list[int]] = {}
    for i, (scheme, tok) in enumerate(members):
        k = family_key(scheme, tok)
        if k is not None:
            groups.setdefault(k, []).append(i)
    out = []
    for k, idx in groups.items():
        cls = BATCHES[k[0]]
        out.append((idx, cls([members[i][0] for i in idx], k[1])))
    return out

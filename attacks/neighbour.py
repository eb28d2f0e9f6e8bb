"""Embedding-neighbour substitution: a synonym attack that needs no word list.

A fraction of the text's word tokens is replaced by their nearest neighbours (cosine) in the
model's input-embedding matrix. Only "word" tokens take part, on both sides: tokens whose text
is ASCII letters, optionally after one leading space; punctuation, digits, byte pieces and
special tokens are never chosen and never introduced. A replacement keeps the leading-space
property and the capitalisation of the token it replaces, so words do not run together, and it
is never the same word in another case (" Last" for " last" is the nearest neighbour of most
words but no substitution at all to a reader). Neighbours of all chosen
positions are found with one batched matrix product per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class NeighbourIndex:
    """Normalised input embeddings plus the masks saying which tokens are words.

    `embeddings` is the [V, d] input-embedding matrix (e.g. `model.get_input_embeddings().weight`);
    `tokenizer` decides which of the V ids are word tokens. Without a tokenizer every id counts
    as its own word: neighbours are then simply the nearest other tokens.
    """

    def __init__(self, embeddings: torch.Tensor, tokenizer: Any | None, chunk_size: int = 256):
        emb = embeddings.detach().float().cpu()
        self.unit = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-8)
        self.vocab_size = emb.shape[0]
        self.chunk_size = chunk_size
        if tokenizer is None:
            v = self.vocab_size
            self.is_word = np.ones(v, dtype=bool)
            self.has_space = np.zeros(v, dtype=bool)
            self.is_capital = np.zeros(v, dtype=bool)
            self.word_group = np.arange(v, dtype=np.int64)
        else:
            self.is_word, self.has_space, self.is_capital, self.word_group = word_token_masks(
                tokenizer, self.vocab_size
            )
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any | None) -> NeighbourIndex:
        return cls(model.get_input_embeddings().weight, tokenizer)

    def neighbours(self, token_ids: Sequence[int], k: int = 1) -> np.ndarray:
        """[len(token_ids), k] nearest word tokens with the same leading space and capitalisation,
        other words only (the token itself and its case variants excluded)."""
        ids = [int(t) for t in token_ids]
        todo = sorted({t for t in ids if (t, k) not in self._cache})
        words = torch.from_numpy(self.is_word)
        space = torch.from_numpy(self.has_space)
        cap = torch.from_numpy(self.is_capital)
        group = torch.from_numpy(self.word_group)
        for start in range(0, len(todo), self.chunk_size):
            chunk = torch.tensor(todo[start : start + self.chunk_size], dtype=torch.long)
            sims = self.unit[chunk] @ self.unit.T  # [c, V]
            allowed = words[None, :] & (space[None, :] == space[chunk][:, None])
            allowed &= cap[None, :] == cap[chunk][:, None]
            allowed &= group[None, :] != group[chunk][:, None]
            sims = sims.masked_fill(~allowed, float("-inf"))
            top = torch.topk(sims, k, dim=1).indices.numpy()
            for t, row in zip(chunk.tolist(), top, strict=True):
                self._cache[(t, k)] = row
        if not ids:
            return np.zeros((0, k), dtype=np.int64)
        return np.stack([self._cache[(t, k)] for t in ids])


def word_token_masks(
    tokenizer: Any, vocab_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(is_word, has_leading_space, is_capitalised, word group) over the vocabulary.

    Special tokens are not words; tokens in the same word group spell the same word up to case.
    """
    pieces = tokenizer.batch_decode([[i] for i in range(vocab_size)])
    is_word = np.zeros(vocab_size, dtype=bool)
    has_space = np.zeros(vocab_size, dtype=bool)
    is_capital = np.zeros(vocab_size, dtype=bool)
    lowered = []
    for i, piece in enumerate(pieces):
        body = piece[1:] if piece.startswith(" ") else piece
        is_word[i] = bool(body) and body.isascii() and body.isalpha()
        has_space[i] = piece.startswith(" ")
        is_capital[i] = body[:1].isupper()
        lowered.append(body.lower())
    special = [i for i in tokenizer.all_special_ids if i < vocab_size]
    is_word[special] = False
    _, group = np.unique(np.array(lowered, dtype=object), return_inverse=True)
    return is_word, has_space, is_capital, group.astype(np.int64)


def neighbour_substitute(
    ids: Sequence[int],
    rate: float,
    index: NeighbourIndex,
    rng: np.random.Generator,
    k: int = 1,
) -> list[int]:
    """Replace floor(rate * #word tokens) word tokens, chosen uniformly, by an embedding neighbour.

    With `k` > 1 the replacement is drawn uniformly from the k nearest neighbours.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    out = [int(t) for t in ids]
    eligible = [i for i, t in enumerate(out) if 0 <= t < index.vocab_size and index.is_word[t]]
    m = int(np.floor(rate * len(eligible) + 1e-9))
    if m == 0:
        return out
    pos = np.sort(rng.choice(len(eligible), size=m, replace=False))
    positions = [eligible[p] for p in pos]
    nbrs = index.neighbours([out[i] for i in positions], k)
    pick = rng.integers(k, size=m) if k > 1 else np.zeros(m, dtype=np.int64)
    for i, row, j in zip(positions, nbrs, pick, strict=True):
        out[i] = int(row[j])
    return out

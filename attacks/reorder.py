"""Reordering attacks: adjacent word swaps (MarkMyWords' swap) and sentence scrambling (WaterPark).

Both move text without changing it: `swap_words` keeps the multiset of words, `scramble` the
multiset of sentences, and every separator (spaces, punctuation, paragraph breaks) stays where
it was.

- `swap_words(text, rate, rng)`: MarkMyWords swaps each adjacent pair of words in a sentence
  with some probability. Here `rate` is the fraction of the words that move: floor(rate * n / 2)
  disjoint pairs of adjacent, different words (separated by spaces only, so never across a
  sentence end or punctuation) trade places, the pairs taken in a uniformly random order.
- `scramble(text, rate, rng)`: a uniformly chosen fraction `rate` of the sentences (all by
  default) is put in a uniformly random order in the slots they held.
"""

from __future__ import annotations

import re

import numpy as np

from .typos import choose
from .word_edits import is_word, split_words

# a sentence ends at . ! ? before a capital or a digit, or at a paragraph break
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n\s*")


def swappable_pairs(pieces: list[str]) -> list[int]:
    """Indices w of word pieces whose next word comes after whitespace only (no paragraph break)
    and differs from it: the pairs (w, next word) a swap may exchange."""
    words = [i for i, p in enumerate(pieces) if is_word(p)]
    pairs = []
    for a, b in zip(words, words[1:], strict=False):
        between = pieces[a + 1 : b]
        spaces_only = len(between) == 1 and between[0].isspace() and "\n\n" not in between[0]
        if spaces_only and pieces[a] != pieces[b]:
            pairs.append(a)
    return pairs


def swap_words(text: str, rate: float, rng: np.random.Generator) -> str:
    """Swap floor(rate * words / 2) disjoint pairs of adjacent words (rate = fraction of words moved)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    pieces = split_words(text)
    n_words = sum(1 for p in pieces if is_word(p))
    want = int(np.floor(rate * n_words / 2 + 1e-9))
    candidates = swappable_pairs(pieces)
    taken: set[int] = set()
    swaps = 0
    for j in rng.permutation(len(candidates)) if want else []:
        a = candidates[int(j)]
        b = a + 2  # word, whitespace, word
        if swaps == want:
            break
        if a in taken or b in taken:
            continue
        pieces[a], pieces[b] = pieces[b], pieces[a]
        taken.update((a, b))
        swaps += 1
    return "".join(pieces)


def split_sentences(text: str) -> tuple[list[str], list[str]]:
    """(sentences, the separators between them, one fewer); the text is
    lead + s0 + sep0 + s1 + ... + trail with the outer whitespace kept by `scramble`."""
    sentences, seps, prev = [], [], 0
    for m in _BOUNDARY.finditer(text):
        if m.start() > prev:
            sentences.append(text[prev : m.start()])
            seps.append(m.group(0))
        elif seps:
            seps[-1] += m.group(0)
        prev = m.end()
    sentences.append(text[prev:])
    return sentences, seps


def scramble(text: str, rate: float, rng: np.random.Generator) -> str:
    """Put a uniformly chosen fraction `rate` of the sentences in a uniformly random order."""
    core = text.strip()
    if not core:
        return text
    start = text.index(core[0])
    lead, trail = text[:start], text[start + len(core) :]
    sentences, seps = split_sentences(core)
    chosen = choose(len(sentences), rate, rng)
    order = [chosen[int(j)] for j in rng.permutation(len(chosen))] if len(chosen) > 1 else chosen
    moved = list(sentences)
    for slot, src in zip(chosen, order, strict=True):
        moved[slot] = sentences[src]
    out = [lead, moved[0]]
    for sep, sentence in zip(seps, moved[1:], strict=True):
        out += [sep, sentence]
    return "".join(out) + trail

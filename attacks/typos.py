"""Typos: keyboard slips inside words (MarkMyWords' and WaterPark's character-level attack).

MarkMyWords (Piet et al. 2023) takes HELM's typo perturbation: each letter is replaced, with some
probability, by a neighbouring key on a QWERTY keyboard (`typo_chars`, the `typo:char` mode; here
an exact fraction of the letters, chosen uniformly). WaterPark (Liang et al. 2024) and the usual
typo models add the other slips a typist makes; `typo_words` (the default `typo:word` mode) gives
a uniformly chosen fraction of the words one slip each, drawn uniformly among:

- substitution: a letter becomes one of its QWERTY neighbours;
- insertion: a neighbour of a letter is typed right after it (a "fat finger");
- deletion: a letter is dropped (words of two letters or more);
- transposition: two adjacent, different letters trade places.

Slips touch the letters before an apostrophe only. Each slip is one edit in the
Damerau-Levenshtein sense, so a hit word is at distance exactly 1 from the original and every
other character of the text is left alone. Letters keep their case.
"""

from __future__ import annotations

import numpy as np

from .word_edits import is_word, split_words

# QWERTY neighbours (same row and the rows above and below), as HELM's table has them
QWERTY_NEIGHBOURS: dict[str, str] = {
    "q": "was",
    "w": "qesad",
    "e": "wsdfr",
    "r": "edfgt",
    "t": "rfghy",
    "y": "tghju",
    "u": "yhjki",
    "i": "ujklo",
    "o": "iklp",
    "p": "ol",
    "a": "qwsz",
    "s": "weadzx",
    "d": "erfcxs",
    "f": "rtgvcd",
    "g": "tyhbvf",
    "h": "yujnbg",
    "j": "uikmnh",
    "k": "iolmj",
    "l": "opk",
    "z": "asx",
    "x": "sdcz",
    "c": "dfvx",
    "v": "fgbc",
    "b": "ghnv",
    "n": "hjmb",
    "m": "jkn",
}
OPERATIONS = ("substitute", "insert", "delete", "transpose")


def choose(n: int, rate: float, rng: np.random.Generator) -> list[int]:
    """floor(rate * n) distinct indices of range(n), uniformly at random, in increasing order."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    k = int(np.floor(rate * n + 1e-9))
    return sorted(int(i) for i in rng.choice(n, size=k, replace=False)) if k else []


def neighbour(letter: str, rng: np.random.Generator) -> str:
    """A QWERTY neighbour of an ASCII letter, in the letter's case."""
    keys = QWERTY_NEIGHBOURS[letter.lower()]
    new = keys[int(rng.integers(len(keys)))]
    return new.upper() if letter.isupper() else new


def _letters(word: str) -> list[int]:
    """Positions a slip may touch: the letters before any apostrophe ("don" of "don't"), so the
    result stays one word ("I'm" never becomes "'m")."""
    stem = word.split("'", 1)[0]
    return [i for i, c in enumerate(stem) if c.lower() in QWERTY_NEIGHBOURS]


def _transposable(word: str, letters: list[int]) -> list[int]:
    """Positions i where letters i and i + 1 are adjacent and differ (a swap changes the word)."""
    at = set(letters)
    return [i for i in letters if i + 1 in at and word[i] != word[i + 1]]


def _possible(word: str, letters: list[int]) -> list[str]:
    ops = ["substitute", "insert"] if letters else []
    if len(letters) >= 2:
        ops.append("delete")
    if _transposable(word, letters):
        ops.append("transpose")
    return ops


def typo(word: str, rng: np.random.Generator, operation: str | None = None) -> str:
    """One keyboard slip in `word` (an operation drawn uniformly among those the word allows)."""
    letters = _letters(word)
    ops = _possible(word, letters)
    if not ops:
        return word
    op = operation if operation in ops else ops[int(rng.integers(len(ops)))]
    if op == "transpose":
        pairs = _transposable(word, letters)
        i = pairs[int(rng.integers(len(pairs)))]
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    i = letters[int(rng.integers(len(letters)))]
    if op == "substitute":
        return word[:i] + neighbour(word[i], rng) + word[i + 1 :]
    if op == "insert":
        return word[: i + 1] + neighbour(word[i], rng) + word[i + 1 :]
    return word[:i] + word[i + 1 :]


def typo_words(text: str, rate: float, rng: np.random.Generator) -> str:
    """One slip in each of a uniformly chosen fraction `rate` of the words."""
    pieces = split_words(text)
    words = [i for i, p in enumerate(pieces) if is_word(p)]
    for w in choose(len(words), rate, rng):
        pieces[words[w]] = typo(pieces[words[w]], rng)
    return "".join(pieces)


def typo_chars(text: str, rate: float, rng: np.random.Generator) -> str:
    """HELM's typos: a uniformly chosen fraction `rate` of the ASCII letters become a QWERTY neighbour."""
    chars = list(text)
    letters = [i for i, c in enumerate(chars) if c.lower() in QWERTY_NEIGHBOURS]
    for j in choose(len(letters), rate, rng):
        chars[letters[j]] = neighbour(chars[letters[j]], rng)
    return "".join(chars)

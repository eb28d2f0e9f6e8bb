"""Word-level random edits that keep the text readable: substitute or delete whole words.

Token-level edits (`attacks.edits`) put arbitrary vocabulary entries into the text, which a
reader would notice at once. These act on words instead: the text is split into words,
whitespace and punctuation, a uniformly random fraction `rate` of the words is chosen, and each
is deleted or replaced by a common English word (a small built-in synonym table first, so
"big" becomes "large" where it can). Whitespace and punctuation are kept, capitalisation is
copied, and the same seed gives the same result.
"""

from __future__ import annotations

import re

import numpy as np

# words, whitespace runs, and single other characters; joining the pieces gives the text back
_PIECES = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\s+|[^A-Za-z\s]")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?\Z")

# both directions are used; kept small on purpose (no external word list)
_SYNONYM_PAIRS = """
big large|small little|fast quick|begin start|end finish|help assist|show reveal|buy purchase
happy glad|sad unhappy|smart clever|hard difficult|easy simple|old ancient|new fresh|many numerous
often frequently|maybe perhaps|also too|very really|said stated|think believe|get obtain
make create|use employ|need require|want wish|try attempt|look appear|find discover|keep retain
give provide|tell inform|ask request|answer reply|choose select|build construct|fix repair
idea notion|job task|place location|part portion|way method|kind type|rule regulation
important crucial|common usual|strong powerful|weak feeble|rich wealthy|quiet silent|calm peaceful
house home|road street|car vehicle|child kid|people folks|world globe|town city|shop store
story tale|problem issue|result outcome|reason cause|chance opportunity|goal aim|choice option
"""
SYNONYMS: dict[str, str] = {}
for _pair in re.split(r"[|\n]", _SYNONYM_PAIRS.strip()):
    _a, _b = _pair.split()
    SYNONYMS.setdefault(_a, _b)
    SYNONYMS.setdefault(_b, _a)

# replacements for words without a synonym: frequent, neutral words
_COMMON = """the a of and to in is it that for on with as was at by this be from are or have an they
    which one you had not but all were we when there can been has more their if will would so no
    what up out about into than them only other its some could time these two may then do first
    any like now my such our over even most made after also did many before must through years
    where much your way well down should because each just those people how too little state good
    very make world still own see men work long get here between both life being under never day
    same another know while last might us great old year off come since against go came right
    used take three"""
COMMON_WORDS: tuple[str, ...] = tuple(_COMMON.split())


def split_words(text: str) -> list[str]:
    """The text as pieces (words, whitespace runs, other characters); "".join gives it back."""
    return _PIECES.findall(text)


def is_word(piece: str) -> bool:
    return bool(_WORD.match(piece))


def _choose(num_words: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """floor(rate * num_words) distinct word indices, uniformly at random, in order."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    k = int(np.floor(rate * num_words + 1e-9))
    return np.sort(rng.choice(num_words, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)


def _match_case(word: str, like: str) -> str:
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def replacement_for(word: str, rng: np.random.Generator) -> str:
    """A synonym when the table has one, else a different common word; capitalisation copied."""
    low = word.lower()
    new = SYNONYMS.get(low)
    if new is None:
        new = low
        while new == low:
            new = COMMON_WORDS[int(rng.integers(len(COMMON_WORDS)))]
    return _match_case(new, word)


def word_substitute(text: str, rate: float, rng: np.random.Generator) -> str:
    """Replace a fraction `rate` of the words (chosen uniformly) by a synonym or a common word."""
    pieces = split_words(text)
    word_pos = [i for i, p in enumerate(pieces) if is_word(p)]
    for w in _choose(len(word_pos), rate, rng):
        i = word_pos[w]
        pieces[i] = replacement_for(pieces[i], rng)
    return "".join(pieces)


def word_delete(text: str, rate: float, rng: np.random.Generator) -> str:
    """Delete a fraction `rate` of the words (chosen uniformly) with the whitespace before each.

    A deleted sentence-initial word passes its capital letter on to the next word.
    """
    pieces = split_words(text)
    word_pos = [i for i, p in enumerate(pieces) if is_word(p)]
    chosen = _choose(len(word_pos), rate, rng)
    drop: set[int] = set()
    for w in chosen:
        i = word_pos[w]
        drop.add(i)
        if i > 0 and pieces[i - 1].isspace():
            drop.add(i - 1)
        elif i + 1 < len(pieces) and pieces[i + 1].isspace():
            drop.add(i + 1)  # the text's first word: drop the space after it instead
        if pieces[i][:1].isupper():
            nxt = _next_word(pieces, i)
            if nxt is not None:
                pieces[nxt] = pieces[nxt][:1].upper() + pieces[nxt][1:]
    return "".join(p for i, p in enumerate(pieces) if i not in drop).strip()


def _next_word(pieces: list[str], i: int) -> int | None:
    """The index of the word right after piece i when only whitespace separates them."""
    j = i + 1
    while j < len(pieces) and pieces[j].isspace():
        j += 1
    return j if j < len(pieces) and is_word(pieces[j]) else None

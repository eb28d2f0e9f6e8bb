"""Spelling-level attacks of MarkMyWords (Piet et al. 2023, from HELM) and WaterPark (Liang et al. 2024).

- `misspell`: words found in a list of common misspellings (`data/misspellings.tsv`, correct ->
  misspelled, written for this project) are replaced by a misspelling; a uniformly chosen
  fraction of the eligible words (the words the list knows), case copied.
- `contract` / `expand`: "do not" <-> "don't" and the like, from one table read both ways
  (`CONTRACTIONS`, one expansion per contraction, so expanding what was contracted gives the
  text back); a fraction of the sites, case kept ("Do not" -> "Don't", "DO NOT" -> "DON'T").
- `lowercase`: the whole text (rate 1, as MarkMyWords does), or a fraction of the words that
  have a capital letter.

Every choice is uniform among the sites and drawn from the caller's generator.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from wm_toolkit.watermark.errors import InputError

from .resources import data_text
from .typos import choose
from .word_edits import is_word, split_words

MISSPELLINGS_FILE = "misspellings.tsv"

# contraction, expansion (lowercase; one expansion each, so the table reads both ways)
_TABLE = """
don't do not|doesn't does not|didn't did not|isn't is not|aren't are not|wasn't was not
weren't were not|haven't have not|hasn't has not|hadn't had not|won't will not|wouldn't would not
can't cannot|couldn't could not|shouldn't should not|mustn't must not|mightn't might not
needn't need not|shan't shall not|i'm i am|i've i have|i'll i will|i'd i would|you're you are
you've you have|you'll you will|you'd you would|he's he is|he'll he will|he'd he would
she's she is|she'll she will|she'd she would|it's it is|it'll it will|it'd it would|we're we are
we've we have|we'll we will|we'd we would|they're they are|they've they have|they'll they will
they'd they would|that's that is|that'll that will|that'd that would|there's there is
there'll there will|here's here is|what's what is|what're what are|who's who is|who'll who will
where's where is|when's when is|why's why is|how's how is|let's let us|could've could have
should've should have|would've would have|might've might have|must've must have|y'all you all
"""
CONTRACTIONS: dict[str, str] = {}
for _entry in re.split(r"[|\n]", _TABLE.strip()):
    _short, _long = _entry.split(" ", 1)
    CONTRACTIONS[_short] = _long
EXPANSIONS: dict[str, str] = {v: k for k, v in CONTRACTIONS.items()}
assert len(EXPANSIONS) == len(CONTRACTIONS), "one expansion per contraction"


def _alternation(forms: list[str], apostrophe: bool, tail: str = "") -> re.Pattern[str]:
    parts = []
    for form in sorted(forms, key=len, reverse=True):  # longest first: "he would" before "he"
        part = re.escape(form)
        if apostrophe:
            part = part.replace("'", "['\u2019]")  # typewriter or typographic apostrophe
        parts.append(part)
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b" + tail, re.IGNORECASE)


_CONTRACTED = _alternation(list(CONTRACTIONS), apostrophe=True)
# as HELM: only before whitespace ("it is." stays, "it's." would not read)
_EXPANDED = _alternation(list(EXPANSIONS), apostrophe=False, tail=r"(?=\s)")


def match_case(source: str, target: str) -> str:
    """`target` (lowercase) in the case pattern of `source`: lower, UPPER or Capitalised."""
    letters = [c for c in source if c.isalpha()]
    if all(c.islower() for c in letters):
        return target
    if all(c.isupper() for c in letters) and len(letters) > 1:
        return target.upper()
    if source[:1].isupper():
        return target[:1].upper() + target[1:]
    return target


def _replace_sites(
    text: str, pattern: re.Pattern[str], table: dict[str, str], rate: float, rng: np.random.Generator
) -> str:
    sites = list(pattern.finditer(text))

    def swap(m: re.Match[str]) -> str:
        return match_case(m.group(0), table[m.group(0).lower().replace("\u2019", "'")])

    return _rewrite(text, [sites[j] for j in choose(len(sites), rate, rng)], swap)


def _rewrite(text: str, matches: list[re.Match[str]], new: Callable[[re.Match[str]], str]) -> str:
    """The text with each of `matches` (in order, not overlapping) replaced by new(match)."""
    out, prev = [], 0
    for m in matches:
        out += [text[prev : m.start()], new(m)]
        prev = m.end()
    return "".join(out) + text[prev:]


def contract(text: str, rate: float, rng: np.random.Generator) -> str:
    """Contract a uniformly chosen fraction `rate` of the expanded forms ("do not" -> "don't")."""
    return _replace_sites(text, _EXPANDED, EXPANSIONS, rate, rng)


def expand(text: str, rate: float, rng: np.random.Generator) -> str:
    """Expand a uniformly chosen fraction `rate` of the contractions ("don't" -> "do not")."""
    return _replace_sites(text, _CONTRACTED, CONTRACTIONS, rate, rng)


@lru_cache(maxsize=1)
def misspellings() -> dict[str, tuple[str, ...]]:
    """correct word -> its misspellings, from data/misspellings.tsv (lines `correct<TAB>misspelled`)."""
    table: dict[str, list[str]] = {}
    for n, line in enumerate(data_text(MISSPELLINGS_FILE).splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise InputError(f"{MISSPELLINGS_FILE} line {n}: expected 'correct<TAB>misspelled'")
        correct, wrong = parts[0].strip().lower(), parts[1].strip().lower()
        if wrong != correct and wrong not in table.setdefault(correct, []):
            table[correct].append(wrong)
    return {k: tuple(v) for k, v in table.items()}


def misspell(text: str, rate: float, rng: np.random.Generator) -> str:
    """Misspell a uniformly chosen fraction `rate` of the words the misspelling list knows."""
    table = misspellings()
    pieces = split_words(text)
    eligible = [i for i, p in enumerate(pieces) if is_word(p) and p.lower() in table]
    for j in choose(len(eligible), rate, rng):
        word = pieces[eligible[j]]
        options = table[word.lower()]
        pieces[eligible[j]] = match_case(word, options[int(rng.integers(len(options)))])
    return "".join(pieces)


_ANY_WORD = re.compile(r"[^\W\d_]+")


def lowercase(text: str, rate: float, rng: np.random.Generator) -> str:
    """Rate 1: the whole text lowercased. Below: a uniformly chosen fraction of its capitalised words."""
    if rate >= 1.0:
        return text.lower()
    sites = [m for m in _ANY_WORD.finditer(text) if any(c.isupper() for c in m.group(0))]
    chosen = [sites[j] for j in choose(len(sites), rate, rng)]
    return _rewrite(text, chosen, lambda m: m.group(0).lower())

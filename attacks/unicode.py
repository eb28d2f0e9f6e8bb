"""Character-level evasion: invisible characters, look-alikes and odd spaces that leave the text
looking the same to a reader but give the tokenizer other tokens.

Each mode edits a `rate` fraction of its sites (chosen independently with the caller's rng; 1.0 =
every site). Sites are: `*-chars` modes and zwj, zwnj, wordjoiner, softhyphen, bidi: every gap
between two adjacent non-space characters; zwsp: after every space; bom: after every word; the
look-alike modes: every letter they have a look-alike for; the space modes: every single space
between two words. `watermark.normalize.canonicalize` undoes all of them (test_unicode_attack.py).
"""

from __future__ import annotations

import re

import numpy as np

# mode -> (what it inserts, where) for the invisible modes
INVISIBLE: dict[str, tuple[str, str]] = {
    "zwsp": ("\u200b", "space"),  # zero-width space after each space
    "zwsp-chars": ("\u200b", "chars"),
    "zwj": ("\u200d", "chars"),
    "zwnj": ("\u200c", "chars"),
    "wordjoiner": ("\u2060", "chars"),
    "softhyphen": ("\u00ad", "chars"),
    "bidi": ("\u200e", "chars"),  # left-to-right mark
    "bom": ("\ufeff", "word"),  # zero-width no-break space after each word
}
# Cyrillic look-alikes of 8 Latin letters (a c e o p x y i, both cases), Greek ones for the Greek mode
CYRILLIC = dict(zip("aceopxyiACEOPXYI", "асеорхуіАСЕОРХУІ", strict=True))
GREEK = dict(zip("oivuABEHIKMNOPTXYZ", "οινυΑΒΕΗΙΚΜΝΟΡΤΧΥΖ", strict=True))
SPACES: dict[str, str] = {
    "nbsp": "\u00a0",
    "thinspace": "\u2009",
    "ideographic": "\u3000",
    "doublespace": "  ",
    "tab": "\t",
}
MODES: tuple[str, ...] = (
    *INVISIBLE,
    "homoglyph",
    "homoglyph-greek",
    "fullwidth",
    "mathfont",
    *SPACES,
)

_WORD_END = re.compile(r"\w(?=\W|$)")
_WORD_SPACE = re.compile(r"(?<=\S) (?=\S)")


def _fullwidth(c: str) -> str:
    return chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c


def _mathfont(c: str) -> str:
    """Mathematical sans-serif letters and digits (U+1D5A0...): same letters, other code points."""
    if "A" <= c <= "Z":
        return chr(0x1D5A0 + ord(c) - ord("A"))
    if "a" <= c <= "z":
        return chr(0x1D5BA + ord(c) - ord("a"))
    if "0" <= c <= "9":
        return chr(0x1D7E2 + ord(c) - ord("0"))
    return c


def unicode_attack(text: str, mode: str, rate: float, rng: np.random.Generator) -> str:
    """`text` with `mode` applied at a `rate` fraction of its sites (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"unknown unicode mode {mode!r}; known: {', '.join(MODES)}")
    if mode in INVISIBLE:
        char, where = INVISIBLE[mode]
        if where == "chars":
            sites = [i for i in range(1, len(text)) if not text[i - 1].isspace() and not text[i].isspace()]
        elif where == "space":
            sites = [i + 1 for i, c in enumerate(text) if c == " "]
        else:
            sites = [m.end() for m in _WORD_END.finditer(text)]
        return _insert(text, _pick(sites, rate, rng), char)
    if mode in SPACES:
        sites = [m.start() for m in _WORD_SPACE.finditer(text)]
        return _replace(text, _pick(sites, rate, rng), lambda _c: SPACES[mode])
    mapping = {
        "homoglyph": CYRILLIC.get,
        "homoglyph-greek": GREEK.get,
        "fullwidth": lambda c: _fullwidth(c) if c != _fullwidth(c) else None,
        "mathfont": lambda c: _mathfont(c) if c != _mathfont(c) else None,
    }[mode]
    sites = [i for i, c in enumerate(text) if mapping(c) is not None]
    return _replace(text, _pick(sites, rate, rng), mapping)


def _pick(sites: list[int], rate: float, rng: np.random.Generator) -> list[int]:
    if rate >= 1.0 or not sites:
        return sites
    keep = rng.random(len(sites)) < rate
    return [s for s, k in zip(sites, keep, strict=True) if k]


def _insert(text: str, sites: list[int], char: str) -> str:
    out, last = [], 0
    for s in sites:
        out += [text[last:s], char]
        last = s
    out.append(text[last:])
    return "".join(out)


def _replace(text: str, sites: list[int], new) -> str:
    chars = list(text)
    for s in sites:
        chars[s] = new(chars[s])
    return "".join(chars)

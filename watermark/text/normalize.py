"""Canonical text before tokenising: invisible, look-alike and odd-space characters undone.

A watermark is read from token ids, and a tokenizer turns one visible text into very different
ids when it is sprinkled with zero-width characters, written with Cyrillic look-alikes, fullwidth
forms or unusual spaces. Every place that tokenises text for scoring (detection, calibration,
stealing, scrubbing, evaluation) first calls `canonicalize`, so such edits neither hide a
watermark nor go unnoticed: the report counts what was undone, by kind, as signs of tampering.

The steps, each kept narrow enough that text a model writes itself comes through unchanged
(measured on real generations: benchmarks/results/unicode.md):

1. invisible: default-ignorable code points (format characters such as ZWSP, ZWJ, ZWNJ, word
   joiner, soft hyphen, BOM, bidi controls; also combining grapheme joiner, Hangul fillers, tag
   characters) are removed. Kept where they are orthography: ZWJ inside emoji sequences, ZWJ/ZWNJ
   after letters of scripts that use them (Arabic, Indic, ...), variation selectors after emoji
   and CJK characters.
2. compatibility: the NFKC form of fullwidth/halfwidth forms, mathematical alphanumerics and other
   font variants, Latin ligatures (U+FB00-U+FB06) and canonical singletons (Kelvin sign, Ohm sign,
   Greek question mark ...). Not the rest of NFKC: it would turn the ellipsis, superscripts,
   fractions and trademark signs a model writes into other characters and other tokens.
3. confusable: look-alikes of ASCII letters and digits (Unicode confusables.txt,
   `watermark.confusables`) are mapped inside words that also hold Latin letters, and in words
   made only of look-alikes when the text is mostly Latin (a lone alpha, gamma, nu, rho or sigma,
   as in math, stays, and so does a word in capitals of one other script, such as СССР, ТАСС or
   ΚΑΙ quoted in English: neither is counted as tampering).
4. whitespace: inside a line, any run of spaces and tabs (NBSP, thin, ideographic and other
   Unicode spaces, doubled spaces) becomes one ASCII space; newlines are kept, and so is the
   indentation at the start of a line (its Unicode spaces become ASCII spaces, tabs stay). The
   default model itself writes a doubled space now and then (2 of 24 texts): those are collapsed
   too (an attacker could double some spaces) but count as tampering only when most gaps have them.
   Code (lines inside ``` fences, or indented by a tab or four spaces) keeps its alignment: runs
   of spaces there are left as written (odd Unicode spaces become as many ASCII spaces).

Offsets: `report.offsets[i]` is the index in the original text of canonical character i (with a
final entry len(original)), so a span [a, b) of the canonical text is [offsets[a], offsets[b]) of
the original; None when nothing changed.
"""

from __future__ import annotations

import bisect
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
import regex

from .confusables import CONFUSABLES

# the kinds of change; the report counts original characters changed or removed per kind
KINDS = ("invisible", "compatibility", "confusable", "whitespace")

_INVISIBLE = regex.compile(r"\p{Default_Ignorable_Code_Point}")
# what may stand before a character that is kept (see _keep_invisible)
_EMOJI_BEFORE_ZWJ = regex.compile(r"[\p{Extended_Pictographic}\p{Emoji_Modifier}\uFE0F]")
_EMOJI = regex.compile(r"\p{Extended_Pictographic}")
# scripts whose orthography uses ZWJ/ZWNJ (Persian, Indic conjuncts ...)
_JOINER_SCRIPT = regex.compile(
    r"[\p{Arabic}\p{Syriac}\p{Nko}\p{Mongolian}\p{Devanagari}\p{Bengali}\p{Gurmukhi}\p{Gujarati}\p{Oriya}"
    r"\p{Tamil}\p{Telugu}\p{Kannada}\p{Malayalam}\p{Sinhala}\p{Khmer}\p{Myanmar}\p{Tibetan}]"
)
_BEFORE_VARIATION = regex.compile(r"[\p{Extended_Pictographic}\p{Emoji}\p{So}\p{Han}]")
_MONGOLIAN = regex.compile(r"\p{Script=Mongolian}")
ZWNJ, ZWJ = "\u200c", "\u200d"


def _keep_invisible(text: str, j: int) -> bool:
    """Whether the default-ignorable character text[j] is orthography rather than tampering."""
    c = text[j]
    prev = text[j - 1] if j else ""
    nxt = text[j + 1] if j + 1 < len(text) else ""
    if c == ZWJ and prev and _EMOJI_BEFORE_ZWJ.match(prev) and nxt and _EMOJI.match(nxt):
        return True  # emoji sequence (family, profession ...)
    if c in (ZWNJ, ZWJ) and prev and _JOINER_SCRIPT.match(prev):
        return True  # Persian, Indic ... orthography
    o = ord(c)
    if 0xFE00 <= o <= 0xFE0F or 0xE0100 <= o <= 0xE01EF:
        return bool(prev) and bool(_BEFORE_VARIATION.match(prev))  # emoji / text presentation, CJK variants
    if 0x180B <= o <= 0x180F and o != 0x180E:
        return bool(prev) and bool(_MONGOLIAN.match(prev))
    return False


_COMPAT_TAGS = ("<wide>", "<font>")
_HSPACE = r"[\t\x0b\x0c\p{Zs}]"
# Zs other than the ASCII space: NBSP, ogham, en/em/thin/hair ..., narrow NBSP, math, ideographic
_ODD_SPACE = "\xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
_WHITESPACE = regex.compile(rf"[ \t\x0b\x0c{_ODD_SPACE}]{{2,}}|[\t\x0b\x0c{_ODD_SPACE}]")
_SPACE_RUN = regex.compile(r" +")
_LINE_BREAKS = "\n\r\x85\u2028\u2029"
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_LATIN_LETTER = regex.compile(r"\p{Latin}")
_LETTER = regex.compile(r"\p{L}")
_MATH_GREEK = frozenset("\u03b1\u03b3\u03bd\u03c1\u03c3")  # alpha gamma nu rho sigma: math symbols
_NON_ASCII = regex.compile(r"[^\x00-\x7f]")
_NON_ASCII_RUN = regex.compile(r"[^\x00-\x7f]+")
_CJK = regex.compile(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\u3001-\u303f]")


def _compat_map(c: str) -> str | None:
    """The replacement of one character in step 2, or None to keep it."""
    dec = unicodedata.decomposition(c)
    if not dec:
        return None
    if dec.startswith(_COMPAT_TAGS) or 0xFB00 <= ord(c) <= 0xFB06:
        out = unicodedata.normalize("NFKC", c)
    elif not dec.startswith("<") and " " not in dec:  # canonical singleton (Kelvin sign, Ohm sign ...)
        out = unicodedata.normalize("NFC", c)
    else:
        return None
    if out == c or regex.match(_HSPACE, out):  # spaces are the whitespace step's job
        return None
    return out


_COMPAT_CACHE: dict[str, str | None] = {}


@dataclass(frozen=True)
class NormalizationReport:
    """What canonicalisation changed: original characters changed or removed, per kind."""

    invisible: int = 0
    compatibility: int = 0
    confusable: int = 0
    whitespace: int = 0  # Unicode spaces, tabs and form feeds inside a line
    doubled_spaces: int = 0  # extra ASCII spaces removed from runs of them
    doubled_share: float = 0.0  # share of the runs of ASCII spaces that were doubled (or longer)
    offsets: np.ndarray | None = None  # canonical index -> original index (len + 1 entries); None = identity

    @property
    def normalized_chars(self) -> int:
        return self.invisible + self.compatibility + self.confusable + self.whitespace + self.doubled_spaces

    @property
    def tampering(self) -> dict[str, int]:
        """Signs of tampering: invisible characters, look-alikes (fullwidth and other compatibility
        forms count as look-alikes) and odd whitespace. A few doubled spaces are ordinary typing
        (the default model writes some); they count only when most gaps between words have them."""
        doubled = self.doubled_spaces if self.doubled_share >= 0.5 else 0
        return {
            "invisible": self.invisible,
            "confusable": self.confusable + self.compatibility,
            "whitespace": self.whitespace + doubled,
        }

    @property
    def tampered(self) -> bool:
        return any(self.tampering.values())

    def warning(self) -> str | None:
        """One line for people, or None when there is no sign of tampering."""
        if not self.tampered:
            return None
        parts = [f"{n} {k}" for k, n in self.tampering.items() if n]
        return (
            f"possible tampering: {', '.join(parts)} character(s) normalised before detection "
            "(--no-normalize to score the raw text)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"normalized_chars": self.normalized_chars, "tampering": self.tampering}


class _Text:
    """A string with the original offset of each character, rewritten step by step."""

    def __init__(self, text: str, track: bool = True):
        self.text = text
        self.track = track  # keep offsets (off: less memory for huge inputs)
        self.offsets: np.ndarray | None = None  # None while identity

    def offs(self) -> np.ndarray:
        if self.offsets is None:
            self.offsets = np.arange(len(self.text) + 1, dtype=np.int64)
        return self.offsets

    def _rewrite_text(self, edits: list[tuple[int, int, str]]) -> int:
        """The text part of `rewrite`."""
        pieces: list[str] = []
        last = 0
        changed = 0
        for s, e, r in edits:
            pieces.append(self.text[last:s])
            pieces.append(r)
            keep = 0
            while keep < min(len(r), e - s) and r[keep] == self.text[s + keep]:
                keep += 1
            changed += (e - s) - keep
            last = e
        pieces.append(self.text[last:])
        self.text = "".join(pieces)
        return changed

    def rewrite(self, edits: list[tuple[int, int, str]]) -> int:
        """Apply sorted, disjoint (start, end, replacement) edits; returns original characters changed
        (the match length less the prefix the replacement keeps). A replacement of another length
        takes the original offset of the match's start for all its characters."""
        if not edits:
            return 0
        if not self.track:
            return self._rewrite_text(edits)
        offs = self.offs()
        n = len(self.text)
        starts = np.fromiter((e[0] for e in edits), dtype=np.int64, count=len(edits))
        ends = np.fromiter((e[1] for e in edits), dtype=np.int64, count=len(edits))
        lens = np.fromiter((len(e[2]) for e in edits), dtype=np.int64, count=len(edits))
        # copies of each old character in the new text: 1 outside edits and in same-length edits
        # (mapped one to one); else len(r) at the match's start and 0 for the rest of the match
        resized = lens != ends - starts
        starts, ends, lens = starts[resized], ends[resized], lens[resized]
        inside = np.zeros(n + 1, dtype=np.int64)
        np.add.at(inside, starts, 1)
        np.add.at(inside, ends, -1)
        counts = (np.cumsum(inside[:n]) == 0).astype(np.int64)
        counts[starts] = lens
        self.offsets = np.concatenate([np.repeat(offs[:n], counts), offs[n:]])
        return self._rewrite_text(edits)


def canonicalize(text: str, offsets: bool = True) -> tuple[str, NormalizationReport]:
    """The canonical form of `text` and a report of what changed (see the module docstring).
    `offsets=False` skips the offset map (8 bytes a character), as detection does."""
    t = _Text(text, track=offsets)
    counts: dict[str, Any] = dict.fromkeys(KINDS, 0)
    if text.isascii():  # only whitespace can need work; plain single-spaced ASCII returns at once
        if "  " in text or "\t" in text or "\x0b" in text or "\x0c" in text:
            counts.update(_whitespace(t))
        return t.text, NormalizationReport(**counts, offsets=t.offsets)
    counts["invisible"] = t.rewrite(
        [
            (m.start(), m.end(), "")
            for m in _INVISIBLE.finditer(t.text)
            if not _keep_invisible(t.text, m.start())
        ]
    )
    counts["compatibility"] = t.rewrite(_compat_edits(t.text))
    counts["confusable"] = t.rewrite(_confusable_edits(t.text))
    counts.update(_whitespace(t))
    return t.text, NormalizationReport(**counts, offsets=t.offsets)


def canonical_text(text: str, normalize: bool = True) -> str:
    """Just the canonical text (or `text` itself when normalize is off)."""
    return canonicalize(text, offsets=False)[0] if normalize else text


def _compat_edits(text: str) -> list[tuple[int, int, str]]:
    """Step 2. A run of fullwidth forms next to CJK text is CJK typography (fullwidth comma in
    Chinese, fullwidth digits in Japanese) and stays; elsewhere fullwidth is a look-alike."""
    edits = []
    for m in _NON_ASCII_RUN.finditer(text):
        run_start, run_end = m.span()
        cjk_context: bool | None = None
        for j in range(run_start, run_end):
            c = text[j]
            if c not in _COMPAT_CACHE:
                _COMPAT_CACHE[c] = _compat_map(c)
            new = _COMPAT_CACHE[c]
            if new is None:
                continue
            if 0xFF01 <= ord(c) <= 0xFF5E:  # fullwidth ASCII
                if cjk_context is None:
                    cjk_context = _fullwidth_in_cjk(text, j)
                if cjk_context:
                    continue
            edits.append((j, j + 1, new))
    return edits


def _fullwidth_in_cjk(text: str, j: int) -> bool:
    """Whether the run of fullwidth ASCII forms around text[j] touches a CJK character."""
    a = j
    while a > 0 and 0xFF01 <= ord(text[a - 1]) <= 0xFF5E:
        a -= 1
    b = j
    while b < len(text) and 0xFF01 <= ord(text[b]) <= 0xFF5E:
        b += 1
    return bool((a > 0 and _CJK.match(text[a - 1])) or (b < len(text) and _CJK.match(text[b])))


def _confusable_edits(text: str) -> list[tuple[int, int, str]]:
    if not any(m.group() in CONFUSABLES for m in _NON_ASCII.finditer(text)):
        return []
    words = list(_WORD.finditer(text))
    latin_majority: bool | None = None
    edits = []
    for m in words:
        w = m.group()
        hits = [i for i, c in enumerate(w) if c in CONFUSABLES]
        if not hits:
            continue
        rest = [c for c in w if c not in CONFUSABLES]
        # A word mixing Latin letters and look-alikes is never orthography: always mapped. Otherwise:
        if not any(_LATIN_LETTER.match(c) for c in rest):
            if any(_LETTER.match(c) for c in rest):
                continue  # a word of another script that happens to hold look-alikes
            # only look-alikes (and digits): Latin when the text around it is
            if w in _MATH_GREEK:
                continue  # a lone Greek letter used in math, as in "the angle α"
            if _foreign_capitals(w):
                continue  # СССР, ТАСС, ΚΑΙ: a word in capitals of one other script, quoted as written
            if latin_majority is None:
                latin_majority = _mostly_latin(text)
            if not latin_majority:
                continue
        for i in hits:
            edits.append((m.start() + i, m.start() + i + 1, CONFUSABLES[w[i]]))
    return edits


def _foreign_capitals(word: str) -> bool:
    """Two or more capital letters, none ASCII, all of one script (Cyrillic, Greek, ...): how an
    acronym or a word quoted from another language is written, not a substitution attack (which
    swaps some letters of Latin words, and those words stay mixed and mapped)."""
    if len(word) < 2 or not all(c.isupper() and not c.isascii() for c in word):
        return False
    return len({unicodedata.name(c, "?").split(" ")[0] for c in word}) == 1


def _mostly_latin(text: str) -> bool:
    """More Latin letters than other letters, not counting look-alikes themselves."""
    latin = other = 0
    for c in text:
        if c in CONFUSABLES:
            continue
        if c.isascii():
            latin += c.isalpha()
        elif _LATIN_LETTER.match(c):
            latin += 1
        elif _LETTER.match(c):
            other += 1
    return latin > other


def _code_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of the lines that are code: inside ``` fences, or indented by a tab or four
    spaces. Their runs of spaces (alignment) are left as written, odd spaces become ASCII spaces."""
    out, fenced, pos = [], False, 0
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip(" \t")
        if stripped.startswith("```"):
            fenced = not fenced
        elif fenced or line.startswith(("\t", "    ")):
            out.append((pos, pos + len(line)))
        pos += len(line)
    return out


def _in_code(code: list[tuple[int, int]], at: int) -> bool:
    i = bisect.bisect_right(code, (at, float("inf"))) - 1
    return i >= 0 and code[i][0] <= at < code[i][1]


def _whitespace(t: _Text) -> dict[str, Any]:
    """Step 4 on t; the counts: odd whitespace changed, extra ASCII spaces removed, their share."""
    text = t.text
    edits = []
    doubled = doubled_runs = 0
    code = _code_lines(text)
    for m in _WHITESPACE.finditer(text):
        run, s = m.group(), m.start()
        indent = s == 0 or text[s - 1] in _LINE_BREAKS  # keeps its length and tabs, ASCII spaces
        keep = indent or _in_code(code, s)  # code: indentation and alignment as written
        new = "".join(c if c == "\t" else " " for c in run) if keep else " "
        if new != run:
            edits.append((s, m.end(), new))
            if run.count(" ") == len(run):
                doubled += len(run) - 1
                doubled_runs += 1
    if not edits:
        return {}
    changed = t.rewrite(edits)
    runs = len(_SPACE_RUN.findall(text))
    return {
        "whitespace": changed - doubled,
        "doubled_spaces": doubled,
        "doubled_share": doubled_runs / runs if runs else 0.0,
    }

"""Copy-paste: watermarked spans pasted into human text at an exact fraction of the words.

Kirchenbauer et al. (2023b) call it CP-n-m%: n spans of watermarked text making up m% of a
text that is otherwise human-written; WaterPark (Liang et al. 2024) runs it as a text-mixing
attack. Words here are whitespace-separated units, each kept with the whitespace after it, so
the pieces join back without changing either text's spacing.

With W watermarked and H human words and a fraction f, the result keeps w watermarked and h
human words with w / (w + h) = f up to rounding: all W and h = round(W (1 - f) / f) when the
human text is long enough, else all H and w = round(H f / (1 - f)); the watermarked share is
within one word of f. The first w watermarked words are cut into `spans` contiguous pieces of
near-equal length, pasted in order at `spans` distinct word boundaries of the human text chosen
uniformly, so no two pieces touch (each is its own span) unless the human text has too few
boundaries. `dilute` (attacks/dilution.py) is the token-level cousin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_UNIT = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class CopyPaste:
    text: str
    watermarked_words: int
    total_words: int
    spans: tuple[tuple[int, int], ...]  # (first word, end word) of each watermarked span, ends exclusive

    @property
    def fraction(self) -> float:
        return self.watermarked_words / max(self.total_words, 1)


def words(text: str) -> list[str]:
    """Whitespace-separated units, each with its trailing whitespace ("".join gives the text
    without its leading whitespace)."""
    return _UNIT.findall(text)


def sizes(n_wm: int, n_human: int, fraction: float) -> tuple[int, int]:
    """(watermarked, human) word counts whose ratio is `fraction` up to rounding."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0 or n_human == 0:
        return n_wm, 0
    h = int(round(n_wm * (1.0 - fraction) / fraction))
    if h <= n_human:
        return n_wm, h
    return min(n_wm, int(round(n_human * fraction / (1.0 - fraction)))), n_human


def _joined(units: list[str]) -> str:
    """Units joined, a space put after any unit that lost its whitespace (a text's last word);
    no whitespace at the end."""
    out = [u if u[-1:].isspace() or i == len(units) - 1 else u + " " for i, u in enumerate(units)]
    return "".join(out).rstrip()


def copy_paste(
    watermarked: str, human: str, fraction: float, rng: np.random.Generator, spans: int = 1
) -> CopyPaste:
    """`spans` pieces of `watermarked` pasted into `human`, `fraction` of the words watermarked."""
    if spans < 1:
        raise ValueError(f"spans must be >= 1, got {spans}")
    wm, hu = words(watermarked), words(human)
    if not wm:  # nothing to paste: the text stays as it is
        return CopyPaste(watermarked, 0, 0, ())
    w, h = sizes(len(wm), len(hu), fraction)
    wm, hu = wm[:w], hu[:h]
    if not w:
        return CopyPaste(_joined(hu), 0, len(hu), ())
    spans = max(1, min(spans, w))
    cuts = np.linspace(0, w, spans + 1).round().astype(int)
    pieces = [wm[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    points = np.sort(rng.choice(h + 1, size=spans, replace=h + 1 < spans))
    units: list[str] = []
    where: list[tuple[int, int]] = []
    prev = 0
    for p, piece in zip(points, pieces, strict=True):
        units.extend(hu[prev:p])
        if where and where[-1][1] == len(units):  # same boundary twice: the pieces merge
            where[-1] = (where[-1][0], len(units) + len(piece))
        else:
            where.append((len(units), len(units) + len(piece)))
        units.extend(piece)
        prev = int(p)
    units.extend(hu[prev:])
    return CopyPaste(_joined(units), w, len(units), tuple(where))

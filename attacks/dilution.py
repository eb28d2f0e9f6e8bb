"""Dilution (copy-paste): hide watermarked spans inside unwatermarked text.

The attacker keeps some watermarked text but surrounds it with text of their own, so the
watermarked tokens make up only a `fraction` of the result (Kirchenbauer et al. 2023b call this
copy-paste). Works on token ids: the watermarked prefix that fits is cut into `spans`
contiguous pieces, which are inserted in order at uniformly chosen word boundaries of the
unwatermarked "donor" text. When the donor is too short for the asked fraction, the watermarked
part is shortened instead, so the fraction is always met (up to rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dilution:
    token_ids: list[int]
    watermarked_tokens: int  # how many tokens of the result came from the watermarked text

    @property
    def fraction(self) -> float:
        return self.watermarked_tokens / max(len(self.token_ids), 1)


def dilute(
    watermarked: Sequence[int],
    donor: Sequence[int],
    fraction: float,
    rng: np.random.Generator,
    spans: int = 1,
    boundaries: Sequence[bool] | None = None,
) -> Dilution:
    """Mix `watermarked` ids into `donor` ids so they are `fraction` of the result.

    `boundaries[i]` says whether donor token i starts a word (an insertion point); by default
    every position is one. Position len(donor) (the end) is always allowed.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if spans < 1:
        raise ValueError(f"spans must be >= 1, got {spans}")
    wm = [int(t) for t in watermarked]
    don = [int(t) for t in donor]
    if fraction == 1.0 or not don:
        return Dilution(wm, len(wm))
    # keep w watermarked and d donor tokens with w / (w + d) = fraction
    w = len(wm)
    d = int(round(w * (1.0 - fraction) / fraction))
    if d > len(don):
        d = len(don)
        w = min(len(wm), int(round(d * fraction / (1.0 - fraction))))
    wm, don = wm[:w], don[:d]
    spans = max(1, min(spans, w))
    cuts = np.linspace(0, w, spans + 1).round().astype(int)
    pieces = [wm[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    allowed = [i for i in range(d) if boundaries is None or boundaries[i]] + [d]
    points = np.sort(rng.choice(allowed, size=spans, replace=len(allowed) < spans))
    out: list[int] = []
    prev = 0
    for p, piece in zip(points, pieces, strict=True):
        out.extend(don[prev:p])
        out.extend(piece)
        prev = int(p)
    out.extend(don[prev:])
    return Dilution(out, w)


def word_starts(tokenizer, ids: Sequence[int]) -> list[bool]:
    """Whether each token's text begins with whitespace (a natural insertion point)."""
    pieces = tokenizer.batch_decode([[int(t)] for t in ids])
    return [p[:1].isspace() for p in pieces]

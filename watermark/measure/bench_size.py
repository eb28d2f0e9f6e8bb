"""MarkMyWords' *size*: how many tokens a scheme needs before a prefix of its text is detected.

Every watermarked text is tokenised for scoring (`encode_texts`, canonical text, as `wm detect`),
each prefix of `step`, 2 `step`, ... tokens (and the whole text) is tested, and the first prefix
with p <= alpha (0.02, as MarkMyWords) is the text's size; `bench_stats.size_summary` turns the
sizes into a median with a bootstrap interval and the fraction never reaching alpha. The
per-prefix log10 p-values are kept for the size curves (p against tokens).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..schemes.base import TextTooShortError, WatermarkScheme
from .bench_stats import size_summary

SIZE_ALPHA = 0.02  # MarkMyWords' detection threshold for size


def prefix_lengths(n_tokens: int, step: int) -> list[int]:
    """step, 2 step, ... up to n_tokens, and n_tokens itself (empty for an empty text)."""
    if step < 1:
        raise ValueError("step must be >= 1")
    lengths = list(range(step, n_tokens + 1, step))
    if n_tokens and (not lengths or lengths[-1] != n_tokens):
        lengths.append(n_tokens)
    return lengths


def prefix_log10_p(
    scheme: WatermarkScheme, ids: Sequence[int], lengths: Sequence[int], alpha: float = SIZE_ALPHA
) -> list[float]:
    """log10 p-value of each prefix (0.0 where a prefix is too short to test)."""
    out = []
    arr = np.asarray(ids, dtype=np.int64)
    for n in lengths:
        try:
            det = scheme.detect(arr[:n], alpha=alpha)
        except TextTooShortError:
            out.append(0.0)
            continue
        log10_p = det.log10_p_value
        out.append(math.log10(max(det.p_value, 1e-300)) if log10_p is None else float(log10_p))
    return out


def text_size(lengths: Sequence[int], log10_p: Sequence[float], alpha: float = SIZE_ALPHA) -> int | None:
    """The first prefix length whose p-value is <= alpha; None when none is. Compared in log space,
    as `Detection.verdict` does (10 ** log10(p) need not round-trip to p)."""
    level = math.log10(alpha)
    return next((int(n) for n, v in zip(lengths, log10_p, strict=True) if v <= level), None)


def scheme_size(
    scheme: WatermarkScheme,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    step: int = 1,
    alpha: float = SIZE_ALPHA,
    advance: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Per-text prefix curves and sizes of one scheme's watermarked texts, and their summary."""
    from ..text.encoding import encode_texts

    curves: list[dict[str, Any]] = []
    sizes: list[int | None] = []
    for text in texts:
        ids = [int(i) for i in encode_texts(tokenizer, [text])[0]]
        lengths = prefix_lengths(len(ids), step)
        log10_p = prefix_log10_p(scheme, ids, lengths, alpha)
        sizes.append(text_size(lengths, log10_p, alpha))
        curves.append({"lengths": lengths, "log10_p": log10_p, "size": sizes[-1]})
        if advance:
            advance(1)
    summary = size_summary(sizes)
    return {"alpha": alpha, "step": step, **summary, "curves": curves}


def median_curve(curves: Sequence[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """Prefix length -> median log10 p over the texts that are at least that long."""
    by_length: dict[int, list[float]] = {}
    for c in curves:
        for n, v in zip(c["lengths"], c["log10_p"], strict=True):
            by_length.setdefault(int(n), []).append(float(v))
    xs = sorted(by_length)
    return xs, [float(np.median(by_length[x])) if by_length[x] else math.nan for x in xs]

"""Does a tested text look like the texts a calibration was made on? Key-free checks.

A calibrated p-value is valid when the tested text is exchangeable with the calibration texts.
Made on another kind of text it is not: kgw calibrated on repetitive text and tested on random
text runs at about twice alpha (issue 30's review: 82 of 4,000 = 0.0205 at alpha 0.01). What makes
such texts differ is visible without the key: their length and the share of scoring contexts
that repeat (a repeated (context, token) pair repeats the same coin flip, so it is scored once or
weighs differently), so the calibration file keeps both per text and detection compares.

- One text: flagged when its length or repetition rate lies outside the calibration texts'
  range AND far from their bulk (beyond the far-out fences Q1 - 3 IQR / Q3 + 3 IQR) by more than a
  small slack (10% of the length, 0.02 of the rate). Outside the range alone happens to an
  exchangeable text with probability about 2 / (N + 1) per statistic; the fences keep that noise out.
- A batch (at least `BATCH_MIN` texts): a two-sample Kolmogorov-Smirnov test of each statistic
  against the calibration's, flagged at p < `BATCH_LEVEL`.
- The size: with N texts at level alpha the calibrated test rejects below the k-th smallest null
  p-value, k = floor(alpha (N + 1)), so its false-positive rate for this key is the k-th order
  statistic of N uniforms; P(rate > 2 alpha) = P(Binomial(N, 2 alpha) < k). About 10 / alpha texts
  make that small (99 texts at alpha 0.01: 13.5%; 1,000: 0.5%), so fewer draw a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

BATCH_MIN = 20  # a batch this large is also compared as a whole (KS)
BATCH_LEVEL = 1e-3  # KS p-value below which a batch is called different
FENCE_IQR = 3.0  # Tukey's far-out fences
LENGTH_SLACK = 0.10  # relative
RATE_SLACK = 0.02  # absolute
TEXTS_PER_ALPHA = 10  # calibrate on at least this many / alpha texts


def context_width(config: Any) -> int:
    """How many previous tokens form a scoring context under this scheme config (key-free)."""
    prefix = getattr(config, "prefix_length", None)  # green lists: selfhash counts the token itself
    if isinstance(prefix, int):
        return prefix
    ngram = getattr(config, "ngram_len", None)
    if isinstance(ngram, int):
        return max(ngram - 1, 0)
    width = getattr(config, "context_width", None)
    return width if isinstance(width, int) else 1


def repeat_rate(ids: np.ndarray, width: int) -> float:
    """Share of the text's (width previous tokens, token) windows that occurred earlier in it."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size <= width:
        return 0.0
    windows = np.lib.stride_tricks.sliding_window_view(ids, width + 1)
    distinct = np.unique(windows, axis=0).shape[0]
    return float(1.0 - distinct / windows.shape[0])


@dataclass(frozen=True)
class TextStats:
    """Per-text key-free statistics of a calibration's texts (one entry per scored text)."""

    width: int  # the scoring context width the repetition rate was measured with
    lengths: np.ndarray  # tokens per text
    rates: np.ndarray  # repetition rate per text

    @classmethod
    def measure(cls, token_ids: list[np.ndarray], width: int) -> TextStats:
        lengths = np.asarray([len(t) for t in token_ids], dtype=np.float64)
        rates = np.asarray([repeat_rate(t, width) for t in token_ids], dtype=np.float64)
        return cls(width, lengths, rates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "context_width": self.width,
            "num_tokens": [int(x) for x in self.lengths],
            "repeat_rate": [round(float(x), 6) for x in self.rates],
        }

    @classmethod
    def from_dict(cls, data: Any) -> TextStats:
        """Raises KeyError / TypeError / ValueError on a malformed entry (the loader reports it)."""
        width = int(data["context_width"])
        lengths = np.asarray(data["num_tokens"], dtype=np.float64)
        rates = np.asarray(data["repeat_rate"], dtype=np.float64)
        if lengths.ndim != 1 or lengths.shape != rates.shape or not lengths.size or width < 0:
            raise ValueError("text_stats: num_tokens and repeat_rate must be equal, non-empty lists")
        if np.isnan(rates).any() or (rates < 0).any() or (rates > 1).any() or (lengths < 0).any():
            raise ValueError("text_stats: repeat rates lie in [0, 1], lengths are >= 0")
        return cls(width, lengths, rates)

    def text_mismatch(self, ids: np.ndarray) -> str | None:
        """Why one text does not look like the calibration texts, or None."""
        n = float(len(ids))
        if _far(n, self.lengths, LENGTH_SLACK * max(n, 1.0)):
            lo, hi = int(self.lengths.min()), int(self.lengths.max())
            return f"the text has {int(n)} tokens, the calibration texts {lo} to {hi}"
        rate = repeat_rate(ids, self.width)
        if _far(rate, self.rates, RATE_SLACK):
            low, high = float(self.rates.min()), float(self.rates.max())
            return (
                f"{rate:.1%} of the text's scoring contexts repeat, {low:.1%} to {high:.1%} in the "
                "calibration texts"
            )
        return None

    def batch_mismatch(self, token_ids: list[np.ndarray]) -> str | None:
        """Why a batch of texts does not look like the calibration texts as a whole, or None."""
        if len(token_ids) < BATCH_MIN:
            return None
        from scipy.stats import ks_2samp

        batch = TextStats.measure(token_ids, self.width)
        for what, mine, theirs in (
            ("lengths", batch.lengths, self.lengths),
            ("repetition rates", batch.rates, self.rates),
        ):
            p = float(ks_2samp(mine, theirs).pvalue)
            if p < BATCH_LEVEL:
                return (
                    f"the {len(token_ids)} texts' {what} differ from the calibration texts' "
                    f"(Kolmogorov-Smirnov p = {p:.2g}; medians {np.median(mine):.3g} vs {np.median(theirs):.3g})"
                )
        return None


def _far(x: float, sample: np.ndarray, slack: float) -> bool:
    """x outside the sample's range and beyond its far-out fences by more than `slack`."""
    q1, q3 = np.quantile(sample, [0.25, 0.75])
    iqr = q3 - q1
    lo = min(float(sample.min()), q1 - FENCE_IQR * iqr) - slack
    hi = max(float(sample.max()), q3 + FENCE_IQR * iqr) + slack
    return bool(x < lo or x > hi)


def size_warning(num_texts: int, alpha: float) -> str | None:
    """A warning when N calibration texts are fewer than TEXTS_PER_ALPHA / alpha, else None."""
    need = math.ceil(TEXTS_PER_ALPHA / alpha)
    if num_texts >= need:
        return None
    k = math.floor(alpha * (num_texts + 1) + 1e-9)  # ranks the calibrated test rejects below
    base = f"the calibration has {num_texts} texts, fewer than 10 / alpha = {need}"
    if k < 1:
        return f"{base}: no text can be called watermarked at alpha = {alpha:g}"
    from .pvalues import binomial_tail

    over = 1.0 - binomial_tail(k, num_texts, min(2 * alpha, 1.0))  # P(Binomial(N, 2 alpha) < k)
    return (
        f"{base}: this key's calibrated false-positive rate at alpha = {alpha:g} exceeds 2 x alpha "
        f"with probability {over:.1%} (calibrate on about {need} texts)"
    )

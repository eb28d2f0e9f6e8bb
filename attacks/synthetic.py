"""A synthetic language model with a planted green list, for tests and quick stealing experiments.

Tokens are i.i.d. Zipf(s) over a vocabulary of V ids; the watermarked model multiplies green
probabilities by e^delta (the soft green-list rule with h = 0), the natural model does not. It
makes thousands of texts in milliseconds and knows its ground truth exactly, so the stealing
program can be checked against the planted list and the exact green counts (Oracle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wm_toolkit.watermark.statistics.pvalues import z_score

from .stealing_data import check_gamma


@dataclass
class SyntheticLM:
    vocab_size: int = 500
    gamma: float = 0.25
    delta: float = 2.0
    zipf_exponent: float = 1.1
    seed: int = 0
    green: np.ndarray = field(init=False)  # sorted planted green ids, exactly floor(gamma V)

    def __post_init__(self) -> None:
        check_gamma(self.gamma, required=True)
        rng = np.random.default_rng(self.seed)
        k = int(np.floor(self.gamma * self.vocab_size))
        self.green = np.sort(rng.choice(self.vocab_size, size=k, replace=False))
        self._mask = np.zeros(self.vocab_size, dtype=bool)
        self._mask[self.green] = True
        # Zipf ranks are assigned to ids at random, so green tokens span every frequency
        ranks = rng.permutation(self.vocab_size) + 1.0
        base = ranks ** (-self.zipf_exponent)
        self.natural_probs = base / base.sum()
        wm = base * np.exp(self.delta * self._mask)
        self.watermarked_probs = wm / wm.sum()

    @property
    def green_fraction(self) -> float:
        """K / V, the exact green fraction (the detector's null probability)."""
        return len(self.green) / self.vocab_size

    def sample(self, n_texts: int, length: int, watermarked: bool, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        p = self.watermarked_probs if watermarked else self.natural_probs
        draws = rng.choice(self.vocab_size, size=(n_texts, length), p=p)
        return [row for row in draws]

    def is_green(self, ids: np.ndarray) -> np.ndarray:
        return self._mask[np.asarray(ids, dtype=np.int64)]

    def green_count(self, ids, count_repeats: bool = False) -> int:
        """g(s): green tokens in a text, each distinct token once unless repeats are counted."""
        a = np.asarray(ids, dtype=np.int64)
        if not count_repeats:
            a = np.unique(a)
        return int(self._mask[a].sum())

    def z(self, ids, count_repeats: bool = False) -> float:
        """The detector's z with the exact green fraction, as `wm`'s Unigram detector reports it."""
        a = np.asarray(ids, dtype=np.int64)
        t = a.size if count_repeats else np.unique(a).size
        return z_score(self.green_count(a, count_repeats), t, self.green_fraction)

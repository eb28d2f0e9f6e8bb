"""Data for green-list stealing: per-text counts of the items (tokens, or (context, token) pairs) that occur.

Only items seen in the corpus become columns of the program (Zhang et al. 2024 keep the whole
vocabulary; unobserved tokens could only be set to 0 by the minimum-weight stage anyway). By
default each distinct item counts once per text, which is exactly what `wm`'s green-list
detector scores (`count_repeats=False`); `count_repeats=True` counts every occurrence, as the
authors' detector does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from wm_toolkit.watermark.errors import ConfigError, InputError


class StealingInputError(InputError):
    """Texts that cannot feed a stealing attack (none watermarked, none natural, all empty)."""


class StealingConfigError(ConfigError):
    """Attack parameters outside their domain (gamma, z, threat model, solver)."""


def check_gamma(gamma: float | None, required: bool = False) -> None:
    if gamma is None:
        if required:
            raise StealingConfigError("this threat model needs --gamma (the green-list fraction)")
        return
    if not 0.0 < float(gamma) < 1.0:
        raise StealingConfigError(f"gamma must be in (0, 1), got {gamma}")


@dataclass(frozen=True)
class StealingCorpus:
    """The program's data. Row s is a text, column j the item `items[j]` = (context..., token)."""

    items: np.ndarray  # (n_items, h + 1) int64; for h = 0 the column is the token id
    counts: sparse.csr_matrix  # (n_texts, n_items): n_{s,v}
    watermarked: np.ndarray  # bool per text: the label the attacker holds
    context_width: int
    count_repeats: bool

    @property
    def lengths(self) -> np.ndarray:
        """L_s: items scored in text s (distinct items unless repeats are counted)."""
        return np.asarray(self.counts.sum(axis=1)).reshape(-1)

    @property
    def num_texts(self) -> int:
        return self.counts.shape[0]

    @property
    def num_items(self) -> int:
        return self.counts.shape[1]

    def class_totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Occurrences of each item in the watermarked and in the natural texts."""
        w = np.asarray(self.counts[self.watermarked].sum(axis=0)).reshape(-1)
        h = np.asarray(self.counts[~self.watermarked].sum(axis=0)).reshape(-1)
        return w, h

    def item_index(self) -> dict[tuple[int, ...], int]:
        return {tuple(int(x) for x in row): j for j, row in enumerate(self.items)}


def _windows(ids: Sequence[int], h: int) -> np.ndarray:
    a = np.asarray(ids, dtype=np.int64).reshape(-1)
    if a.size <= h:
        return np.zeros((0, h + 1), dtype=np.int64)
    return np.lib.stride_tricks.sliding_window_view(a, h + 1)


def build_corpus(
    watermarked: Sequence[Sequence[int]],
    natural: Sequence[Sequence[int]],
    context_width: int = 0,
    count_repeats: bool = False,
    min_items: int = 1,
) -> StealingCorpus:
    """Count items per text; texts with fewer than `min_items` scored items are dropped."""
    if context_width < 0:
        raise StealingConfigError(f"context width must be >= 0, got {context_width}")
    if len(watermarked) == 0:
        raise StealingInputError("no watermarked texts: stealing needs texts labelled watermarked")
    if len(natural) == 0:
        raise StealingInputError("no natural texts: stealing needs unwatermarked texts to compare with")
    rows: list[np.ndarray] = []
    labels: list[bool] = []
    for label, texts in ((True, watermarked), (False, natural)):
        for ids in texts:
            win = _windows(ids, context_width)
            if not count_repeats and len(win):
                win = np.unique(win, axis=0)
            if len(win) >= max(min_items, 1):
                rows.append(win)
                labels.append(label)
    lab = np.array(labels, dtype=bool)
    if not lab.any():
        raise StealingInputError(f"every watermarked text is empty or shorter than {min_items} scored tokens")
    if lab.all():
        raise StealingInputError(f"every natural text is empty or shorter than {min_items} scored tokens")
    stacked = np.concatenate(rows, axis=0)
    items, inverse = np.unique(stacked, axis=0, return_inverse=True)
    text_of = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    counts = sparse.csr_matrix(
        (np.ones(len(stacked), dtype=np.int64), (text_of, inverse.reshape(-1))), shape=(len(rows), len(items))
    )
    counts.sum_duplicates()
    return StealingCorpus(items, counts, lab, context_width, count_repeats)

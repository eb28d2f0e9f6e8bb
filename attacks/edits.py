"""Random token edits, the attacks of Kuditipudi et al. (2023, `attacks.py` of their code).

Each function chooses floor(rate * len(ids)) distinct positions uniformly at random and
substitutes, inserts before, or deletes the tokens there; new tokens are uniform over
[0, vocab_size). All randomness comes from the caller's seeded `numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wm_toolkit.watermark.errors import InputError


def _positions(length: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    if not 0.0 <= rate <= 1.0:
        raise InputError(f"edit rate must be in [0, 1], got {rate}")
    count = int(np.floor(rate * length))
    return np.sort(rng.choice(length, size=count, replace=False)) if count else np.zeros(0, dtype=np.int64)


def substitute_tokens(
    ids: Sequence[int], rate: float, vocab_size: int, rng: np.random.Generator
) -> list[int]:
    """Replace floor(rate * len) distinct positions with uniformly drawn tokens."""
    out = np.asarray(ids, dtype=np.int64).copy()
    pos = _positions(out.size, rate, rng)
    out[pos] = rng.integers(0, vocab_size, size=pos.size)
    return out.tolist()


def insert_tokens(ids: Sequence[int], rate: float, vocab_size: int, rng: np.random.Generator) -> list[int]:
    """Insert a uniformly drawn token before each of floor(rate * len) distinct positions."""
    arr = np.asarray(ids, dtype=np.int64)
    pos = _positions(arr.size, rate, rng)
    return np.insert(arr, pos, rng.integers(0, vocab_size, size=pos.size)).tolist()


def delete_tokens(ids: Sequence[int], rate: float, rng: np.random.Generator) -> list[int]:
    """Delete floor(rate * len) distinct positions."""
    arr = np.asarray(ids, dtype=np.int64)
    return np.delete(arr, _positions(arr.size, rate, rng)).tolist()

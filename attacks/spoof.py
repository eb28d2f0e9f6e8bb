"""Spoof a watermark with a stolen green list: an unwatermarked model, biased toward the list.

The processor adds delta to the logits of stolen ids (for h >= 1, to the ids stolen for the
current context), which imitates the owner's soft green-list rule without the key. Spoofing
succeeds when the real detector flags the output at alpha.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from watermark.errors import ConfigError

from .stealing import StolenList


class StolenListLogitsProcessor(LogitsProcessor):
    """Adds `delta` to every token the stolen list calls green after the current prefix."""

    def __init__(self, stolen: StolenList, delta: float = 2.0):
        if not delta >= 0:
            raise ConfigError(f"spoofing delta must be >= 0, got {delta}")
        if len(stolen) == 0:
            raise ConfigError("the stolen list is empty: nothing to spoof with")
        self.stolen, self.delta = stolen, float(delta)
        self._ids = torch.tensor(stolen.green_token_ids, dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        bias = torch.zeros_like(scores)
        width = scores.shape[-1]
        if self.stolen.context_width == 0:
            ids = self._ids[self._ids < width].to(scores.device)
            bias[:, ids] = self.delta
        else:
            for row, ctx in enumerate(input_ids.tolist()):
                ids = [t for t in self.stolen.green_after(ctx) if t < width]
                if ids:
                    bias[row, ids] = self.delta
        return scores + bias


def spoof_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    stolen: StolenList,
    delta: float = 2.0,
    **gen_kwargs: Any,
):
    """Generations from the unwatermarked model with the stolen-list bias."""
    from watermark.generation import generate

    return generate(
        model,
        tokenizer,
        prompts,
        scheme=None,
        extra_processors=[StolenListLogitsProcessor(stolen, delta)],
        **gen_kwargs,
    )


def flagged_rate(p_values: Sequence[float], alpha: float) -> float:
    """Fraction of spoofed texts the real detector flags (p < alpha)."""
    p = np.asarray(p_values, dtype=np.float64)
    return float((p < alpha).mean()) if p.size else float("nan")

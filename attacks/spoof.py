"""Spoof a watermark with a stolen list: an unwatermarked model, biased toward believed-green tokens.

`StolenListLogitsProcessor` adds strength x boost to the logits, where the boost is what the stolen
list believes about each token after the current context: 1 on a MIP list's ids (for h >= 1 the
ids stolen for the current context), and the frequency-ratio attacker's aggregated score in [0, 1]
for a ratio list (Jovanovic et al. 2024: soft, so strongly supported tokens are pushed harder).
This imitates the owner's soft green-list rule without the key. `NgramRepetitionPenalty` is the
authors' companion processor: a repeated (h+1)-gram adds nothing to a detector that scores each
distinct (context, token) pair once, so the spoofer discourages repeats. Spoofing succeeds when
the real detector flags the output at alpha.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from watermark.errors import ConfigError

from .stealing import StolenList

# Jovanovic et al.'s spoofer strengths (configs/spoofing/*): gptwm 3, LeftHash 6.5, SelfHash 7.5
RATIO_STRENGTH = {"h0": 3.0, "lefthash": 6.5, "selfhash": 7.5}


def default_strength(stolen: StolenList) -> float:
    """2.0 for a MIP list (the logit bias of the default watermark), else the authors' strength."""
    if stolen.ratio_model is None:
        return 2.0
    if stolen.context_width == 0:
        return RATIO_STRENGTH["h0"]
    return RATIO_STRENGTH["selfhash" if stolen.ratio_model.params.w_partials > 0 else "lefthash"]


class StolenListLogitsProcessor(LogitsProcessor):
    """Adds `delta` x boost to every token the stolen list believes green after the current prefix.

    A negative `delta` (allowed with `allow_negative`) pushes away from the list instead, which is
    how a scrubbing rewriter uses it."""

    def __init__(self, stolen: StolenList, delta: float = 2.0, allow_negative: bool = False):
        if not (delta >= 0 or (allow_negative and np.isfinite(delta))):
            raise ConfigError(f"spoofing delta must be >= 0, got {delta}")
        if len(stolen) == 0 and stolen.ratio_model is None:
            raise ConfigError("the stolen list is empty: nothing to spoof with")
        self.stolen, self.delta = stolen, float(delta)
        self._ids = torch.tensor(stolen.green_token_ids, dtype=torch.long)
        self._fixed: torch.Tensor | None = None  # h = 0 ratio boosts, built once

    def _fixed_bias(self, width: int, device: torch.device) -> torch.Tensor:
        if self._fixed is None or self._fixed.shape[0] != width or self._fixed.device != device:
            vec = torch.zeros(width, device=device)
            b = self.stolen.boosts(())
            if b:
                ids = torch.tensor(list(b), dtype=torch.long)
                vals = torch.tensor(list(b.values()), dtype=torch.float32)
                keep = ids < width
                vec[ids[keep].to(device)] = vals[keep].to(device)
            self._fixed = vec
        return self._fixed

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        bias = torch.zeros_like(scores)
        width = scores.shape[-1]
        if self.stolen.context_width == 0 and self.stolen.ratio_model is None:
            ids = self._ids[self._ids < width].to(scores.device)
            bias[:, ids] = self.delta
        elif self.stolen.context_width == 0:
            bias[:] = self.delta * self._fixed_bias(width, scores.device).to(scores.dtype)
        elif self.stolen.ratio_model is not None:
            rows = [self.stolen.ratio_model.boost_vector(ctx, width) for ctx in input_ids.tolist()]
            bias += self.delta * torch.from_numpy(np.stack(rows)).to(scores.device, scores.dtype)
        else:
            for row, ctx in enumerate(input_ids.tolist()):
                ids = [t for t in self.stolen.green_after(ctx) if t < width]
                if ids:
                    bias[row, ids] = self.delta
        return scores + bias


class NgramRepetitionPenalty(LogitsProcessor):
    """Jovanovic et al.'s n-gram repetition penalty ("divide" mode): a token that would complete an
    n-gram already present in the response has its logit divided by `penalty` (multiplied when
    negative). The response starts where this processor first saw the input; use one per batch."""

    def __init__(self, n: int, penalty: float = 1.6):
        if n < 1 or not penalty >= 1.0:
            raise ConfigError(f"repetition penalty needs n >= 1 and penalty >= 1, got {n}, {penalty}")
        self.n, self.penalty = n, float(penalty)
        self._start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._start is None:
            self._start = input_ids.shape[1]
        n = self.n
        resp = input_ids[:, self._start :].tolist()
        for row, ids in enumerate(resp):
            if n > 1 and len(ids) < n:  # no complete n-gram in the response yet
                continue
            ctx = tuple(ids[len(ids) - (n - 1) :]) if n > 1 else ()
            banned = {
                ids[i + n - 1] for i in range(len(ids) - n + 1) if n == 1 or tuple(ids[i : i + n - 1]) == ctx
            }
            if banned:
                idx = torch.tensor(sorted(banned), dtype=torch.long, device=scores.device)
                s = scores[row, idx]
                scores[row, idx] = torch.where(s < 0, s * self.penalty, s / self.penalty)
        return scores


def spoof_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    stolen: StolenList,
    delta: float | None = None,
    repetition_penalty: float = 1.0,
    batch_size: int = 8,
    seed: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    **gen_kwargs: Any,
):
    """Generations from the unwatermarked model with the stolen-list bias (`delta` defaults to
    `default_strength(stolen)`); `repetition_penalty` > 1 adds the n-gram penalty (n = h + 1).
    Processors are built per batch, so per-response state never leaks between batches."""
    from watermark.generation import generate

    strength = default_strength(stolen) if delta is None else float(delta)
    out = []
    for start in range(0, len(prompts), batch_size):
        procs: list[Any] = [StolenListLogitsProcessor(stolen, strength)]
        if repetition_penalty != 1.0:
            procs.insert(0, NgramRepetitionPenalty(stolen.context_width + 1, repetition_penalty))
        out += generate(
            model,
            tokenizer,
            prompts[start : start + batch_size],
            scheme=None,
            extra_processors=procs,
            batch_size=batch_size,
            seed=None if seed is None else seed + start,
            on_batch=on_batch,
            **gen_kwargs,
        )
    return out


def flagged_rate(p_values: Sequence[float], alpha: float) -> float:
    """Fraction of spoofed texts the real detector flags (p < alpha)."""
    p = np.asarray(p_values, dtype=np.float64)
    return float((p < alpha).mean()) if p.size else float("nan")

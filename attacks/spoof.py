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

from wm_toolkit.watermark.errors import ConfigError

from .stealing import StolenList, estimated_z

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


class EstimatedZEosBan(LogitsProcessor):
    """Jovanovic et al.'s spoofer does not stop while its own z-estimate of the response is below
    `threshold` (their 5): the end-of-text tokens are banned until then. The estimate is the
    one the scrubber plans with: every distinct (h previous tokens, token) item of the response
    (the unit the detector counts once) is green with probability gamma + (1 - gamma) x boost,
    and z = (sum - gamma T) / sqrt(gamma (1 - gamma) T) over the T items. The response starts
    where this processor first saw the input; use one per batch. With `max_new_tokens` above the
    usual length, a response whose estimate is low simply runs longer."""

    def __init__(self, stolen: StolenList, eos_ids: Sequence[int], threshold: float = 5.0):
        if not np.isfinite(threshold):
            raise ConfigError(f"the z-estimate threshold must be finite, got {threshold}")
        self.stolen, self.threshold = stolen, float(threshold)
        self.eos = sorted({int(i) for i in eos_ids})
        self.gamma = float(stolen.gamma or 0.25)
        self._start: int | None = None
        self._seen: list[dict[tuple[int, ...], float]] = []
        self._done: list[int] = []  # response tokens already folded into each row's estimate

    def estimate(self, row: int) -> float:
        """The current z-estimate of row `row`'s response (0 before any item)."""
        return estimated_z(list(self._seen[row].values()), self.gamma)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._start is None:
            self._start = input_ids.shape[1]
            self._seen = [{} for _ in range(input_ids.shape[0])]
            self._done = [0] * input_ids.shape[0]
        h, g = self.stolen.context_width, self.gamma
        eos = [i for i in self.eos if i < scores.shape[-1]]
        for row, full in enumerate(input_ids.tolist()):
            resp = full[self._start :]
            seen = self._seen[row]
            for i in range(max(self._done[row], h), len(resp)):
                key = tuple(resp[i - h : i + 1])
                if key not in seen:
                    seen[key] = g + (1 - g) * self.stolen.boosts(resp[i - h : i]).get(resp[i], 0.0)
            self._done[row] = len(resp)
            if eos and self.estimate(row) < self.threshold:
                scores[row, eos] = -torch.inf
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
    eos_ban_z: float | None = None,
    repetition_ngram: int | None = None,
    **gen_kwargs: Any,
):
    """Generations from the unwatermarked model with the stolen-list bias (`delta` defaults to
    `default_strength(stolen)`); `repetition_penalty` > 1 adds the n-gram penalty (n =
    `repetition_ngram`, default h + 1 as the authors: for h = 0 that penalises every repeated token,
    a larger n only breaks loops, which the detector's count of distinct items gains nothing from);
    `eos_ban_z` bans ending while the response's z-estimate is below it (`EstimatedZEosBan`).
    Processors are built per batch, so per-response state never leaks between batches."""
    from wm_toolkit.watermark.modeling.generation import generate

    eos = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos.update(gen_eos if isinstance(gen_eos, list) else ([gen_eos] if gen_eos is not None else []))

    strength = default_strength(stolen) if delta is None else float(delta)
    out = []
    for start in range(0, len(prompts), batch_size):
        procs: list[Any] = [StolenListLogitsProcessor(stolen, strength)]
        if repetition_penalty != 1.0:
            n = repetition_ngram if repetition_ngram is not None else stolen.context_width + 1
            procs.insert(0, NgramRepetitionPenalty(n, repetition_penalty))
        if eos_ban_z is not None:
            procs.append(EstimatedZEosBan(stolen, sorted(eos), eos_ban_z))
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

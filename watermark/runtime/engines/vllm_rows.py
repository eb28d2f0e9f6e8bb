"""The vLLM plugin's request rows: each request's state, and one engine step over all of them.

A step runs the rows that share a scheme variant and sampling settings as one batch through the
HF processors' own batched code (green lists: one seed computation and one bias for all rows;
forcing decoders: one warper pass, one log-softmax, one PRF draw; one forced-token write for the
whole step). Every one of those operations is row by row, so a row's output is the one its own
batch-1 processor gives (`tests/test_vllm_plugin.py` checks a mixed step against row by row).
Draws from torch's global RNG (SynthID's tournament, hf-kgw's sampling) are taken in the rows'
order, as the row-by-row loop takes them, so even the random tokens are the same for one seed.
Rows of other processors, and rows whose context is still too short for the batch, run alone.
No vllm import here (tested without it).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch

from ...schemes.distortion_free import DistortionFreeLogitsProcessor, FinalDistributionProcessor
from ...schemes.greenlist import GreenListLogitsProcessor
from ...schemes.gumbel import GumbelLogitsProcessor
from ...schemes.hf_kgw import HfKgwLogitsProcessor
from ...schemes.synthid import SynthIDLogitsProcessor, sample

log = logging.getLogger("wm_toolkit.watermark.runtime.engines.vllm_plugin")

# rows of a forcing decoder's batch handled per pass: ~2^18 float64 scores (2 MB) stay in cache,
# where one (32, 49152) pass of the PRF and the logarithms is slower than 32 passes of one row
CHUNK_SCORES = 1 << 18


def force(scores: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Logits that only let `tokens` (one per row) through: whatever samples next emits them."""
    out = torch.full_like(scores, float("-inf"))
    out.scatter_(1, tokens.reshape(-1, 1).to(out.device), 0.0)
    return out


@dataclass
class RowState:
    """One request: its own processor (its own step count, key shift, seen contexts) and ids.

    `group`: rows with equal groups run as one batch (None: alone); `need`: the context ids the
    batch needs (a shorter row runs alone, where its processor says why it cannot); `width`: the
    ids the batch passes (the last `width` of prompt + output)."""

    processor: Any
    prompt: list[int]
    output: list[int]  # vLLM's live list of the request's output ids (grows one token a step)
    draw: bool  # a distribution-returning final processor under sampling (hf-kgw): draw, force
    group: Hashable | None = None
    need: int = 0
    width: int = 1
    step: int = 0  # batched forcing decoders: the step count FinalDistributionProcessor keeps
    length: int = -1  # len(prompt + output) at the last batched step

    def __call__(self, row_logits: torch.Tensor) -> torch.Tensor:
        ids = torch.tensor([self.prompt + self.output], dtype=torch.int64)
        out = self.processor(ids, row_logits)
        if self.draw:  # as transformers' sampling after the processor: multinomial of the softmax
            return force(out, sample(torch.softmax(out, dim=-1)))
        return out

    def batchable(self) -> bool:
        return self.group is not None and len(self.prompt) + len(self.output) >= self.need

    def context(self) -> list[int]:
        """The last `width` ids (zeros in front where the batch does not read them: need < width)."""
        tail = self.output[len(self.output) - self.width :] if self.width <= len(self.output) else None
        if tail is None:
            ids = self.prompt + self.output
            tail = [0] * (self.width - len(ids)) + ids[len(ids) - self.width :]
        return tail

    def advance(self) -> int:
        """The step count of `FinalDistributionProcessor.__call__`: one more where the ids grew by
        one token since the last step (vLLM's output list only grows), else a new generation."""
        n = len(self.prompt) + len(self.output)
        if n == self.length + 1:
            self.step += 1
        else:
            self.step = 0
            self.processor.start(1)
        self.length = n
        return self.step


def batch_group(
    proc: Any, settings: tuple[float, float, int] | None, draw: bool
) -> tuple[Hashable, int, int] | None:
    """(group key, need, width) of a row with this processor, or None where it runs alone. Rows
    share a group when they share the scheme object (one variant) and the sampling settings."""
    scheme = getattr(proc, "scheme", None)
    if isinstance(proc, GreenListLogitsProcessor):  # stateless; the settings act after it
        h = proc.h
        return ("green", id(scheme)), h, max(h, 1)
    if isinstance(proc, HfKgwLogitsProcessor):
        return ("hf-kgw", id(scheme), settings, draw), proc.h, proc.h
    if isinstance(proc, DistortionFreeLogitsProcessor):
        return ("final", id(scheme), type(proc), settings), 0, 1
    if isinstance(proc, GumbelLogitsProcessor | SynthIDLogitsProcessor):
        need = (
            proc.scheme.config.context_width
            if isinstance(proc, GumbelLogitsProcessor)
            else proc.scheme.config.ngram_len - 1
        )
        return ("final", id(scheme), type(proc), settings), need, need
    return None


def _chunks(n: int, vocab: int) -> Iterator[slice]:
    size = max(1, CHUNK_SCORES // max(vocab, 1))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _final_batch(
    rows: list[RowState], ids: torch.LongTensor, scores: torch.Tensor
) -> tuple[str, torch.Tensor]:
    """A forcing decoder's step for rows of one group, a few rows per pass (`CHUNK_SCORES`):
    ("force", tokens) or ("draw", probabilities)."""
    head: FinalDistributionProcessor = rows[0].processor
    steps = torch.tensor([row.advance() for row in rows], dtype=torch.int64)
    synthid = isinstance(head, SynthIDLogitsProcessor)
    batch: Any = copy.copy(head)  # SynthID: the rows' own seen-context sets in one processor
    if synthid:
        seen = [row.processor.seen[0] for row in rows]
    elif isinstance(head, DistortionFreeLogitsProcessor):  # as its pick(): row (tau_b + step_b) mod n
        for row, step in zip(rows, steps.tolist(), strict=True):
            row.processor._warn_if_wrapping(step)
        shifts = torch.cat([row.processor.shifts for row in rows])
        key_rows = (shifts + steps) % head.scheme.config.key_length
    out = torch.empty(0)
    for part in _chunks(len(rows), scores.shape[-1]):
        chunk_ids = cast(torch.LongTensor, ids[part])
        log_probs = head.final_log_probs(chunk_ids, scores[part])
        if synthid:
            batch.seen = seen[part]
            result = batch.distribution(chunk_ids, log_probs)
        elif isinstance(head, DistortionFreeLogitsProcessor):
            result = head.scheme.choose(key_rows[part].to(log_probs.device), log_probs)
        else:  # gumbel: stateless given the context
            result = head.pick(chunk_ids, 0, log_probs)
        if not out.numel():
            out = result.new_empty((len(rows), *result.shape[1:]))
        out[part] = result
    return ("draw" if synthid else "force"), out


def _group_step(
    rows: list[RowState], members: list[int], logits: torch.Tensor
) -> tuple[str, torch.Tensor | None]:
    """One batched call for the rows `members` of one group: ("logits", new rows), ("done", None:
    changed in place), ("force", tokens) or ("draw", probabilities to draw one token from)."""
    ids = cast(torch.LongTensor, torch.tensor([row.context() for row in rows], dtype=torch.int64))
    head = rows[0].processor
    first = members[0]
    contiguous = members == list(range(first, first + len(members)))
    scores = logits[first : first + len(members)] if contiguous else logits[members]
    if isinstance(head, FinalDistributionProcessor):
        return _final_batch(rows, ids, scores)
    if isinstance(head, GreenListLogitsProcessor):
        # in place, one seed computation; numba's serial kernel: its thread pool, woken inside the
        # engine's step on a loaded CPU, cost seconds per step at load 10 (the hashing: ~3 ms)
        head.add_bias_(ids, scores, parallel=False)
        return ("done", None) if contiguous else ("logits", scores)
    out = head(ids, scores)
    if rows[0].draw:
        return "draw", torch.softmax(out, dim=-1)
    return "logits", out


def _stacked(run: list[int], pending: dict[int, tuple[str, torch.Tensor, int]]) -> torch.Tensor:
    """The probabilities of a run of rows, in the run's order (a whole group's tensor as it is)."""
    first = pending[run[0]][1]
    if len(run) == first.shape[0] and all(
        pending[i][1] is first and pending[i][2] == k for k, i in enumerate(run)
    ):
        return first
    return torch.stack([pending[i][1][pending[i][2]] for i in run])


def run_step(rows: dict[int, RowState], logits: torch.Tensor) -> torch.Tensor:
    """All watermarked rows of one engine step (in place on `logits`); a row that fails is
    dropped from `rows` and left unwatermarked, as the engine must go on."""
    groups: dict[Hashable, list[int]] = {}
    for index, row in rows.items():
        if row.batchable():
            groups.setdefault(row.group, []).append(index)
    pending: dict[int, tuple[str, torch.Tensor, int]] = {}  # row -> (kind, group result, position)
    forced: list[int] = []
    tokens: list[torch.Tensor] = []
    for members in groups.values():
        try:
            kind, result = _group_step([rows[i] for i in members], members, logits)
        except Exception as exc:  # never take the engine down; these requests go on unwatermarked
            for index in members:
                log.error("wm watermark: request row %d left unwatermarked: %s", index, exc)
                rows.pop(index, None)
            continue
        if kind == "done" or result is None:
            continue
        if kind == "logits":
            logits[members] = result
        elif kind == "force":
            forced.extend(members)
            tokens.append(result)
        else:
            pending.update((index, (kind, result, k)) for k, index in enumerate(members))
    run: list[int] = []  # consecutive rows to draw for: one multinomial, in the rows' order
    entries: list[tuple[int, RowState | None]] = [*rows.items(), (-1, None)]
    for index, state in entries:
        if index in pending:
            run.append(index)
            continue
        if run:  # torch's RNG is drawn in the order of the rows, as row by row
            forced.extend(run)
            tokens.append(sample(_stacked(run, pending)).cpu())
            run = []
        if state is not None and not state.batchable():  # alone, as before batching
            try:
                logits[index] = state(logits[index : index + 1])[0]
            except Exception as exc:
                log.error("wm watermark: request row %d left unwatermarked: %s", index, exc)
                rows.pop(index, None)
    if forced:
        idx = torch.tensor(forced, device=logits.device)
        logits.index_fill_(0, idx, float("-inf"))
        logits[idx, torch.cat(tokens).to(logits.device)] = 0.0
    return logits

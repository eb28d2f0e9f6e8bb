"""Per-position entropies of a language model's next-token distribution, for entropy-aware
detection (SWEET, EWD).

Position t gets the entropy of the model's distribution of token t given the tokens before it,
read from one forward pass of the text alone: the prompt is not needed (nor used), and the first
token is predicted from the start token (BOS, else EOS). Texts are batched by length with right
padding under a token budget; a text longer than `window` is cut into windows that each keep
the `context` tokens before them, so memory stays bounded. `forward_logits` yields the raw logits
of the same passes (the LLR score of the reweight schemes reads full distributions from it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class PositionEntropies:
    """`shannon`: -sum p log p (nats) per token; `spike`: sum p / (1 + z p) (KGW's spike entropy,
    modulus z), when a modulus was given."""

    shannon: np.ndarray
    spike: np.ndarray | None = None


def spike_modulus(gamma: float, delta: float) -> float:
    """KGW's spike-entropy modulus z = (1 - gamma)(e^delta - 1) / (1 - gamma + e^delta gamma)."""
    a = math.exp(delta)
    return (1.0 - gamma) * (a - 1.0) / (1.0 - gamma + a * gamma)


def start_token(tokenizer: Any) -> int:
    """The id a text is predicted from: BOS, else EOS."""
    for tok in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tok is not None:
            return int(tok)
    raise ConfigError("the entropy model's tokenizer has neither a BOS nor an EOS token to start a text from")


def _pieces(
    texts: Sequence[np.ndarray],
    prefixes: Sequence[Sequence[int] | None],
    start_id: int,
    window: int,
    context: int,
) -> list[tuple]:
    """(text index, first predicted position, input ids, offset of that position in the input).
    A text follows its prefix (None: the start token); the first piece keeps the whole prefix."""
    out = []
    for i, ids in enumerate(texts):
        n = len(ids)
        prefix = np.asarray([start_id] if prefixes[i] is None else prefixes[i], dtype=np.int64)
        if n == 0:
            continue
        m = len(prefix)
        seq = np.concatenate([prefix, np.asarray(ids[:-1], dtype=np.int64)])
        for a in range(0, n, window):
            c0 = 0 if a == 0 else max(0, m - 1 + a - context)
            out.append((i, a, seq[c0 : m - 1 + min(n, a + window)], m - 1 + a - c0))
    return out


def _entropies(logits: torch.Tensor, modulus: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    shannon = (-torch.where(p > 0, p * logp, 0.0).sum(-1)).clamp_min(0.0)  # a -inf logit adds 0
    spike = (p / (1.0 + modulus * p)).sum(-1) if modulus is not None else None
    return shannon, spike


def forward_logits(
    model: Any,
    texts: Sequence[np.ndarray],
    start_id: int,
    *,
    max_batch_tokens: int = 1024,
    window: int = 1024,
    context: int = 256,
    prefixes: Sequence[Sequence[int] | None] | None = None,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(text index i, first position a, logits (count, V)): row r predicts token a + r of text i
    from the tokens before it, after its prefix (`prefixes[i]`, e.g. the formatted prompt; None or
    no `prefixes`: the start token), one piece of a text at a time. Pieces are batched by length
    with right padding under `max_batch_tokens`; memory stays bounded by the batch."""
    if window < 1 or not 0 <= context < window:
        raise ValueError("need window >= 1 and 0 <= context < window")
    prefixes = [None] * len(texts) if prefixes is None else prefixes
    if len(prefixes) != len(texts):
        raise ValueError("one prefix (or None) per text")
    pieces = sorted(_pieces(texts, prefixes, start_id, window, context), key=lambda p: len(p[2]))
    device = next(model.parameters()).device
    start = 0
    while start < len(pieces):  # sorted by length: a batch is as wide as its last piece
        stop = start + 1
        while stop < len(pieces) and (stop + 1 - start) * len(pieces[stop][2]) <= max_batch_tokens:
            stop += 1
        batch = pieces[start:stop]
        width = max(len(p[2]) for p in batch)
        x = torch.zeros((len(batch), width), dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (_, _, seq, _) in enumerate(batch):
            x[r, : len(seq)] = torch.from_numpy(seq)
            attn[r, : len(seq)] = 1
        with torch.inference_mode():
            logits = model(input_ids=x.to(device), attention_mask=attn.to(device)).logits
        for r, (i, a, seq, off) in enumerate(batch):
            yield i, a, logits[r, off : len(seq)]
        start = stop


def position_entropies(
    model: Any,
    texts: Sequence[np.ndarray],
    start_id: int,
    *,
    modulus: float | None = None,
    max_batch_tokens: int = 1024,
    window: int = 1024,
    context: int = 256,
) -> list[PositionEntropies]:
    """Entropies of each text's positions (one array entry per token), batched forward passes."""
    shannon = [np.zeros(len(t)) for t in texts]
    spike = [np.zeros(len(t)) for t in texts] if modulus is not None else None
    passes = forward_logits(
        model, texts, start_id, max_batch_tokens=max_batch_tokens, window=window, context=context
    )
    for i, a, logits in passes:
        with torch.inference_mode():
            h, s = _entropies(logits, modulus)
        shannon[i][a : a + len(h)] = h.double().cpu().numpy()
        if spike is not None and s is not None:
            spike[i][a : a + len(s)] = s.double().cpu().numpy()
    return [PositionEntropies(shannon[i], None if spike is None else spike[i]) for i in range(len(texts))]

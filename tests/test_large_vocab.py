"""Large vocabularies: the fused CPU green-list kernel gives exactly the torch path's bits, so
generation (which uses it) and detection (per-token `below`) keep agreeing at any vocabulary size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wm_toolkit.watermark.keying import prf
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme


@pytest.mark.parametrize("vocab", [1, 7, 49_152, 262_144])
@pytest.mark.parametrize("gamma", [0.25, 0.5, 1e-6, 0.999])
def test_fused_vocab_below_equals_the_torch_path(vocab, gamma):
    rng = np.random.default_rng(vocab)
    seeds = torch.tensor([0, -1, 2**63 - 1, -(2**63), *rng.integers(-(2**63), 2**63 - 1, 4, dtype=np.int64)])
    assert torch.equal(prf.vocab_below(seeds, vocab, gamma), prf.vocab_below_torch(seeds, vocab, gamma))


def test_processor_bias_matches_the_per_token_green_test_at_262k():
    v = 262_144
    scheme = build_scheme(GreenListConfig(vocab_size=v), Key.from_seed("big"))
    ids = torch.tensor([[5, 17], [3, 262_143]])
    scores = torch.randn(2, v + 6)  # a model may pad its logits past the vocabulary
    out = scheme.processor()(ids, scores)
    seeds = torch.from_numpy(scheme.seeds_for(ids[:, -1:].numpy()))
    green = scheme.is_green(seeds.reshape(-1, 1), torch.arange(v).reshape(1, -1))
    assert torch.equal(out[:, :v] - scores[:, :v] > 1.0, green)
    assert torch.equal(out[:, v:], scores[:, v:])


@pytest.mark.parametrize("delta", [2.0, 1.7])
def test_fused_processor_step_equals_the_mask_path(delta):
    v = 262_144
    scheme = build_scheme(GreenListConfig(vocab_size=v, delta=delta), Key.from_seed("big"))
    ids = torch.tensor([[5, 17], [3, 262_143], [9, 9]])
    scores = torch.randn(3, v + 6)
    fused = scheme.processor()(ids, scores)
    mask = scheme.processor().green_mask(ids, v)
    reference = scores.clone()
    reference[:, :v].add_(mask.to(scores.dtype), alpha=delta)
    assert torch.equal(fused, reference)

"""The green-list step adds delta with the same bits in one thread or many (issue 32, item 6).

Small steps (a batch-1 row at a 49,152-token vocabulary) run the serial kernel, so numba's thread
pool does not fight torch's between two forward passes; large ones the parallel kernel. Both must
give exactly what the torch reference (`vocab_below_torch`) gives.
"""

from __future__ import annotations

import pytest
import torch

from wm_toolkit.watermark.keying import prf

pytestmark = pytest.mark.skipif(prf._fused_kernels() is None, reason="numba is off")


@pytest.mark.parametrize("parallel_min", [0, 1 << 62])  # every step parallel, every step serial
@pytest.mark.parametrize("batch,vocab", [(1, 49152), (3, 1000)])
def test_serial_and_parallel_steps_add_delta_to_the_reference_green_list(
    monkeypatch, parallel_min, batch, vocab
):
    monkeypatch.setattr(prf, "PARALLEL_MIN_ELEMENTS", parallel_min)
    seeds = torch.tensor([7, 12345, 2**62][:batch], dtype=torch.int64)
    scores = torch.randn(batch, vocab)
    out = scores.clone()
    assert prf.add_below_(out, seeds, 0.25, 2.0)
    expected = scores + 2.0 * prf.vocab_below_torch(seeds, vocab, 0.25).to(scores.dtype)
    assert torch.equal(out, expected)


def test_a_batch_1_step_at_a_small_models_vocabulary_is_below_the_parallel_threshold():
    assert 1 * 49152 < prf.PARALLEL_MIN_ELEMENTS <= 8 * 262144

"""The numba paths of vLLM's native-watermark detector equal the numpy reference bit for bit (issue 27).

`keying.philox`'s kernels (integer arithmetic) give `levels_numpy`'s levels; `vllm_kernel`'s one
pass (hash de-duplication, Philox, portable logs, per-text sums) gives what `batch` + `np.bincount`
give, for every de-duplication mode, history bound, context width and two-key statistic. Run
interpreted too (`NUMBA_DISABLE_JIT=1`, `make test-numerics`).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wm_toolkit.watermark.keying import philox
from wm_toolkit.watermark.keying.vllmkey import VllmKey
from wm_toolkit.watermark.schemes import build_scheme, vllm_kernel

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered")  # uint64 wrap-around, interpreted
needs_numba = pytest.mark.skipif(vllm_kernel.kernel() is None, reason="numba is off")


@needs_numba
@pytest.mark.parametrize("w", [1, 3, 4, 5, 9])
def test_philox_kernels_give_the_numpy_levels(w):
    rng = np.random.default_rng(w)
    key = int(rng.integers(0, 2**63)) * 2 + 1  # both 32-bit halves in use
    contexts = rng.integers(-1, 1 << 24, (300, w))  # -1: before the text
    tokens = rng.integers(0, 1 << 24, (300, 1))
    assert np.array_equal(philox.levels(key, contexts, tokens), philox.levels_numpy(key, contexts, tokens))
    vocab = np.arange(700)
    grid = philox.levels(key, contexts[:3], vocab)
    assert grid.shape == (3, 700) and np.array_equal(grid, philox.levels_numpy(key, contexts[:3], vocab))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


TEXTS_SPEC = ((3, 60), (2, 5), (50, 40), (4, 1), (3, 90), (49152, 120), (5, 300))


@needs_numba
@pytest.mark.parametrize("mode", ["none", "single_turn", "all"])
@pytest.mark.parametrize("history", [None, 1, 5])
def test_one_pass_kernel_equals_the_numpy_path(mode, history):
    """Masks, sums, statistic sums and counts, byte for byte; small vocabularies make repeated
    contexts and pairs (and hash-table probes) common."""
    rng = np.random.default_rng(17)
    texts = [rng.integers(0, k, size) for k, size in TEXTS_SPEC]
    schemes = [("vllm-gumbel", "fusion")] + [("vllm-dual-key-gumbel", s) for s in ("fusion", "max")]
    for w, (name, stat) in itertools.product([1, 2, 4, 5], schemes):
        s = build_scheme(
            {"scheme": name, "vocab_size": 49152, "deduplicate_contexts": mode, "context_width": w,
             "deduplicate_contexts_max_history": history, "dual_statistic": stat},
            VllmKey(77),
        )  # fmt: skip
        got, want = s.text_sums(texts), s._text_sums_numpy(texts)
        for field in ("scored", "first", "sums", "vsums", "stat", "t", "vn", "starts"):
            assert _same(getattr(got, field), getattr(want, field)), (w, name, stat, field)


@needs_numba
def test_detect_is_the_same_on_both_paths(monkeypatch):
    rng = np.random.default_rng(4)
    texts = [rng.integers(0, 40, 150) for _ in range(3)]
    s = build_scheme({"scheme": "vllm-dual-key-gumbel", "vocab_size": 49152}, VllmKey(5))
    fast = s.detect_many(texts)
    monkeypatch.setattr(vllm_kernel, "_KERNEL", [None])
    slow = s.detect_many(texts)
    assert fast == slow

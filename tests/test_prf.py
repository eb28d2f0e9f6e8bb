"""The shared PRF: deterministic, bit-exact across paths, uniform, independent across keys."""

import numpy as np
import pytest
import torch
from scipy import stats

from wm_toolkit.watermark.keying import prf
from wm_toolkit.watermark.keying.keys import Key

MASK64 = (1 << 64) - 1


def reference_mix(seed: int, counter: int) -> int:
    """SplitMix64 increment + MurmurHash3 fmix64 in plain Python integers (unsigned, mod 2^64)."""
    z = (seed + (counter + 1) * 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 33)) * 0xFF51AFD7ED558CCD) & MASK64
    z = ((z ^ (z >> 33)) * 0xC4CEB9FE1A85EC53) & MASK64
    return z ^ (z >> 33)


def test_mix_matches_unsigned_reference_bit_for_bit():
    rng = np.random.default_rng(0)
    seeds = rng.integers(-(2**63), 2**63 - 1, size=200, dtype=np.int64)
    counters = rng.integers(0, 200_000, size=200, dtype=np.int64)
    got = prf.mix(torch.from_numpy(seeds), torch.from_numpy(counters)).numpy().view(np.uint64)
    want = [reference_mix(int(s) & MASK64, int(c)) for s, c in zip(seeds, counters, strict=True)]
    assert [int(x) for x in got] == want


def test_vocab_wide_and_per_token_paths_agree_exactly():
    sub = Key.from_seed(1).derive("t")
    seeds = torch.from_numpy(prf.context_seeds(sub, np.arange(12).reshape(6, 2)))
    table = prf.vocab_uniforms(seeds, 5000)
    rows = torch.arange(6).repeat_interleave(50)
    toks = torch.randint(0, 5000, (300,))
    per_token = prf.uniforms(seeds[rows], toks)
    assert torch.equal(per_token, table[rows, toks])
    green_table = prf.below(seeds[:, None], torch.arange(5000)[None, :], 0.25)
    assert torch.equal(prf.below(seeds[rows], toks, 0.25), green_table[rows, toks])


def test_seeds_are_deterministic_and_shared_by_repeated_contexts():
    sub = Key.from_seed(2).derive("t")
    ctx = np.array([[5, 7], [1, 2], [5, 7]])
    a = prf.context_seeds(sub, ctx)
    assert a[0] == a[2] and a[0] != a[1]
    assert np.array_equal(a, prf.context_seeds(sub, ctx))
    assert len(set(prf.context_seeds(sub, np.zeros((4, 0), dtype=np.int64)))) == 1


def test_uniforms_pass_chi_square_and_stay_inside_open_interval():
    # false-failure probability 1e-4 for a fresh key; the key is fixed, so the test is deterministic
    sub = Key.from_seed(3).derive("t")
    seeds = torch.from_numpy(prf.position_seeds(sub, range(20)))
    u = prf.vocab_uniforms(seeds, 10_000).reshape(-1).numpy()
    counts, _ = np.histogram(u, bins=50, range=(0, 1))
    assert stats.chisquare(counts).pvalue > 1e-4
    assert u.min() > 0.0 and u.max() < 1.0


def test_below_hits_the_requested_fraction():
    seeds = torch.from_numpy(prf.position_seeds(Key.from_seed(4).derive("t"), range(10)))
    frac = prf.below(seeds[:, None], torch.arange(20_000)[None, :], 0.25).float().mean().item()
    assert abs(frac - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 200_000)


@pytest.mark.parametrize("other", ["another key", "another purpose"])
def test_different_keys_and_purposes_are_uncorrelated(other):
    base = Key.from_seed(5)
    sub_a = base.derive("greenlist")
    sub_b = Key.from_seed(6).derive("greenlist") if other == "another key" else base.derive("exp")
    assert sub_a != sub_b
    ctx = np.arange(400).reshape(-1, 1)
    ua = prf.vocab_uniforms(torch.from_numpy(prf.context_seeds(sub_a, ctx)), 500).reshape(-1).numpy()
    ub = prf.vocab_uniforms(torch.from_numpy(prf.context_seeds(sub_b, ctx)), 500).reshape(-1).numpy()
    r = np.corrcoef(ua, ub)[0, 1]
    assert abs(r) < 5 / np.sqrt(ua.size)  # |r| ~ N(0, 1/n) under independence


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cpu_and_gpu_bits_are_identical():
    seeds = torch.from_numpy(prf.position_seeds(Key.from_seed(7).derive("t"), range(8)))
    cpu = prf.mix(seeds[:, None], torch.arange(49152)[None, :])
    gpu = prf.mix(seeds.cuda()[:, None], torch.arange(49152, device="cuda")[None, :]).cpu()
    assert torch.equal(cpu, gpu)


def test_seed_cache_returns_exactly_the_uncached_seeds():
    sub = Key.from_seed(8).derive("t")
    cache = prf.SeedCache(sub)
    rng = np.random.default_rng(0)
    for _ in range(3):  # grows, hits and misses
        ctx = rng.integers(0, 60_000, size=(500, 1))
        assert np.array_equal(cache(ctx), prf.context_seeds(sub, ctx))
    wide = rng.integers(0, 100, size=(20, 3))
    assert np.array_equal(cache(wide), prf.context_seeds(sub, wide))


@pytest.mark.skipif(prf._uniform_kernel() is None, reason="numba is off")
def test_the_fused_vocabulary_uniforms_are_the_torch_paths_bit_for_bit():
    """The numba loop behind `vocab_uniforms` on CPU against the torch reference, on seeds that
    wrap the 64-bit sums (negative, extreme) at a small and a 49,152-token vocabulary."""
    seeds = torch.tensor([0, 7, -1, 2**63 - 1, -(2**63), 123456789123], dtype=torch.int64)
    for vocab in (5, 49152):
        fused = prf.vocab_uniforms(seeds, vocab)
        assert fused.dtype == torch.float64 and torch.equal(fused, prf.vocab_uniforms_torch(seeds, vocab))
    assert prf.vocab_uniforms(seeds[:0], 9).shape == (0, 9)

"""Aaronson's Gumbel watermark: distortion-free decoder, exact Gamma null, deduplicated pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special
from scipy import stats as sps

from wm_toolkit.watermark.config import default_config
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.schemes import GumbelScheme, TextTooShortError, build_scheme

MU = np.array([0.35, 0.25, 0.12, 0.1, 0.08, 0.05, 0.03, 0.02, 0.0])


def scheme(key: str = "gumbel-tests", **fields) -> GumbelScheme:
    return build_scheme({"scheme": "gumbel", **fields}, Key.from_seed(key))


def test_default_context_width_and_validation():
    assert default_config("gumbel").context_width == 4
    with pytest.raises(ConfigError):
        default_config("gumbel", context_width=0)


def test_decoder_output_follows_the_distribution_over_contexts():
    """6000 distinct contexts act as independent keys; chi-square at level 0.001 (fixed seeds)."""
    s = scheme(context_width=2)
    contexts = np.stack([np.arange(6000) // 100, np.arange(6000) % 100], axis=1)
    log_probs = torch.log(torch.tensor(MU, dtype=torch.float64)).expand(6000, -1)
    counts = np.bincount(s.choose(contexts, log_probs).numpy(), minlength=len(MU))
    assert counts[-1] == 0
    assert sps.chisquare(counts[:-1], 6000 * MU[:-1]).pvalue > 1e-3


def test_mean_score_of_the_chosen_token_matches_the_exponential_race():
    """E[-log(1 - r_y)] = sum_v p_v (psi(1 + 1/p_v) + euler_gamma) (papers.md section 3), within
    4 standard errors over 6000 contexts (false-failure probability about 6e-5)."""
    s = scheme(context_width=1)
    contexts = np.arange(6000).reshape(-1, 1)
    log_probs = torch.log(torch.tensor(MU, dtype=torch.float64)).expand(6000, -1)
    tokens = s.choose(contexts, log_probs).numpy()
    from wm_toolkit.watermark.keying import prf

    r = prf.uniforms(torch.from_numpy(s.seeds_for(contexts)), torch.from_numpy(tokens)).numpy()
    scores = -np.log1p(-r)
    p = MU[MU > 0]
    expected = float(np.sum(p * (special.digamma(1 + 1 / p) + np.euler_gamma)))
    assert abs(scores.mean() - expected) < 4 * scores.std() / np.sqrt(len(scores))
    assert expected > 1.0  # more than the null mean: that is the watermark


def test_p_value_is_the_exact_gamma_tail_and_uniform_under_h0():
    """Random texts under their own keys: the Gamma null is exact, so p is uniform (KS at 0.001)."""
    rng = np.random.default_rng(0)
    ps = [scheme(f"k{i}").detect(rng.integers(0, 50_000, 30)).p_value for i in range(300)]
    assert sps.kstest(ps, "uniform").pvalue > 1e-3


def test_repeated_context_token_pairs_are_scored_once():
    s = scheme(context_width=2)
    ids = [1, 2, 3, 1, 2, 3, 1, 2, 3, 9]  # windows (1,2,3), (2,3,1), (3,1,2) repeat
    d = s.detect(ids)
    assert d.num_tokens_scored == 4  # (1,2,3) (2,3,1) (3,1,2) (2,3,9)
    assert d.token_mask[:2] == (-1, -1) and sum(x == 1 for x in d.token_mask) == 4


def test_generation_is_detected_and_deterministic_given_the_context(tiny_model, tokenizer):
    s = scheme(vocab_size=len(tokenizer))
    prompts = ["Tell me about rivers.", "Hi"]
    a = generate(tiny_model, tokenizer, prompts, scheme=s, max_new_tokens=20, min_new_tokens=20, seed=0)
    b = generate(tiny_model, tokenizer, prompts, scheme=s, max_new_tokens=20, min_new_tokens=20, seed=123)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]  # the sampling seed plays no part
    for g in a:
        assert s.detect(g.token_ids).p_value < 1e-4
        assert scheme("another key", vocab_size=len(tokenizer)).detect(g.token_ids).p_value > 1e-3


def test_short_text_is_an_input_error():
    with pytest.raises(TextTooShortError):
        scheme().detect([1, 2, 3, 4])

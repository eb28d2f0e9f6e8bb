"""SynthID-Text on wm's PRF: tournament sampling, distortion-free in expectation, exact g-score nulls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from wm_toolkit.watermark.config import default_config
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.schemes import SynthIDScheme, TextTooShortError, build_scheme
from wm_toolkit.watermark.schemes.synthid import fair_coin_null, layer_weights, tournament

MU = np.array([0.35, 0.25, 0.12, 0.1, 0.08, 0.05, 0.03, 0.02, 0.0])


def scheme(key: str = "synthid-tests", **fields) -> SynthIDScheme:
    return build_scheme({"scheme": "synthid", **fields}, Key.from_seed(key))


def test_defaults_and_validation():
    cfg = default_config("synthid")
    assert (cfg.ngram_len, cfg.num_layers, cfg.score) == (5, 30, "weighted")
    for bad in ({"ngram_len": 1}, {"num_layers": 0}, {"num_layers": 65}, {"score": "bayesian"}):
        with pytest.raises(ConfigError):
            default_config("synthid", **bad)


def test_layer_weights_are_the_papers_linspace_as_integers():
    w = layer_weights(30)
    assert w.tolist() == [290 - 9 * i for i in range(30)]
    assert np.allclose(w / w.sum() * 30, np.linspace(10, 1, 30) / np.linspace(10, 1, 30).sum() * 30)
    assert layer_weights(1).tolist() == [1]


def test_tournament_formula_is_the_marginal_of_an_explicit_knockout():
    """m = 3 layers: 8 i.i.d. candidates from p, paired layer by layer, the higher g wins, ties
    broken at random. 40,000 simulated tournaments against the closed form (chi-square at 1e-3)."""
    rng = np.random.default_rng(0)
    p = MU[MU > 0] / MU[MU > 0].sum()
    g = rng.integers(0, 2, (3, len(p)))  # one fixed context: g_l(x)
    patterns = torch.from_numpy((g << np.arange(3)[:, None]).sum(axis=0)).reshape(1, -1)
    want = tournament(torch.from_numpy(p).reshape(1, -1), patterns, 3)[0].numpy()
    want = want / want.sum()  # float32 inside: renormalise for the chi-square bookkeeping
    trials = 40_000
    cand = rng.choice(len(p), size=(trials, 8), p=p)
    for layer in range(3):
        a, b = cand[:, 0::2], cand[:, 1::2]
        ga, gb = g[layer][a], g[layer][b]
        coin = rng.integers(0, 2, a.shape).astype(bool)
        cand = np.where((ga > gb) | ((ga == gb) & coin), a, b)
    counts = np.bincount(cand[:, 0], minlength=len(p))
    assert sps.chisquare(counts, trials * want).pvalue > 1e-3


def test_decoder_is_distortion_free_over_contexts():
    """6000 distinct contexts act as independent keys; the sampled token follows mu (chi-square
    at level 0.001 with fixed seeds) and zero-probability tokens are never produced."""
    s = scheme(ngram_len=3)
    contexts = np.stack([np.arange(6000) // 100, np.arange(6000) % 100], axis=1)
    probs = torch.tensor(MU, dtype=torch.float64).expand(6000, -1)
    out = s.watermarked_probs(contexts, probs)
    assert torch.allclose(out.sum(dim=1), torch.ones(6000, dtype=torch.float64), atol=1e-5)
    tokens = torch.multinomial(out, 1, generator=torch.Generator().manual_seed(0)).flatten().numpy()
    counts = np.bincount(tokens, minlength=len(MU))
    assert counts[-1] == 0
    assert sps.chisquare(counts[:-1], 6000 * MU[:-1]).pvalue > 1e-3
    # ... while under its own key the chosen token's g-values lean to 1 (the watermark)
    g = s.g_values(contexts, tokens)
    assert g.mean() > 0.53


def test_mean_score_null_is_exactly_binomial_and_weighted_is_the_exact_convolution():
    s = scheme()
    ids = np.random.default_rng(3).integers(0, 50_000, 40)
    d = s.detect(ids)
    n, m = d.num_tokens_scored, d.layers
    count = round(d.mean_score * n * m)
    assert d.p_value_mean == pytest.approx(sps.binom.sf(count - 1, n * m, 0.5), rel=1e-9)
    w = layer_weights(m)
    wsum = round(d.weighted_mean_score * n * w.sum())
    dist = np.ones(1)
    for _ in range(n):
        dist = np.convolve(dist, fair_coin_null(m).weighted_pmf)
    assert d.p_value_weighted == pytest.approx(dist[wsum:].sum(), rel=1e-7)
    assert d.p_value == d.p_value_weighted and d.statistic == wsum
    assert scheme(score="mean").detect(ids).p_value == d.p_value_mean


def test_null_p_values_are_valid_over_keys():
    """150 texts of 30 random tokens, each under its own key. Both scores are super-uniform: at
    most 16 of 150 at p <= 0.05 (expected <= 7.5; P[Binomial(150, 0.05) > 16] = 0.0014) and at
    most 90 at p <= 0.5 (0.0056), for either score: false-failure probability below 0.015."""
    rng = np.random.default_rng(5)
    dets = [scheme(f"null-{i}").detect(rng.integers(0, 50_000, 30)) for i in range(150)]
    for ps in ([d.p_value_mean for d in dets], [d.p_value_weighted for d in dets]):
        ps = np.array(ps)
        assert np.all((ps > 0) & (ps <= 1))
        assert (ps <= 0.05).sum() <= 16
        assert (ps <= 0.5).sum() <= 90


def test_repeated_contexts_are_scored_once():
    s = scheme(ngram_len=3)
    ids = [1, 2, 3, 1, 2, 4, 1, 2, 3, 9]  # contexts (1,2) x3, (2,3) x2, (3,1), (2,4), (4,1), (3,9)...
    d = s.detect(ids)
    windows = {tuple(ids[i : i + 2]) for i in range(len(ids) - 2)}
    assert d.num_tokens_scored == len(windows)
    assert d.token_mask[:2] == (-1, -1) and d.token_mask[2:5] == (1, 1, 1) and d.token_mask[5] == 0
    with pytest.raises(TextTooShortError):
        s.detect([1, 2])


def test_processor_leaves_a_rows_repeated_context_unwatermarked():
    s = scheme(ngram_len=3, vocab_size=len(MU))
    proc = s.processor()
    proc.start(2)
    lp = torch.log(torch.tensor(MU, dtype=torch.float64)).expand(2, -1).clone()
    ids = torch.tensor([[4, 5], [6, 7]])
    first = proc.distribution(ids, lp)
    assert not torch.allclose(first, lp.exp())  # fresh contexts: the tournament reshapes p
    again = proc.distribution(torch.tensor([[4, 5], [1, 2]]), lp)
    assert torch.allclose(again[0], lp.exp()[0]) and not torch.allclose(again[1], lp.exp()[1])


def test_generation_is_detected_end_to_end(tiny_model, tokenizer):
    s = scheme(vocab_size=len(tokenizer))
    prompts = ["Tell me about rivers.", "Hi"]
    gens = generate(tiny_model, tokenizer, prompts, scheme=s, max_new_tokens=20, min_new_tokens=20, seed=0)
    other = scheme("another key", vocab_size=len(tokenizer))
    for g in gens:
        d = s.detect(g.token_ids)
        assert d.p_value < 1e-4 and d.p_value_mean < 1e-3, d
        assert other.detect(g.token_ids).p_value > 1e-3
    # the tournament samples with torch's RNG: the same --seed gives the same texts
    again = generate(tiny_model, tokenizer, prompts, scheme=s, max_new_tokens=20, min_new_tokens=20, seed=0)
    assert [g.token_ids for g in gens] == [g.token_ids for g in again]


def test_p_value_floor_is_every_g_value_one():
    """The smallest p either score can reach: all N m g-values equal to 1, probability 2^-(N m)."""
    d = scheme(num_layers=30).detect(np.arange(14))
    assert d.num_tokens_scored == 10
    assert d.p_value_floor == pytest.approx(2.0**-300, rel=1e-9)
    assert math.isfinite(d.log10_p_value)

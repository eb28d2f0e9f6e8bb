"""Entropy-aware detection (SWEET, EWD): the weighted nulls are exact, the tests are valid under
H0, and equal weights give back the plain tests."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.entropy import PositionEntropies, position_entropies, start_token
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.entropy_aware import (
    SWEET_THRESHOLD,
    detect_weighted,
    entropy_weights,
    weighted_first,
)
from wm_toolkit.watermark.statistics import weighted as W
from wm_toolkit.watermark.statistics.pvalues import log10_gamma_pair_tail

V = 49152
CONFIGS = [
    {"scheme": "kgw"},
    {"scheme": "kgw", "seeding": "selfhash"},
    {"scheme": "unigram"},
    {"scheme": "gumbel"},
]


def _scheme(cfg: dict, seed, vocab: int = V):
    return build_scheme({**cfg, "vocab_size": vocab}, Key.from_seed(seed))


# ---- the weighted tails against brute force -------------------------------------------------


def test_weighted_binomial_tail_equals_enumeration():
    k, g = np.array([1, 3, 3, 5, 2, 7, 1, 4]), 0.3
    for observed in range(0, int(k.sum()) + 2):
        brute = sum(
            math.prod(g if b else 1 - g for b in bits)
            for bits in itertools.product([0, 1], repeat=k.size)
            if sum(b * w for b, w in zip(bits, k, strict=True)) >= observed
        )
        got = 10 ** W.log10_weighted_binomial_tail(k, observed, g)
        assert got == pytest.approx(brute, rel=1e-9, abs=1e-300)


def test_weighted_hypergeom_tail_equals_enumeration_of_every_list():
    """A list of 4 of 12 tokens, 8 of them in the text with weights k: every list counted."""
    k, vocab, marked = np.array([1, 3, 3, 5, 2, 7, 1, 4]), 12, 4
    lists = list(itertools.combinations(range(vocab), marked))
    for observed in range(0, int(k.sum()) + 2):
        hits = sum(sum(int(k[i]) for i in g if i < k.size) >= observed for g in lists)
        got = 10 ** W.log10_weighted_hypergeom_tail(k, observed, vocab, marked)
        assert got == pytest.approx(hits / len(lists), rel=1e-9, abs=1e-300)


def _hypoexponential_log10_tail(weights, s):
    """P[sum w_i E_i >= s] for distinct w_i at 60 digits (the textbook partial fractions)."""
    import mpmath as mp

    mp.mp.dps = 60
    rates = [mp.mpf(1) / w for w in weights]
    tail = sum(
        mp.e ** (-r * s) * mp.fprod([q / (q - r) for q in rates if q != r])
        for r in rates  # exact arithmetic at this precision: no cancellation left
    )
    return float(mp.log10(tail))


@pytest.mark.parametrize("score", [1.0, 10.0, 40.0, 100.0, 400.0, 2000.0])
def test_weighted_gamma_tail_is_the_hypoexponential_and_never_below_it(score):
    weights = np.array([1, 2, 3, 5, 8])
    exact = _hypoexponential_log10_tail(weights.tolist(), score)
    got = W.log10_weighted_gamma_tail(weights, score)
    assert got == pytest.approx(exact, rel=1e-7, abs=1e-8)  # FFT rounding: ~1e-9 of the bulk
    assert got >= exact - 1e-9 * max(1.0, abs(exact))  # conservative up to float rounding


@pytest.mark.parametrize("score", [50.0, 200.0, 800.0, 1500.0])
def test_weighted_gamma_tail_with_repeated_weights_equals_the_two_gamma_series(score):
    """Two levels with 20 tokens each: a X + b Y with X, Y ~ Gamma(20), the pair series."""
    k = np.array([1] * 20 + [3] * 20)
    assert W.log10_weighted_gamma_tail(k, score) == pytest.approx(
        log10_gamma_pair_tail(score, 20, 3.0, 1.0), rel=1e-7
    )


def test_weighted_gamma_tail_beyond_the_float_range_is_a_bound_above_the_exact_tail():
    k = np.array([1] * 20 + [3] * 20)
    exact = log10_gamma_pair_tail(3000.0, 20, 3.0, 1.0)  # about 1e-391
    got = W.log10_weighted_gamma_tail(k, 3000.0)
    assert exact < got < exact + 3.0  # the Chernoff bound: valid, within a polynomial factor


def test_equal_levels_reduce_to_the_plain_tails():
    from wm_toolkit.watermark.statistics import pvalues as P

    assert W.log10_weighted_binomial_tail(np.full(50, 7), 7 * 20, 0.25) == P.log10_binomial_tail(20, 50, 0.25)
    assert W.log10_weighted_hypergeom_tail(np.full(30, 5), 5 * 12, 1000, 250) == P.log10_hypergeom_tail(
        12, 1000, 250, 30
    )
    assert W.log10_weighted_gamma_tail(np.full(40, 3), 3 * 55.5) == pytest.approx(
        P.log10_gamma_tail(55.5, 40)
    )


def test_quantize_weights_keeps_ratios_and_zeros():
    q = W.quantize_weights([0.0, 0.5, 1.0, 2.0], levels=32)
    assert q.tolist() == [0, 8, 16, 32]
    assert W.quantize_weights([0.0, 0.0]).tolist() == [0, 0]
    with pytest.raises(ValueError):
        W.quantize_weights([1.0, -0.1])


def test_long_unigram_text_falls_back_to_a_bound_above_the_exact_tail(monkeypatch):
    """Past the programme's budget the Chernoff bound of the independent sum answers; it is
    never below the exact (programme) tail."""
    rng = np.random.default_rng(5)
    k = rng.integers(1, 9, 40)
    observed = int(k.sum() * 0.45)
    exact = W.log10_weighted_hypergeom_tail(k, observed, 400, 100)
    monkeypatch.setattr(W, "SUBSET_DP_BUDGET", 10)
    bound = W.log10_weighted_hypergeom_tail(k, observed, 400, 100)
    assert exact < bound < 0.0


# ---- schemes: equal weights are the plain test; repeats -------------------------------------


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(c.values()))
def test_equal_weights_give_the_plain_p_value(cfg):
    rng = np.random.default_rng(1)
    scheme = _scheme(cfg, 3)
    ids = rng.integers(0, 300, 150)  # repeats of (context, token) pairs included
    plain = scheme.detect(ids)
    det = detect_weighted(scheme, ids, np.full(ids.size, 0.7))
    assert det.log10_p_value == pytest.approx(plain.log10_p_value, rel=1e-12, abs=1e-15)
    assert det.num_tokens_scored == plain.num_tokens_scored


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(c.values()))
def test_sweet_with_threshold_zero_is_the_plain_test(cfg):
    rng = np.random.default_rng(2)
    scheme = _scheme(cfg, 4)
    ids = rng.integers(0, 500, 120)
    ent = PositionEntropies(shannon=np.abs(rng.normal(0, 2, ids.size)), spike=rng.random(ids.size))
    ent.shannon[5] = 0.0  # an entropy of exactly 0 is still scored at threshold 0
    weights = entropy_weights(scheme, ent, "sweet", threshold=0.0)
    det = detect_weighted(scheme, ids, weights)
    plain = scheme.detect(ids)
    assert det.log10_p_value == pytest.approx(plain.log10_p_value, rel=1e-12, abs=1e-15)
    assert det.num_tokens_scored == plain.num_tokens_scored


def test_sweet_scores_only_positions_at_or_above_the_threshold():
    scheme = _scheme({"scheme": "kgw"}, 5)
    ent = PositionEntropies(shannon=np.array([3.0, 0.1, 2.0, 0.5, 0.95, 0.9]))
    assert entropy_weights(scheme, ent, "sweet").tolist() == [0, 0, 1, 0, 1, 1]  # h = 1: token 0 never
    assert SWEET_THRESHOLD == 0.9


def test_ewd_weights_are_entropy_minus_the_smallest_scored_one():
    kgw = _scheme({"scheme": "kgw"}, 5)
    ent = PositionEntropies(shannon=np.array([9.0, 2.0, 1.0, 4.0]), spike=np.array([0.1, 0.6, 0.5, 0.9]))
    assert entropy_weights(kgw, ent, "ewd") == pytest.approx([0.0, 0.1, 0.0, 0.4])  # spike entropy
    gumbel = _scheme({"scheme": "gumbel", "context_width": 1}, 5)
    assert entropy_weights(gumbel, ent, "ewd") == pytest.approx([0.0, 1.0, 0.0, 3.0])  # Shannon


def test_a_repeated_pair_is_scored_once_with_its_largest_weight():
    seeds = np.array([7, 7, 8, 7])
    tokens = np.array([1, 1, 1, 1])
    assert weighted_first(seeds, tokens, np.array([0.2, 0.9, 0.5, 0.9])).tolist() == [
        False,
        True,
        True,
        False,
    ]
    assert weighted_first(seeds, tokens, np.ones(4)).tolist() == [True, False, True, False]  # plain's rule


def test_no_weighted_position_is_inconclusive_not_an_error():
    scheme = _scheme({"scheme": "kgw"}, 6)
    det = detect_weighted(scheme, np.arange(50), np.zeros(50))
    assert det.p_value == 1.0 and det.num_tokens_scored == 0
    assert det.verdict(1e-3) == "inconclusive"


def test_bad_weights_are_refused():
    from wm_toolkit.watermark.errors import ConfigError

    scheme = _scheme({"scheme": "kgw"}, 6)
    with pytest.raises(ConfigError, match="one weight per token"):
        detect_weighted(scheme, np.arange(50), np.ones(49))
    with pytest.raises(ConfigError, match="kgw, unigram and gumbel"):
        detect_weighted(_scheme({"scheme": "synthid"}, 6), np.arange(50), np.ones(50))


# ---- validity under H0 ----------------------------------------------------------------------


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(c.values()))
def test_false_positive_rate_at_alpha_under_random_keys(cfg):
    """200 random texts, each under its own random key, weights from one fixed (EWD-like) vector:
    the count of p <= 0.05 is stochastically below Binomial(200, 0.05) for a valid test. The test
    fails when it exceeds 19, which a valid test does with probability <= 0.0027 (computed
    below), or when p <= 0.2 is more frequent than Binomial(200, 0.2)'s 0.5 % quantile allows
    (probability <= 0.005): false failures <= 0.8 % per scheme."""
    n, alpha, limit = 200, 0.05, 19
    assert stats.binom.sf(limit, n, alpha) < 0.003
    rng = np.random.default_rng(2024)
    weights = np.abs(rng.normal(1.0, 1.0, 80))  # fixed: the weights never see the key
    ps = []
    for i in range(n):
        ids = rng.integers(0, 2000, 80)
        scheme = _scheme(cfg, f"null-{i}", vocab=4096)  # a small vocabulary: the unigram list is cheap
        ps.append(10 ** detect_weighted(scheme, ids, weights).log10_p_value)
    ps = np.array(ps)
    assert (ps <= alpha).sum() <= limit
    assert (ps <= 0.2).sum() <= stats.binom.isf(0.005, n, 0.2)


# ---- the entropies --------------------------------------------------------------------------


def test_position_entropies_batched_equal_one_by_one(tiny_model, tokenizer):
    rng = np.random.default_rng(3)
    texts = [rng.integers(0, len(tokenizer), n) for n in (5, 17, 1, 30)]
    start = start_token(tokenizer)
    together = position_entropies(tiny_model, texts, start, modulus=1.5, max_batch_tokens=64)
    for ids, got in zip(texts, together, strict=True):
        (alone,) = position_entropies(tiny_model, [ids], start, modulus=1.5)
        assert got.shannon.shape == (len(ids),)
        np.testing.assert_allclose(got.shannon, alone.shannon, atol=1e-4)
        np.testing.assert_allclose(got.spike, alone.spike, atol=1e-5)
        assert np.all(got.shannon >= 0.0) and np.all(got.shannon <= math.log(len(tokenizer)) + 1e-6)


def test_position_entropies_are_the_model_distribution_entropies(tiny_model, tokenizer):
    import torch

    ids = np.array([10, 20, 30, 40])
    start = start_token(tokenizer)
    (ent,) = position_entropies(tiny_model, [ids], start, modulus=2.0)
    x = torch.tensor([[start, 10, 20, 30]])
    with torch.no_grad():
        p = torch.softmax(tiny_model(input_ids=x).logits[0].double(), -1)
    np.testing.assert_allclose(ent.shannon, -(p * p.log()).sum(-1).numpy(), rtol=1e-4)
    np.testing.assert_allclose(ent.spike, (p / (1 + 2.0 * p)).sum(-1).numpy(), rtol=1e-4)


# ---- the command ----------------------------------------------------------------------------


def _wm(args):
    from wm_toolkit.cli.main import wm

    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def key_file(tmp_path):
    from wm_toolkit.watermark.keying.keys import write_key_file

    path = tmp_path / "k.key"
    write_key_file(path, Key.from_seed("entropy-cli"))
    return path


def test_cli_entropy_weighting_json(tmp_path, tiny_dir, key_file):
    text = tmp_path / "t.txt"
    text.write_text("def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n" * 3)
    for extra, method in (([], "ewd"), (["--entropy-threshold", "0.5"], "sweet")):
        res = _wm(
            [
                "detect",
                text,
                "--key",
                key_file,
                "--scheme",
                "gumbel",
                "--json",
                "--entropy-model",
                tiny_dir,
                *extra,
            ]
        )
        assert res.exit_code == 0, res.output
        row = json.loads(res.output.strip().splitlines()[-1])
        info = row["entropy_weighting"]
        assert info["method"] == method and info["model"] == tiny_dir
        assert info["positions_weighted"] == row["num_tokens_scored"]
        assert "plain_log10_p_value" in info and 0.0 < row["p_value"] <= 1.0
    assert info["threshold"] == 0.5


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--entropy-threshold", "0.5"], "--entropy-threshold needs --entropy-model"),
        (["--entropy-model", "X", "--entropy-method", "ewd", "--entropy-threshold", "1"], "SWEET's"),
        (["--entropy-model", "X", "--spans"], "not available with --spans"),
        (["--entropy-model", "X", "--scheme", "exp"], "kgw, unigram and gumbel"),
    ],
)
def test_cli_entropy_flags_refused_in_one_line(tmp_path, key_file, extra, message):
    text = tmp_path / "t.txt"
    text.write_text("some words to test " * 10)
    res = _wm(["detect", text, "--key", key_file, *extra])
    assert res.exit_code == 2
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output

"""DiPmark, gamma-reweight, delta-reweight, PF and MorphMark against their papers' definitions:
the reweighting formulas on hand-computed distributions, distribution preservation (exact over
all permutations, and chi-square over many keys), valid p-values under unrelated keys, and
detection of each scheme's own generated text on the tiny model."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy import stats as sps

from wm_toolkit.watermark.config import config_from_dict, default_config
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying import prf
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.schemes import TextTooShortError, build_scheme
from wm_toolkit.watermark.schemes.delta_reweight import circular_scores, inverse_sample
from wm_toolkit.watermark.schemes.dipmark import (
    alpha_reweight,
    keyed_permutations,
    reweight_log_probs,
    token_ranks,
)
from wm_toolkit.watermark.schemes.morphmark import morph

NEW = ["dipmark", "gamma-reweight", "delta-reweight", "pf", "morphmark"]
MU = np.array([0.3, 0.22, 0.15, 0.12, 0.09, 0.06, 0.04, 0.02, 0.0])
CONTEXTS = np.stack([np.arange(6000) // 100, np.arange(6000) % 100], axis=1)  # 6000 distinct keys


def scheme(name: str, key: str = "reweight-tests", **fields):
    return build_scheme({"scheme": name, **fields}, Key.from_seed(key))


def mu_log_probs(n: int = len(CONTEXTS)) -> torch.Tensor:
    return torch.log(torch.tensor(MU, dtype=torch.float64)).expand(n, -1).clone()


# ---- configuration -------------------------------------------------------------------------------
def test_defaults_follow_the_papers_and_round_trip():
    assert default_config("dipmark").alpha == 0.45 and default_config("dipmark").gamma == 0.5
    assert default_config("gamma-reweight").alpha == 0.5
    mm = default_config("morphmark")
    assert (mm.gamma, mm.rule, mm.k, mm.p0, mm.context_width) == (0.5, "exp", 1.30, 0.15, 1)
    assert default_config("morphmark", rule="linear").k == 1.55
    for name in NEW:
        cfg = default_config(name, vocab_size=100)
        assert config_from_dict(json.loads(cfg.to_json())) == cfg


@pytest.mark.parametrize(
    "name, fields",
    [
        ("dipmark", {"alpha": 0.6}),
        ("dipmark", {"alpha": 0.0}),
        ("dipmark", {"gamma": 1.0}),
        ("gamma-reweight", {"alpha": 0.4}),
        ("delta-reweight", {"context_width": 0}),
        ("pf", {"context_width": 33}),
        ("morphmark", {"rule": "cubic"}),
        ("morphmark", {"k": -1.0}),
        ("morphmark", {"p0": 1.5}),
        ("morphmark", {"alpha": 0.5}),
    ],
)
def test_bad_parameters_are_config_errors(name, fields):
    with pytest.raises(ConfigError):
        config_from_dict({"scheme": name, **fields})


def test_permutation_schemes_need_the_vocabulary_size():
    for name in ("dipmark", "delta-reweight"):
        with pytest.raises(ConfigError, match="vocab_size"):
            scheme(name).detect(list(range(20)))


# ---- DiPmark / gamma-reweight: the alpha-reweight ------------------------------------------------
def test_alpha_reweight_matches_hand_computed_values():
    """F(x) = max(x - a, 0) + max(x - (1 - a), 0) on the permuted CDF, worked by hand."""
    flat = torch.tensor([[0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    # a = 0.45: F(A) = F(.25, .5, .75, 1) = (0, .05, .30 + .20, 1)
    assert torch.allclose(
        alpha_reweight(flat, 0.45), torch.tensor([[0.0, 0.05, 0.45, 0.5]], dtype=torch.float64)
    )
    # a = 1/2 (gamma-reweight): F(x) = max(2x - 1, 0) = (0, 0, .5, 1)
    assert torch.allclose(
        alpha_reweight(flat, 0.5), torch.tensor([[0.0, 0.0, 0.5, 0.5]], dtype=torch.float64)
    )
    ramp = torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)  # A = (.1, .3, .6, 1)
    assert torch.allclose(
        alpha_reweight(ramp, 0.45), torch.tensor([[0.0, 0.0, 0.2, 0.8]], dtype=torch.float64)
    )
    # back in vocabulary order: permutation (3, 0, 2, 1) puts P(3) first
    log_p = torch.log(ramp)
    perm = torch.tensor([[3, 0, 2, 1]])
    # permuted P = (P3, P0, P2, P1) = (.4, .1, .3, .2), A = (.4, .5, .8, 1), F(A) = (0, .05, .6, 1)
    w = reweight_log_probs(log_p, perm, 0.45).exp()  # permuted P_W = (0, .05, .55, .4)
    assert torch.allclose(w, torch.tensor([[0.05, 0.4, 0.55, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("alpha", [0.2, 0.45, 0.5])
def test_reweight_averaged_over_all_permutations_is_the_distribution(alpha):
    """DiPmark's distribution preservation, exactly: the mean of P_W over all 5! orders is P."""
    p = torch.tensor([0.42, 0.26, 0.17, 0.1, 0.05], dtype=torch.float64)
    perms = torch.tensor(list(itertools.permutations(range(5))))
    w = reweight_log_probs(torch.log(p).expand(len(perms), -1), perms, alpha).exp()
    assert torch.allclose(w.sum(dim=1), torch.ones(len(perms), dtype=torch.float64))
    assert torch.allclose(w.mean(dim=0), p, atol=1e-12)
    assert (w - p).abs().sum(dim=1).mean() > 0.3  # while each key moves the distribution a lot


def test_token_ranks_are_positions_in_the_keyed_permutation():
    seeds = prf.context_seeds(b"k", np.arange(50).reshape(-1, 1))
    perms = keyed_permutations(torch.from_numpy(seeds), 300).numpy()
    tokens = np.random.default_rng(1).integers(0, 300, 50)
    expected = np.array([np.flatnonzero(perms[i] == t)[0] for i, t in enumerate(tokens)])
    assert np.array_equal(token_ranks(seeds, tokens, 300), expected)


@pytest.mark.parametrize("name", ["dipmark", "gamma-reweight"])
def test_sampling_from_the_reweight_follows_the_distribution_over_keys(name):
    """6000 contexts act as independent keys; one draw each from P_W; chi-square at 0.001."""
    s = scheme(name, vocab_size=len(MU), context_width=2)
    w = s.reweighted(CONTEXTS, mu_log_probs()).exp().numpy()
    rng = np.random.default_rng(0)
    draws = (rng.random((len(w), 1)) < w.cumsum(axis=1)).argmax(axis=1)
    counts = np.bincount(draws, minlength=len(MU))
    assert counts[-1] == 0
    assert sps.chisquare(counts[:-1], len(w) * MU[:-1]).pvalue > 1e-3


def test_green_tokens_are_favoured_and_the_detector_counts_them():
    """The reweight moves mass to the second half of the permutation: green probability under
    P_W exceeds 1/2 on average, which is what the binomial test detects."""
    s = scheme("dipmark", vocab_size=len(MU), context_width=2)
    w = s.reweighted(CONTEXTS[:500], mu_log_probs(500)).exp()
    perms = keyed_permutations(torch.from_numpy(s.seeds_for(CONTEXTS[:500])), len(MU))
    green = torch.zeros_like(w).scatter_(1, perms[:, math.floor(0.5 * len(MU)) :], 1.0)
    assert (w * green).sum(dim=1).mean() > 0.6 > (torch.tensor(MU) * green).sum(dim=1).mean()


# ---- delta-reweight -------------------------------------------------------------------------------
def test_inverse_sampling_picks_the_interval_that_holds_u():
    log_p = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)).expand(5, -1)
    ident = torch.arange(4).expand(5, -1)
    u = torch.tensor([0.05, 0.15, 0.35, 0.95, 0.61], dtype=torch.float64)  # A = (.1, .3, .6, 1)
    assert inverse_sample(log_p, ident, u).tolist() == [0, 1, 2, 3, 3]
    rev = torch.tensor([3, 2, 1, 0]).expand(5, -1)  # permuted P = (.4, .3, .2, .1), A = (.4, .7, .9, 1)
    assert inverse_sample(log_p, rev, u).tolist() == [3, 3, 3, 0, 2]
    zero = torch.log(torch.tensor([[0.5, 0.0, 0.5]], dtype=torch.float64)).expand(3, -1)
    picks = inverse_sample(zero, torch.arange(3).expand(3, -1), torch.tensor([0.4999, 0.5, 0.9999999]))
    assert picks.tolist() == [0, 2, 2]  # the zero-probability token is never chosen


def test_delta_decoder_output_follows_the_distribution_over_contexts():
    s = scheme("delta-reweight", vocab_size=len(MU), context_width=2)
    counts = np.bincount(s.choose(CONTEXTS, mu_log_probs()).numpy(), minlength=len(MU))
    assert counts[-1] == 0
    assert sps.chisquare(counts[:-1], len(CONTEXTS) * MU[:-1]).pvalue > 1e-3


def test_circular_score_is_exactly_exponential_when_u_is_independent_of_the_rank():
    rng = np.random.default_rng(3)
    ranks = rng.integers(0, 7, 4000) ** 2 % 50  # any rank distribution at all
    scores = circular_scores(rng.random(4000), ranks, 50)
    assert sps.kstest(scores, "expon").pvalue > 1e-3


# ---- PF ---------------------------------------------------------------------------------------------
def pf_distribution(p: np.ndarray) -> np.ndarray:
    """P(argmax_v log p_v + E_v = i), E i.i.d. Exp(1), by quadrature (zero-probability tokens lose)."""
    a = np.log(p[p > 0])
    top = a.max()

    def win(i: int) -> float:
        others = np.delete(a, i)
        f = lambda x: math.exp(-(x - a[i])) * np.prod(1.0 - np.exp(-(x - others)))  # noqa: E731
        return integrate.quad(f, top, top + 60.0, limit=200)[0]

    out = np.zeros(len(p))
    out[p > 0] = [win(i) for i in range(len(a))]
    return out


def permute_and_flip(p: np.ndarray, rng: np.random.Generator) -> int:
    """McKenna and Sheldon's mechanism: visit tokens in a random order, accept each with
    probability p_v / max p (exp((l_v - l_max) / T))."""
    while True:
        for v in rng.permutation(len(p)):
            if rng.random() < p[v] / p.max():
                return int(v)


def test_pf_decoder_follows_the_permute_and_flip_distribution_over_contexts():
    exact = pf_distribution(MU)
    assert abs(exact.sum() - 1.0) < 1e-8 and np.abs(exact - MU).max() > 0.03  # PF is not softmax sampling
    rng = np.random.default_rng(5)
    mechanism = np.bincount([permute_and_flip(MU, rng) for _ in range(6000)], minlength=len(MU))
    assert sps.chisquare(mechanism[:-1], 6000 * exact[:-1]).pvalue > 1e-3  # the argmax form is PF
    s = scheme("pf", context_width=2)
    counts = np.bincount(s.choose(CONTEXTS, mu_log_probs()).numpy(), minlength=len(MU))
    assert counts[-1] == 0
    assert sps.chisquare(counts[:-1], len(CONTEXTS) * exact[:-1]).pvalue > 1e-3


def test_pf_score_of_the_chosen_token_exceeds_the_null_mean():
    s = scheme("pf", context_width=2)
    tokens = s.choose(CONTEXTS[:3000], mu_log_probs(3000)).numpy()
    r = prf.uniforms(torch.from_numpy(s.seeds_for(CONTEXTS[:3000])), torch.from_numpy(tokens)).numpy()
    assert -np.log(r).mean() > 1.2  # Exp(1) has mean 1: the watermark


# ---- MorphMark ----------------------------------------------------------------------------------
def test_morphmark_moves_r_of_the_red_mass_to_green():
    p = torch.tensor([[0.4, 0.3, 0.2, 0.1]], dtype=torch.float64)
    green = torch.tensor([[True, False, True, False]])  # P_G = 0.6
    # exp, k = 1.3: r = exp(0.78) - 1 = 1.18, clipped to 1: all red mass moves to green
    assert torch.allclose(
        morph(p, green, "exp", 1.3, 0.15), torch.tensor([[2 / 3, 0, 1 / 3, 0]], dtype=torch.float64)
    )
    # linear, k = 1.55: r = 0.93; red x 0.07, green x (1 + 0.93 * 0.4 / 0.6) = 1.62
    lin = torch.tensor([[0.648, 0.021, 0.324, 0.007]], dtype=torch.float64)
    assert torch.allclose(morph(p, green, "linear", 1.55, 0.15), lin)
    # log, k = 2.15: r = log(1 + 1.29)
    r = math.log(2.29)
    expected = torch.tensor(
        [[0.4 * (1 + r * 0.4 / 0.6), 0.3 * (1 - r), 0.2 * (1 + r * 0.4 / 0.6), 0.1 * (1 - r)]]
    )
    assert torch.allclose(morph(p, green, "log", 2.15, 0.15), expected.double())
    # green mass below p0: no watermark at this step
    low = torch.tensor([[False, False, False, True]])  # P_G = 0.1 < 0.15
    assert torch.allclose(morph(p, low, "exp", 1.3, 0.15), p)


def test_morphmark_processor_applies_morph_to_each_row_under_its_own_list():
    s = scheme("morphmark", vocab_size=50)
    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 2
    ids = torch.tensor([[5, 7], [0, 7], [9, 2]])
    out = s.processor()(ids, scores)
    seeds = torch.from_numpy(s.seeds_for(ids[:, -1:].numpy()))
    green = s.vocab_green_mask(seeds, 50)
    expected = morph(torch.softmax(scores.double(), dim=-1), green, "exp", 1.3, 0.15)
    assert torch.allclose(torch.softmax(out.double(), dim=-1), expected, atol=1e-6)
    assert not torch.allclose(expected, torch.softmax(scores.double(), dim=-1))


# ---- p-values under H0 ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["delta-reweight", "pf"])
def test_gamma_p_values_are_uniform_under_unrelated_keys(name):
    rng = np.random.default_rng(0)
    ps = [
        scheme(name, f"k{i}", vocab_size=1000).detect(rng.integers(0, 1000, 40)).p_value for i in range(300)
    ]
    assert sps.kstest(ps, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("name", ["dipmark", "gamma-reweight", "morphmark"])
def test_binomial_p_values_are_valid_under_unrelated_keys(name):
    """Discrete p-values: P(p <= a) <= a for each a, within 3 standard errors over 400 keys."""
    rng = np.random.default_rng(1)
    ps = np.array(
        [scheme(name, f"k{i}", vocab_size=1000).detect(rng.integers(0, 1000, 40)).p_value for i in range(400)]
    )
    for a in (0.01, 0.05, 0.2):
        assert (ps <= a).mean() <= a + 3 * math.sqrt(a * (1 - a) / len(ps))
    assert (ps <= 0.5).mean() > 0.2  # not vacuous: the p-values do spread over (0, 1]


def test_repeated_contexts_are_scored_once_for_permutation_schemes():
    """One permutation (and one u) per context: its first occurrence only; PF draws one uniform
    per (context, token), so each distinct pair counts."""
    ids = [1, 2, 3, 1, 2, 4, 1, 2, 3, 9]  # 8 windows; contexts (1,2) x3, (2,3) x2, (3,1), (2,4), (4,1)
    for name in ("dipmark", "delta-reweight"):
        d = scheme(name, vocab_size=20, context_width=2).detect(ids)
        assert d.num_tokens_scored == 5 and d.token_mask[:2] == (-1, -1)
    green_or_red = scheme("dipmark", vocab_size=20, context_width=2).detect(ids).token_mask
    assert sum(x >= 0 for x in green_or_red) == 5  # 1 green, 0 red, -1 not scored
    assert (
        sum(x == 1 for x in scheme("delta-reweight", vocab_size=20, context_width=2).detect(ids).token_mask)
        == 5
    )
    assert scheme("pf", context_width=2).detect(ids).num_tokens_scored == 7  # (1,2)->3 repeats once


def test_short_text_is_an_input_error():
    for name in NEW:
        with pytest.raises(TextTooShortError):
            scheme(name, vocab_size=50).detect([1] * scheme(name, vocab_size=50).config.context_width)


# ---- the tiny model ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generations(tiny_model, tokenizer):
    prompts = ["Tell me about rivers.", "Hi", "Write a short poem about the sea and the wind."]
    out = {}
    for name in NEW:
        s = scheme(name, vocab_size=len(tokenizer))
        out[name] = (
            s,
            generate(tiny_model, tokenizer, prompts, scheme=s, max_new_tokens=48, min_new_tokens=48, seed=0),
        )
    return out


@pytest.mark.parametrize("name", NEW)
def test_generated_text_is_detected_and_other_keys_see_nothing(name, generations, tokenizer):
    s, gens = generations[name]
    other = scheme(name, "another key", vocab_size=len(tokenizer))
    for g in gens:
        d = s.detect(g.token_ids)
        assert d.p_value < 1e-3 and d.log10_p_value < -3, (name, d)
        assert other.detect(g.token_ids).p_value > 1e-3
        spans = s.detect_spans(g.token_ids, alpha=1e-3)
        assert spans.p_value < 1e-2  # the whole-text window, at a Bonferroni factor


@pytest.mark.parametrize("name", ["delta-reweight", "pf"])
def test_decoders_are_deterministic_given_the_context(name, generations, tiny_model, tokenizer):
    """ "Hi" alone (no padding) and left-padded in a batch of three, with another sampling seed:
    the same tokens, since each one is a function of its context and the key only."""
    s, gens = generations[name]
    alone = generate(tiny_model, tokenizer, ["Hi"], scheme=s, max_new_tokens=24, min_new_tokens=24, seed=7)
    assert alone[0].token_ids == gens[1].token_ids[:24]


def test_watermarking_config_runs_the_reweight_after_transformers_warpers(tiny_model, tokenizer):
    """model.generate(watermarking_config=...) with temperature 0.7: the reweight sees the final
    distribution, and the text is detected."""
    s = scheme("dipmark", vocab_size=len(tokenizer))
    enc = tokenizer(["Tell me about rivers."], return_tensors="pt")
    torch.manual_seed(0)
    out = tiny_model.generate(
        **enc,
        do_sample=True,
        temperature=0.7,
        max_new_tokens=40,
        min_new_tokens=40,
        watermarking_config=s.watermarking_config(),
    )
    assert s.detect(out[0, enc["input_ids"].shape[1] :].tolist()).p_value < 1e-3


# ---- the CLI: a config file names the scheme ------------------------------------------------------
@pytest.mark.parametrize("name", ["dipmark", "pf"])
def test_cli_generates_and_detects_with_a_config_file(name, tmp_path, monkeypatch, tiny_dir):
    """`wm generate --config CFG.json` / `wm detect --config CFG.json`: the scheme's name in the
    JSON is all the CLI needs (detect reads the config before any scheme module is imported).
    120 tokens, a fresh key each run: at 48, one key in a few hundred left DiPmark (alpha 0.45)
    near p = 0.006 (CI saw it); at 120 six keys gave p <= 1e-10."""
    from click.testing import CliRunner

    from wm_toolkit.cli.main import wm

    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "key"))
    (tmp_path / "cfg.json").write_text(json.dumps({"scheme": name}))
    (tmp_path / "p.txt").write_text("Tell me about rivers.\n")

    def run(*args):
        return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)

    res = run(
        "generate", "--prompt-file", tmp_path / "p.txt", "--model", tiny_dir, "--max-new-tokens", 120,
        "--config", tmp_path / "cfg.json", "-o", tmp_path / "out.jsonl", "--config-out", tmp_path / "made.json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    made = json.loads((tmp_path / "made.json").read_text())
    assert made["scheme"] == name and made["vocab_size"] > 0
    res = run(
        "detect", tmp_path / "out.jsonl", "--config", tmp_path / "made.json", "--model", tiny_dir, "--json"
    )
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout.splitlines()[0])
    assert row["scheme"] == name and row["p_value"] < 1e-3 and row["watermarked"]

"""EXP and ITS (Kuditipudi et al. 2023): distortion-free decoders, processors, valid detection."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats as sps
from transformers import LogitsProcessorList, TemperatureLogitsWarper

from wm_toolkit.attacks.edits import insert_tokens, substitute_tokens
from wm_toolkit.watermark.config import config_from_dict, default_config
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying import prf
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.schemes import (
    DistortionFreeConfig,
    DistortionFreeScheme,
    TextTooShortError,
    build_scheme,
)
from wm_toolkit.watermark.statistics import portable_log

SCHEMES = ["exp", "exp-edit", "its", "its-edit"]
MU = np.array([0.30, 0.20, 0.15, 0.10, 0.08, 0.07, 0.05, 0.03, 0.015, 0.005, 0.0, 0.0])


def scheme(name: str, key: Key | None = None, **fields) -> DistortionFreeScheme:
    return build_scheme({"scheme": name, **fields}, key or Key.from_seed("df-tests"))


# ---- configuration -------------------------------------------------------------------------------
def test_defaults_follow_the_paper():
    assert default_config("exp-edit").edit_gamma == 0.0
    assert default_config("its-edit").edit_gamma == 0.4
    cfg = default_config("exp")
    assert (cfg.key_length, cfg.block_length, cfg.resamples) == (256, None, 999)
    again = config_from_dict(default_config("its-edit", key_length=64).to_dict())
    assert again == default_config("its-edit", key_length=64)


@pytest.mark.parametrize(
    "fields",
    [
        {"key_length": 0},
        {"block_length": 0},
        {"edit_gamma": -1.0},
        {"resamples": 0},
        {"max_resamples": 0},
        {"bound_weight": 1.0},
    ],
)
def test_bad_parameters_are_config_errors(fields):
    with pytest.raises(ConfigError):
        DistortionFreeConfig(scheme="exp-edit", **fields)


def test_edit_alignment_has_a_free_end_by_default_and_old_configs_keep_the_square_window():
    """Configs of version 3 on default to the free end; a version-2 config (written before the
    field existed) is read with the paper's square window it was made with, and says so."""
    assert default_config("its-edit").edit_free_end is True
    old = {k: v for k, v in default_config("its-edit").to_dict().items() if k != "edit_free_end"}
    assert config_from_dict({**old, "version": 2}).edit_free_end is False
    assert config_from_dict(old).edit_free_end is True
    again = default_config("its-edit", edit_free_end=False)
    assert config_from_dict(again.to_dict()) == again


def test_free_end_changes_only_the_edit_statistic():
    ids = np.random.default_rng(6).integers(0, 200, 30)
    for name in ("its", "exp", "exp-edit"):  # exp-edit: gamma = 0, so rows left over cost nothing anyway
        a, b = scheme(name, key_length=16), scheme(name, key_length=16, edit_free_end=False)
        costs = a.cost_matrix(ids)[None]
        assert a.statistic(costs, 30)[0] == b.statistic(costs, 30)[0]
    a = scheme("its-edit", key_length=16, edit_statistic="min")
    b = scheme("its-edit", key_length=16, edit_free_end=False, edit_statistic="min")
    costs = a.cost_matrix(ids)[None]
    assert a.statistic(costs, 30)[0] <= b.statistic(costs, 30)[0]


# ---- distortion-freeness -------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["exp", "its"])
def test_decoder_output_follows_the_distribution_over_keys(family):
    """Over 6000 independent key rows the chosen token is distributed as mu (chi-square).

    Fixed seeds make the test deterministic; with a correct decoder a fresh key would fail it
    with probability 0.001 (the test level). Zero-probability tokens must never be chosen.
    """
    rows = 6000
    s = scheme(family, key_length=rows)
    log_probs = torch.log(torch.tensor(MU, dtype=torch.float64)).expand(rows, -1)
    tokens = s.choose(torch.arange(rows), log_probs).numpy()
    counts = np.bincount(tokens, minlength=len(MU))
    assert counts[MU == 0].sum() == 0
    support = MU > 0
    assert sps.chisquare(counts[support], rows * MU[support]).pvalue > 1e-3


def test_its_rows_share_one_permutation_and_invert_the_cdf():
    s = scheme("its", key_length=8)
    pi = s.permutation(len(MU))
    assert sorted(pi.tolist()) == list(range(len(MU)))
    one_hot = torch.full((1, len(MU)), -torch.inf, dtype=torch.float64)
    one_hot[0, 7] = 0.0
    assert s.choose(torch.tensor([3]), one_hot).item() == 7


def test_key_rows_are_bit_identical_between_generation_and_detection():
    """EXP: the vocabulary-wide row used to decode equals the per-token gathers used to detect."""
    s = scheme("exp", key_length=16)
    ids = np.array([0, 5, 49151, 17, 5])
    rows = prf.vocab_uniforms(s._row_seeds, 49152)
    assert np.array_equal(s.cost_matrix(ids), portable_log.log1m(rows[:, ids].numpy()))


# ---- the processor -------------------------------------------------------------------------------
def test_processor_forces_the_decoded_token_per_row_with_left_padding():
    """Batch 4, left padded: each row reads its own key row (tau_b + step) mod n at every step."""
    s = scheme("exp", key_length=32)
    proc = s.processor()
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor([[0, 0, 5, 6], [0, 7, 8, 9], [1, 2, 3, 4], [0, 0, 0, 9]])
    for step in range(5):
        scores = torch.randn(4, 50, generator=gen)
        out = proc(ids, scores)
        want = s.choose((proc.shifts + step) % 32, torch.log_softmax(scores.double(), -1))
        assert torch.equal(out.argmax(-1), want)
        assert torch.isinf(out).sum().item() == 4 * 49 and (out.max(-1).values == 0).all()
        ids = torch.cat([ids, want.reshape(-1, 1)], dim=1)


def test_processor_decodes_from_the_sampling_settings_it_is_given():
    """Given to the processor, temperature reaches the decoder; transformers' warpers after it
    leave its one-token output unchanged."""
    s = scheme("its", key_length=32)
    proc = s.processor(temperature=0.25)
    chain = LogitsProcessorList([proc, TemperatureLogitsWarper(0.25)])
    scores = torch.randn(3, 40, generator=torch.Generator().manual_seed(1))
    out = chain(torch.zeros(3, 2, dtype=torch.long), scores)
    want = s.choose(proc.shifts % 32, torch.log_softmax(scores.double() / 0.25, -1))
    assert torch.equal(out.argmax(-1), want)


def test_watermarking_config_runs_the_decoder_after_transformers_warpers(tiny_model, tokenizer):
    """model.generate(watermarking_config=...) puts the processor after temperature (transformers'
    rule for watermarks): the text is exactly what the decoder picks from the tempered
    distribution, step by step."""
    s = scheme("exp", key_length=64, vocab_size=len(tokenizer))
    enc = tokenizer(["Tell me about the sea."], return_tensors="pt")
    out = tiny_model.generate(
        **enc,
        do_sample=True,
        temperature=0.5,
        top_k=0,  # transformers' default top_k is 50
        max_new_tokens=12,
        watermarking_config=s.watermarking_config(),
        pad_token_id=tokenizer.eos_token_id,
        output_logits=True,
        return_dict_in_generate=True,
    )
    new = out.sequences[0, enc["input_ids"].shape[1] :]
    # replay: the raw logits, tempered, decoded with some shift of the key, give the same tokens
    log_probs = [torch.log_softmax(lg.double() / 0.5, -1) for lg in out.logits]
    matches = [
        all(
            int(s.choose(torch.tensor([(tau + i) % 64]), lp)[0]) == int(t)
            for i, (lp, t) in enumerate(zip(log_probs, new, strict=True))
        )
        for tau in range(64)
    ]
    assert any(matches)


def test_the_processor_warns_itself_when_the_key_wraps_whatever_the_length_argument(tiny_model, tokenizer):
    s = scheme("exp", key_length=4, vocab_size=len(tokenizer))
    enc = tokenizer(["hi"], return_tensors="pt")
    with pytest.warns(UserWarning, match="key_length"):  # max_length, not max_new_tokens
        tiny_model.generate(
            **enc,
            max_length=enc["input_ids"].shape[1] + 6,
            do_sample=True,
            logits_processor=LogitsProcessorList([s.processor()]),
            pad_token_id=tokenizer.eos_token_id,
        )


def test_generation_warns_when_the_key_would_wrap(tiny_model, tokenizer):
    s = scheme("exp", key_length=4, vocab_size=len(tokenizer))
    with pytest.warns(UserWarning, match="key_length"):
        generate(tiny_model, tokenizer, ["hi"], scheme=s, max_new_tokens=6, min_new_tokens=6, seed=0)


def test_beam_search_is_refused(tokenizer, tiny_model):
    s = scheme("exp", vocab_size=len(tokenizer))
    with pytest.raises(ConfigError, match="beam"):
        generate(tiny_model, tokenizer, ["hello"], scheme=s, num_beams=2, temperature=0, max_new_tokens=3)


# ---- detection -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def watermarked(tiny_model, tokenizer):
    """Four 30-token texts per family from the tiny model (batch 4, left padding, sampling)."""
    prompts = ["Hi", "Tell me about the sea and the sky.", "Why?", "List three colours, please, now."]
    out = {}
    for family in ("exp", "its"):
        s = scheme(family, vocab_size=len(tokenizer))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # 30 new tokens with n = 256 must not warn
            gens = generate(
                tiny_model, tokenizer, prompts, scheme=s, max_new_tokens=30, min_new_tokens=30, seed=1
            )
        out[family] = [list(g.token_ids) for g in gens]
    return out


@pytest.mark.parametrize("name", SCHEMES)
def test_every_row_of_a_padded_batch_is_detected(watermarked, tokenizer, name):
    s = scheme(name, vocab_size=len(tokenizer), resamples=199)
    for ids in watermarked[name.split("-")[0]]:
        assert len(ids) == 30
        d = s.detect(ids)
        assert d.p_value <= 0.01, d
        assert d.p_value_floor == pytest.approx(1 / ((1 - (0.05 if name.startswith("exp") else 0)) * 200))


@pytest.mark.parametrize("name", SCHEMES)
def test_another_key_does_not_detect(watermarked, tokenizer, name):
    # the texts are independent of this key, so each p is super-uniform; the texts change from run to
    # run (fresh random shifts), and two or more of four at p <= 0.01 has probability below 6e-4
    s = scheme(name, key=Key.from_seed("someone else"), vocab_size=len(tokenizer), resamples=99)
    ps = [s.detect(ids).p_value for ids in watermarked[name.split("-")[0]]]
    assert sum(p <= 0.01 for p in ps) <= 1, ps


@pytest.mark.parametrize("name", ["exp-edit", "its-edit"])
def test_edit_detectors_survive_random_substitutions(watermarked, tokenizer, name):
    """A 30-token text with 20% of its tokens replaced (uniform positions and tokens)."""
    s = scheme(name, vocab_size=len(tokenizer), resamples=199)
    rng = np.random.default_rng(0)
    for ids in watermarked[name.split("-")[0]]:
        attacked = substitute_tokens(ids, 0.2, len(tokenizer), rng)
        assert s.detect(attacked).p_value <= 0.05


@pytest.mark.parametrize("name", SCHEMES)
def test_p_values_of_unwatermarked_text_are_valid(name):
    """120 texts of 20 uniform random tokens, each tested under its own key (validity is over
    keys: H0 says the key is independent of the text). At most 14 may reach p <= 0.05 (expected
    <= 6; P[Binomial(120, 0.05) > 14] = 0.002 is the false-failure probability)."""
    rng = np.random.default_rng(42)
    ps = np.array(
        [
            scheme(name, key=Key.from_seed(f"null-{i}"), key_length=32, resamples=99).detect(
                rng.integers(0, 1000, 20)
            )
            for i in range(120)
        ]
    )
    ps = np.array([d.p_value for d in ps])
    assert np.all((ps > 0) & (ps <= 1))
    assert (ps <= 0.05).sum() <= 14
    assert (ps <= 0.5).sum() <= 78  # roughly uniform in the middle too (expected 60, sd 5.5)


def test_detection_is_reproducible_and_reports_its_test():
    s = scheme("its-edit", key_length=32, resamples=99)
    ids = np.random.default_rng(1).integers(0, 500, 25)
    a, b = s.detect(ids), s.detect(ids)
    assert a == b
    out = a.to_dict()
    for field in ("p_value", "statistic", "resamples", "p_value_floor", "method"):
        assert field in out
    assert 1 <= a.resamples <= 99


def test_a_confident_bound_skips_the_permutation_test(watermarked, tokenizer):
    d = scheme("exp", vocab_size=len(tokenizer)).detect(watermarked["exp"][0])
    assert d.method == "gamma union bound" and d.resamples == 0 and d.p_value < d.p_value_floor


def test_block_length_finds_a_watermarked_span_inside_human_text(watermarked, tokenizer):
    rng = np.random.default_rng(3)
    ids = (
        rng.integers(0, len(tokenizer), 40).tolist()
        + watermarked["exp"][1][:20]
        + rng.integers(0, 100, 40).tolist()
    )
    d = scheme("exp-edit", vocab_size=len(tokenizer), block_length=20, resamples=99).detect(ids)
    assert d.block_length == 20 and d.p_value <= 0.02


@pytest.mark.parametrize("name", ["exp-edit", "its-edit"])
def test_an_edited_watermarked_text_is_resolved_at_alpha_1e_3(watermarked, tokenizer, name):
    """30 watermarked tokens with 20% insertions: the permutation test draws the ~10,000 null keys
    p <= 1e-3 needs and says watermarked (exp-edit without its Gamma bound, which would decide
    this high-entropy text on its own)."""
    s = scheme(name, vocab_size=len(tokenizer), bound_weight=0.0)
    rng = np.random.default_rng(2)
    ids = insert_tokens(watermarked[name.split("-")[0]][0], 0.2, len(tokenizer), rng)
    d = s.detect(ids, alpha=1e-3)
    assert d.verdict(1e-3) == "watermarked" and d.p_value <= 1e-3 < 10 * d.p_value, d
    assert d.method == "sequential permutation (curtailed at alpha)"
    assert d.resamples_needed == d.resamples_cap and d.resamples > 9000 and d.p_value_floor <= 1e-3
    assert d.log10_p_value == pytest.approx(np.log10(d.p_value))
    without = s.detect(ids)  # no level: 999 null keys, as before
    assert without.resamples == 999 and without.p_value_floor > 1e-3 - 1e-12


def test_unwatermarked_texts_stop_early_at_a_level(tokenizer):
    s = scheme("its-edit", vocab_size=len(tokenizer))
    ids = np.random.default_rng(6).integers(0, len(tokenizer), 40)
    d = s.detect(ids, alpha=1e-3)
    assert d.verdict(1e-3) == "not watermarked" and d.method.endswith("(stopped early)")
    assert d.resamples < 2000 and d.null_at_most == 10


@pytest.mark.parametrize("name", SCHEMES)
def test_p_values_at_a_level_are_valid(name):
    """200 texts of 12 random tokens under their own keys, tested at alpha = 0.05 (the test is
    then curtailed at 0.05): at most 19 may be called watermarked (expected <= 10;
    P[Binomial(200, 0.05) > 19] = 0.002 is the false-failure probability)."""
    rng = np.random.default_rng(8)
    hits = 0
    for i in range(200):
        s = scheme(name, key=Key.from_seed(f"level-{i}"), key_length=16)
        hits += s.detect(rng.integers(0, 500, 12), alpha=0.05).verdict(0.05) == "watermarked"
    assert hits <= 19


def test_a_small_resampling_cap_is_inconclusive_with_the_reason(watermarked, tokenizer):
    s = scheme("its-edit", vocab_size=len(tokenizer), max_resamples=300)
    d = s.detect(watermarked["its"][1], alpha=1e-3)
    assert d.p_value_floor > 1e-3 and d.resamples_cap == 300
    assert d.verdict(1e-3) == "inconclusive"
    out = d.to_dict(1e-3)
    assert (
        "--max-resamples" in out["inconclusive_reason"]
        and str(d.resamples_needed) in out["inconclusive_reason"]
    )


@pytest.mark.parametrize("name", SCHEMES)
def test_two_and_three_token_texts_get_a_decision(name):
    """The statistics are continuous, so even 2 tokens can reach any p-value: the floor is the
    Monte Carlo one (below alpha), and a random short text is "not watermarked" rather than
    inconclusive. One token is too short to align."""
    s = scheme(name, vocab_size=1000)
    for ids in ([5, 17], [5, 17, 5]):
        d = s.detect(ids, alpha=1e-3)
        assert d.p_value_floor <= 1e-3 and d.verdict(1e-3) == "not watermarked", d
    with pytest.raises(TextTooShortError):
        s.detect([5], alpha=1e-3)


def test_the_gamma_bound_reports_tiny_p_values_in_log_space():
    """exp: 300 tokens chosen to match the key exactly; the union bound's p underflows float64
    but log10_p_value stays finite (about -500)."""
    s = scheme("exp", key_length=512, vocab_size=256)
    rows = s.cost_matrix(np.arange(256))  # (n, V): log(1 - xi_j[v]) for every row and token
    ids = rows[:300].argmin(axis=1)  # the best token of rows 0..299: a perfectly watermarked text
    d = s.detect(ids, alpha=1e-3)
    assert d.method == "gamma union bound" and d.verdict(1e-3) == "watermarked"
    assert np.isfinite(d.log10_p_value) and d.log10_p_value < -300


def test_too_short_and_foreign_tokens_are_input_errors():
    s = scheme("exp", vocab_size=100)
    with pytest.raises(TextTooShortError):
        s.detect([5])
    with pytest.raises(ConfigError):
        s.detect([5, 100])


def test_the_screened_exp_decoder_picks_the_argmin_of_every_tokens_score():
    """`exponential_argmin` on CPU scores only the tokens that can win; it must return exactly the
    index of the minimum over all tokens' float64 scores (ties: the first), on flat, peaked,
    top-k-masked and extreme-uniform rows."""
    from wm_toolkit.watermark.keying import prf
    from wm_toolkit.watermark.schemes.distortion_free import exponential_argmin, exponential_scores

    g = torch.Generator().manual_seed(11)
    for trial in range(60):
        v = (7, 300, 49152)[trial % 3]
        b = 1 + trial % 5
        spread = (0.1, 1.0, 3.0, 12.0)[trial % 4]
        logits = torch.randn(b, v, generator=g, dtype=torch.float64) * spread
        if trial % 6 == 5:  # top-k: most tokens impossible
            logits[:, 5:] = float("-inf")
        log_probs = torch.log_softmax(logits, dim=-1)
        u = prf.vocab_uniforms(torch.randint(-(2**62), 2**62, (b,), generator=g), v)
        if trial % 7 == 3:
            u[:, :3] = torch.tensor([0.5 / 2**53, 1 - 0.5 / 2**53, 1 - 2**-40], dtype=torch.float64)
        want = exponential_scores(u.numpy(), log_probs.numpy()).argmin(axis=-1)
        assert exponential_argmin(u, log_probs).tolist() == want.tolist(), trial
    tie = torch.tensor([[0.9, 0.9, 0.3]], dtype=torch.float64)  # equal p: the largest u wins, first of a tie
    assert exponential_argmin(tie, torch.log(torch.full((1, 3), 1 / 3, dtype=torch.float64))).item() == 0

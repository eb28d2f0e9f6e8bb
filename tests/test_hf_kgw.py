"""hf-kgw: transformers' KGW green lists bit for bit, with wm's exact null over distinct pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps
from transformers import WatermarkDetector, WatermarkingConfig
from transformers.generation.logits_process import WatermarkLogitsProcessor

from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.hfkeys import HashingKey
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.schemes import HfKgwConfig, build_scheme

KEY = 15485863
SETTINGS = [("lefthash", 1), ("lefthash", 3), ("selfhash", 1), ("selfhash", 2), ("selfhash", 4)]


def scheme(seeding="lefthash", context_width=1, key=KEY, v=1000, **fields):
    cfg = {"scheme": "hf-kgw", "seeding": seeding, "context_width": context_width, "model_vocab_size": v}
    return build_scheme({**cfg, **fields}, HashingKey(key))


def theirs(seeding="lefthash", context_width=1, key=KEY, v=1000):
    return WatermarkLogitsProcessor(
        vocab_size=v,
        device="cpu",
        greenlist_ratio=0.25,
        bias=2.0,
        hashing_key=key,
        seeding_scheme=seeding,
        context_width=context_width,
    )


@pytest.mark.parametrize("seeding,width", SETTINGS)
def test_processor_output_is_bit_identical_to_transformers(seeding, width):
    """Same input ids and scores, batch of 3, several steps: identical biased scores."""
    rng = np.random.default_rng(width)
    ours, ref = scheme(seeding, width).processor(), theirs(seeding, width)
    ids = torch.from_numpy(rng.integers(0, 1000, (3, 6)))
    for _ in range(4):
        scores = torch.randn(3, 1000, generator=torch.Generator().manual_seed(int(ids.sum())))
        a, b = ours(ids, scores.clone()), ref(ids, scores.clone())
        assert torch.equal(a, b)
        ids = torch.cat([ids, a.argmax(-1, keepdim=True)], dim=1)


@pytest.mark.parametrize("seeding,width", SETTINGS)
def test_detector_green_lists_are_transformers_green_lists(seeding, width):
    """Every scored token is green iff transformers' detector finds it in its green list."""
    rng = np.random.default_rng(7)
    s, ref = scheme(seeding, width), theirs(seeding, width)
    text = rng.integers(0, 1000, 50)
    n = width + 1 - (seeding == "selfhash")  # transformers' n-gram length
    want = []
    for i in range(len(text) - n + 1):
        ngram = torch.from_numpy(text[i : i + n])
        prefix = ngram if seeding == "selfhash" else ngram[:-1]
        want.append(int(ngram[-1]) in ref._get_greenlist_ids(prefix).tolist())
    start, seeds, tokens = s.scored(text)
    assert start == n - 1
    assert [bool(s.green_mask(sd, 1000)[t]) for sd, t in zip(seeds, tokens.tolist(), strict=True)] == want
    d = s.detect(text)
    assert d.token_mask[:start] == (-1,) * start
    assert all(w for m, w in zip(d.token_mask[start:], want, strict=True) if m == 1)


def test_full_vocabulary_green_list_equals_transformers_on_the_real_vocabulary_size():
    s, ref = scheme(v=49152), theirs(v=49152)
    for prev in (0, 17, 49151):
        seed = s.lefthash_seeds(np.array([prev]))[0]
        mine = torch.nonzero(s.green_mask(seed, 49152)).flatten()
        assert torch.equal(mine, ref._get_greenlist_ids(torch.tensor([prev])).sort().values)
        assert len(mine) == 12288


def test_the_models_vocabulary_size_decides_the_green_lists():
    """transformers permutes model.config.vocab_size ids, which may exceed len(tokenizer)."""
    a, b = scheme(v=1000), scheme(v=1024)
    seed = a.lefthash_seeds(np.array([5]))[0]
    assert not torch.equal(a.green_mask(seed, 1000)[:1000], b.green_mask(seed, 1024)[:1000])
    assert HfKgwConfig(model_vocab_size=1024).to_dict()["model_vocab_size"] == 1024


def test_torch_cpu_generator_uses_only_the_low_32_bits_of_a_seed():
    """The detector groups seeds by their low 32 bits; that is right only while this holds."""
    g = torch.Generator()
    perms = [torch.randperm(500, generator=g.manual_seed(s)) for s in (12345, 12345 + 2**32, 12346)]
    assert torch.equal(perms[0], perms[1]) and not torch.equal(perms[0], perms[2])


def test_null_is_the_exact_convolution_of_per_seed_hypergeometrics():
    """Tokens after the same previous token share one green list (drawn without replacement)."""
    s = scheme(v=1000)
    text = np.array([5, 9, 5, 11, 5, 13, 5, 9, 7, 2])  # pair (5, 9) repeats: scored once
    d = s.detect(text)
    assert d.num_tokens_scored == 8 and d.null.startswith("hypergeometric")
    dist = np.ones(1)
    for n in (3, 2, 1, 1, 1):  # after 5: {9, 11, 13}; after 9: {5, 7}; after 11, 13, 7: one each
        dist = np.convolve(dist, sps.hypergeom.pmf(np.arange(n + 1), 1000, 250, n))
    assert d.p_value == pytest.approx(dist[d.green_count :].sum(), rel=1e-9)
    assert d.p_value_floor == pytest.approx(dist[-1], rel=1e-9)


def test_null_p_values_are_valid_over_keys():
    """200 random keys, each on its own text of 40 tokens from 30 symbols (so seeds repeat and
    groups form). p is super-uniform under H0: at most 19 may fall at or below 0.05 (expected
    <= 10; P[Binomial(200, 0.05) > 19] = 0.003 is the false-failure probability)."""
    rng = np.random.default_rng(11)
    ps = np.array(
        [scheme(key=int(rng.integers(1, 2**62))).detect(rng.integers(0, 30, 40)).p_value for _ in range(200)]
    )
    assert np.all((ps > 0) & (ps <= 1))
    assert (ps <= 0.05).sum() <= 19
    assert (ps <= 0.5).sum() <= 120  # not piled up at small values (expected <= 100)


def test_integer_keys_are_required_and_parameters_validated():
    with pytest.raises(ConfigError):
        build_scheme({"scheme": "hf-kgw"}, Key.from_seed(1))
    with pytest.raises(ConfigError):
        build_scheme({"scheme": "kgw"}, HashingKey(3))
    for bad in ({"gamma": 1.0}, {"context_width": 0}, {"seeding": "minhash"}, {"model_vocab_size": 3}):
        with pytest.raises(ConfigError):
            HfKgwConfig(**bad)
    assert "15485863" not in repr(HashingKey(KEY)) and "15485863" not in str(scheme().config.to_dict())


# ---- end to end on the tiny model ------------------------------------------------------------------
PROMPTS = ["Tell me about rivers.", "Hi"]


def test_transformers_watermarked_text_is_detected_by_wm(tiny_model, tokenizer):
    enc = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    out = tiny_model.generate(
        **enc,
        watermarking_config=WatermarkingConfig(hashing_key=KEY, bias=4.0),  # strong: 30 tokens
        do_sample=True,
        max_new_tokens=30,
        min_new_tokens=30,
        pad_token_id=tokenizer.pad_token_id,
    )
    s = scheme(v=tiny_model.config.vocab_size, vocab_size=len(tokenizer))
    other = scheme(key=KEY + 2, v=tiny_model.config.vocab_size, vocab_size=len(tokenizer))
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        assert s.detect(row).p_value < 1e-4
        assert other.detect(row).p_value > 1e-3


def test_wm_watermarked_text_is_flagged_by_transformers_detector(tiny_model, tokenizer):
    s = scheme(v=tiny_model.config.vocab_size, vocab_size=len(tokenizer), delta=4.0)
    gens = generate(tiny_model, tokenizer, PROMPTS, scheme=s, max_new_tokens=30, min_new_tokens=30, seed=0)
    det = WatermarkDetector(tiny_model.config, "cpu", WatermarkingConfig(hashing_key=KEY))
    for g in gens:
        res = det(torch.tensor([g.token_ids]), z_threshold=4.0, return_dict=True)
        assert res.prediction[0], res
        assert s.detect(g.token_ids).green_count == int(res.num_green_tokens[0])

"""hf-synthid: transformers' SynthID-Text g-values bit for bit, with a table-conditional exact null."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import SynthIDTextWatermarkingConfig
from transformers.generation.logits_process import SynthIDTextWatermarkLogitsProcessor

from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.hfkeys import SynthIDKeys
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import HfSynthIDConfig, build_scheme

KEYS = [654, 400, 836, 123, 340, 443, 597, 160, 57, 29, 590, 639, 13, 715, 468, 990, 966, 226, 324, 585]
KEYS += [118, 504, 421, 521, 129, 669, 732, 225, 90, 960]


def scheme(keys=KEYS, **fields):
    return build_scheme({"scheme": "hf-synthid", **fields}, SynthIDKeys(tuple(keys)))


def theirs(keys=KEYS, ngram_len=5, size=2**16, seed=0, history=1024, skip=False):
    return SynthIDTextWatermarkLogitsProcessor(
        ngram_len=ngram_len,
        keys=keys,
        sampling_table_size=size,
        sampling_table_seed=seed,
        context_history_size=history,
        device="cpu",
        skip_first_ngram_calls=skip,
    )


@pytest.mark.parametrize("ngram_len,size,seed", [(5, 2**16, 0), (3, 2**16, 7), (4, 1000, 3), (2, 2**10, 0)])
def test_g_values_are_bit_identical_to_transformers(ngram_len, size, seed):
    ids = torch.from_numpy(np.random.default_rng(ngram_len).integers(0, 49152, (2, 120)))
    want = theirs(ngram_len=ngram_len, size=size, seed=seed).compute_g_values(ids).numpy()
    s = scheme(ngram_len=ngram_len, sampling_table_size=size, sampling_table_seed=seed)
    got = np.stack([s.g_values(np.lib.stride_tricks.sliding_window_view(r, ngram_len)) for r in ids.numpy()])
    assert got.shape == want.shape == (2, 120 - ngram_len + 1, len(KEYS))
    assert np.array_equal(got, want)
    if size & (size - 1) == 0:  # the residue table used in generation gives the same bits
        h = torch.from_numpy(np.random.default_rng(1).integers(-(2**62), 2**62, 500))
        bits = s.residue_patterns()[h & (size - 1)].to(torch.int64)
        assert torch.equal((bits.unsqueeze(1) >> torch.arange(len(KEYS))) & 1, s.g_from_hash(h))


def test_scored_positions_are_transformers_context_repetition_mask():
    """Texts with repeated contexts, shorter than the 1024-entry FIFO: the same positions kept."""
    rng = np.random.default_rng(2)
    base = rng.integers(0, 50, 30)
    ids = np.concatenate([base, base[:12], rng.integers(0, 50, 20), base[5:20]])
    want = theirs().compute_context_repetition_mask(torch.from_numpy(ids).reshape(1, -1))[0].numpy()
    d = scheme().detect(ids)
    assert np.array_equal(np.array(d.token_mask[4:]), want.astype(np.int64))
    assert d.num_tokens_scored == int(want.sum())


def test_processor_distribution_matches_transformers_step_by_step():
    """Both processors fed the same ids and scores for 12 steps, with a repeated context from
    step 9 on (one row keeps emitting the same token): same distribution (float32 rounding)."""
    ref = theirs(ngram_len=3)
    s = scheme(ngram_len=3, vocab_size=300)
    ours = s.processor()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 300, (2, 6), generator=gen)
    seen = []
    original = ours.distribution
    ours.distribution = lambda *a: seen.append(original(*a)) or seen[-1]
    for step in range(12):
        scores = torch.randn(2, 300, generator=gen)
        want = torch.softmax(ref(ids, scores.clone()), dim=-1)
        ours(ids, scores.clone())
        assert torch.allclose(seen[-1].float(), want, atol=1e-6), step
        nxt = torch.tensor([[7], [int(torch.randint(0, 300, (1,), generator=gen))]])
        ids = torch.cat([ids, nxt], dim=1)
    assert torch.allclose(seen[-1][0].float(), torch.softmax(scores, -1)[0], atol=1e-6)  # repeated: unchanged


def test_null_p_values_are_valid_over_keys():
    """100 random sets of 10 keys, each on its own text of 30 random tokens. p is super-uniform:
    at most 12 of 100 at p <= 0.05 (expected <= 5; P[Binomial(100, 0.05) > 12] = 0.0015) and at
    most 64 at p <= 0.5 (0.0018), for either score: false-failure probability below 0.007."""
    rng = np.random.default_rng(9)
    dets = [
        scheme(keys=rng.integers(0, 2**40, 10).tolist()).detect(rng.integers(0, 49152, 30))
        for _ in range(100)
    ]
    for ps in ([d.p_value_mean for d in dets], [d.p_value_weighted for d in dets]):
        ps = np.array(ps)
        assert np.all((ps > 0) & (ps <= 1))
        assert (ps <= 0.05).sum() <= 12 and (ps <= 0.5).sum() <= 64


def test_table_conditional_null_accounts_for_the_tables_bias():
    """The per-position count pmf has mean m q (q the table's share of ones), not m / 2."""
    s = scheme()
    pmf = s.null().count_pmf
    q = float(s.table.double().mean())
    assert pmf.sum() == pytest.approx(1.0)
    assert (np.arange(len(pmf)) @ pmf) == pytest.approx(len(KEYS) * q, abs=0.02)
    odd = scheme(sampling_table_size=1000)
    assert "Bernoulli" in odd.null().description


def test_keys_are_required_and_config_validated():
    with pytest.raises(ConfigError):
        build_scheme({"scheme": "hf-synthid"}, Key.from_seed(1))
    for bad in ({"ngram_len": 1}, {"sampling_table_size": 2**24 + 1}, {"context_history_size": 0}):
        with pytest.raises(ConfigError):
            HfSynthIDConfig(**bad)
    assert "654" not in repr(SynthIDKeys(tuple(KEYS))) and "654" not in str(scheme().config.to_dict())


def test_wm_hf_synthid_generation_is_detected(tiny_model, tokenizer):
    """wm's processor (the same distribution as transformers', tested above) end to end."""
    from wm_toolkit.watermark.modeling.generation import generate

    s = scheme(vocab_size=len(tokenizer))
    gens = generate(
        tiny_model,
        tokenizer,
        ["Tell me about rivers.", "Hi"],
        scheme=s,
        max_new_tokens=20,
        min_new_tokens=20,
        seed=0,
    )
    other = scheme(keys=[k + 1 for k in KEYS], vocab_size=len(tokenizer))
    for g in gens:
        d = s.detect(g.token_ids)
        assert d.p_value < 1e-4 and d.p_value_mean < 1e-3, d
        assert other.detect(g.token_ids).p_value > 1e-3


@pytest.mark.slow
def test_transformers_synthid_text_is_detected_by_wm(tiny_model, tokenizer):
    enc = tokenizer(["Tell me about rivers.", "Hi"], return_tensors="pt", padding=True)
    torch.manual_seed(0)
    out = tiny_model.generate(
        **enc,
        watermarking_config=SynthIDTextWatermarkingConfig(keys=KEYS, ngram_len=5),
        do_sample=True,
        max_new_tokens=20,
        min_new_tokens=20,
        pad_token_id=tokenizer.pad_token_id,
    )
    s = scheme(vocab_size=len(tokenizer))
    other = scheme(keys=[k + 1 for k in KEYS], vocab_size=len(tokenizer))
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        d = s.detect(row)
        assert d.p_value < 1e-4 and d.p_value_mean < 1e-3, d
        assert other.detect(row).p_value > 1e-3

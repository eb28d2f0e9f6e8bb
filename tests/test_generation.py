"""Watermarked generation with transformers on a tiny random LLaMA: every decoding mode is detected."""

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList, pipeline

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import encode_texts, generate
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme

PROMPTS = ["Hi", "Tell me a long story about the sea and the wind.", "Why?", "List three colours."]


@pytest.fixture
def kgw(tokenizer):
    return build_scheme(GreenListConfig(vocab_size=len(tokenizer)), Key.from_seed("gen"))


@pytest.mark.parametrize("batch_size", [1, 4])
def test_sampling_with_left_padding_watermarks_every_row(tiny_model, tokenizer, kgw, batch_size):
    out = generate(
        tiny_model, tokenizer, PROMPTS, scheme=kgw, max_new_tokens=40, batch_size=batch_size, seed=0
    )
    for g in out:
        assert g.num_tokens >= 20
        assert kgw.detect(g.token_ids).p_value < 1e-4


def test_unwatermarked_generation_is_not_detected(tiny_model, tokenizer, kgw):
    out = generate(tiny_model, tokenizer, PROMPTS, scheme=None, max_new_tokens=40, seed=0)
    assert all(kgw.detect(g.token_ids).p_value > 1e-4 for g in out)


def test_greedy_and_beam_search_are_watermarked(tiny_model, tokenizer, kgw):
    # a random model decoded greedily loops on a few tokens, so count every occurrence here
    counting = build_scheme(kgw.config.replace(count_repeats=True), kgw.key)
    greedy = generate(tiny_model, tokenizer, PROMPTS[:2], scheme=kgw, max_new_tokens=30, temperature=0)
    beams = generate(
        tiny_model, tokenizer, PROMPTS[:2], scheme=kgw, max_new_tokens=30, temperature=0, num_beams=3
    )
    for g in greedy + beams:
        det = counting.detect(g.token_ids)
        assert det.green_fraction > 0.8 and det.p_value < 1e-6


def test_top_p_sampling_and_unigram(tiny_model, tokenizer):
    uni = build_scheme(
        GreenListConfig(scheme="unigram", context_width=0, vocab_size=len(tokenizer)), Key.from_seed(1)
    )
    out = generate(
        tiny_model, tokenizer, PROMPTS, scheme=uni, max_new_tokens=40, top_p=0.9, temperature=0.8, seed=1
    )
    assert np.median([uni.detect(g.token_ids).p_value for g in out]) < 1e-4


def test_text_round_trip_keeps_the_watermark(tiny_model, tokenizer, kgw):
    out = generate(tiny_model, tokenizer, PROMPTS[:2], scheme=kgw, max_new_tokens=40, seed=2)
    for ids in encode_texts(tokenizer, [g.text for g in out]):
        assert kgw.detect(ids).p_value < 1e-3


def test_processor_plugs_into_a_text_generation_pipeline(tiny_model, tokenizer, kgw):
    pipe = pipeline("text-generation", model=tiny_model, tokenizer=tokenizer, device="cpu")
    torch.manual_seed(0)
    res = pipe(
        "Once upon a time",
        max_new_tokens=40,
        do_sample=True,
        return_full_text=False,
        logits_processor=LogitsProcessorList([kgw.processor()]),
    )
    ids = encode_texts(tokenizer, [res[0]["generated_text"]])[0]
    assert kgw.detect(ids).p_value < 1e-3


def test_selfhash_generation_is_detected(tiny_model, tokenizer):
    cfg = GreenListConfig(vocab_size=len(tokenizer), seeding="selfhash")
    s = build_scheme(cfg, Key.from_seed("self"))
    # SelfHash biases only the top `candidates` tokens; a random model spreads its mass far wider,
    # so sample from the same top 40 (a real model concentrates its mass there anyway)
    out = generate(tiny_model, tokenizer, PROMPTS, scheme=s, max_new_tokens=50, seed=4, top_k=40)
    assert np.median([s.detect(g.token_ids).p_value for g in out]) < 1e-4

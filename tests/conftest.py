"""Shared fixtures: the real SmolLM2 tokenizer and a tiny random LLaMA with its vocabulary.

A randomly initialised model has near-uniform next-token distributions (high entropy), which
is what watermark tests need, and it runs in milliseconds on CPU.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    from wm_toolkit.watermark.modeling.models import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # spread the logits so sampling has a real (not flat) distribution
        model.lm_head.weight.mul_(
            20.0
        ) if not cfg.tie_word_embeddings else model.model.embed_tokens.weight.mul_(3.0)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny_model, tokenizer):
    """The tiny model and tokenizer saved as a folder, for commands that take --model PATH."""
    d = tmp_path_factory.mktemp("tiny")
    tiny_model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return str(d)


@pytest.fixture
def key():
    from wm_toolkit.watermark.keying.keys import Key

    return Key.from_seed("tests")

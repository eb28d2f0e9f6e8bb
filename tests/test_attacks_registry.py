"""The attack registry: KIND[:MODE][:STRENGTH] parsing, one dispatch, measured rates, seeds, chunking."""

import json
from pathlib import Path

import numpy as np
import pytest

from wm_toolkit.attacks.registry import (
    AttackContext,
    AttackKind,
    AttackSpec,
    apply_attack,
    available_attacks,
    parse_attack,
    parse_attacks,
    register_attack,
)
from wm_toolkit.watermark.errors import ConfigError, InputError

PROMPTS = Path(__file__).resolve().parent.parent / "data" / "prompts.jsonl"


@pytest.fixture(scope="module")
def texts():
    """Natural English texts of about 60-100 tokens, built from the project's prompts."""
    lines = [json.loads(x)["prompt"] for x in PROMPTS.read_text().splitlines() if x.strip()]
    return [" ".join(lines[i : i + 4]) for i in range(0, 80, 4)]


def test_parse_kinds_modes_and_strengths():
    assert parse_attack("none") == AttackSpec("none")
    assert parse_attack("substitute") == AttackSpec("substitute", 0.1)
    assert parse_attack(" substitute:0.25 ") == AttackSpec("substitute", 0.25)
    assert parse_attack("paraphrase") == AttackSpec("paraphrase", 0.7, "sentence")
    assert parse_attack("paraphrase:whole") == AttackSpec("paraphrase", 0.7, "whole")
    assert parse_attack("paraphrase:whole:1.1").label == "paraphrase:whole:1.1"
    assert [s.label for s in parse_attacks("none,delete:0.2,,delete:0.2,dilute")] == [
        "none",
        "delete:0.2",
        "dilute:0.25",
    ]
    for bad in ("nope", "substitute:1.5", "substitute:abc", "substitute:0.1:0.2", "dilute:0", ""):
        with pytest.raises(ConfigError):
            parse_attacks(bad)


def test_new_kinds_can_be_registered():
    register_attack(
        AttackKind("shout", lambda t, s, c: ([x.upper() for x in t], {"loud": True}), "upper-case")
    )
    assert "shout" in available_attacks()


@pytest.mark.parametrize("kind", ["substitute", "insert", "delete"])
def test_token_edits_change_the_asked_fraction_of_tokens(kind, texts, tokenizer):
    """Measured on the re-tokenised text, so merges at edit boundaries blur it slightly (tol 0.03)."""
    ctx = AttackContext(tokenizer, seed=1)
    out = apply_attack(AttackSpec(kind, 0.2), texts, ctx)
    mean = np.mean([o.fraction_changed for o in out])
    assert abs(mean - 0.2) < 0.03, mean
    special = set(tokenizer.all_special_ids)
    assert all(not special & set(o.token_ids) for o in out)
    assert all(o.params == {"kind": kind, "rate": 0.2, "seed": 1} for o in out)


@pytest.mark.parametrize("spec", ["word-substitute:0.3", "word-delete:0.3", "dilute:0.5", "none"])
def test_every_cheap_kind_is_seeded_and_chunking_does_not_change_results(spec, texts, tokenizer):
    s = parse_attack(spec)
    donors = texts[::-1]
    full = apply_attack(s, texts, AttackContext(tokenizer, seed=4, donors=donors))
    again = apply_attack(s, texts, AttackContext(tokenizer, seed=4, donors=donors))
    tail = apply_attack(s, texts[5:], AttackContext(tokenizer, seed=4, first_index=5, donors=donors))
    assert [a.text for a in full] == [a.text for a in again]
    assert [a.text for a in full[5:]] == [a.text for a in tail]
    if spec != "none":
        other = apply_attack(s, texts, AttackContext(tokenizer, seed=5, donors=donors))
        assert [a.text for a in full] != [a.text for a in other]
    else:
        assert all(a.fraction_changed == 0.0 for a in full)


def test_word_delete_changes_about_the_asked_fraction_of_tokens(texts, tokenizer):
    out = apply_attack(AttackSpec("word-delete", 0.2), texts, AttackContext(tokenizer))
    mean = np.mean([o.fraction_changed for o in out])
    assert 0.12 < mean < 0.3  # words average a bit more than one token; punctuation is never deleted


def test_dilution_needs_donors_and_makes_the_text_longer(texts, tokenizer):
    with pytest.raises(InputError):
        apply_attack(AttackSpec("dilute", 0.5), texts, AttackContext(tokenizer))
    donors = [" ".join(texts[i : i + 3]) for i in range(4, 16, 3)]  # long enough for half and half
    out = apply_attack(AttackSpec("dilute", 0.5), texts[:4], AttackContext(tokenizer, donors=donors))
    for o, t in zip(out, texts[:4], strict=True):
        n = len(tokenizer(t, add_special_tokens=False)["input_ids"])
        assert abs(len(o.token_ids) - 2 * n) <= 0.05 * n  # half of the result is the original


def test_neighbour_needs_a_model_and_uses_its_embeddings(texts, tokenizer, tiny_model):
    with pytest.raises(ConfigError):
        apply_attack(AttackSpec("neighbour", 0.2), texts[:1], AttackContext(tokenizer))
    ctx = AttackContext(tokenizer, model_loader=lambda: (tiny_model, tokenizer))
    out = apply_attack(AttackSpec("neighbour", 0.3), texts[:4], ctx)
    assert all(0.05 < o.fraction_changed < 0.5 for o in out)
    assert out[0].params["k"] == 1

"""Paraphrase: sentence splitting, the user's prompt reaches the model, outputs are cleaned, seeded."""

import pytest

import wm_toolkit.watermark.modeling.generation as generation
from wm_toolkit.attacks.paraphrase import DEFAULT_PROMPT, clean_output, paraphrase, split_sentences
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.modeling.generation import Generation


def test_split_sentences():
    text = 'First one. Second "quoted" one! Is this third? Yes.\n\nNew paragraph here'
    assert split_sentences(text) == [
        "First one.",
        'Second "quoted" one!',
        "Is this third?",
        "Yes.",
        "New paragraph here",
    ]
    assert split_sentences("e.g. lowercase after a dot stays. Two.") == [
        "e.g. lowercase after a dot stays.",
        "Two.",
    ]


def test_clean_output_drops_preambles_and_quotes():
    assert clean_output('Sure! Here is the paraphrase: "A cat sat."', "x", "sentence") == "A cat sat."
    assert clean_output("  ", "fallback", "whole") == "fallback"
    assert clean_output("One.\n\nExtra chatter.", "x", "sentence") == "One."


@pytest.fixture
def fake_generate(monkeypatch):
    calls = []

    def fake(model, tok, prompts, scheme=None, **kw):
        assert scheme is None  # the paraphraser never watermarks
        calls.append((list(prompts), kw))
        return [Generation(p, "REWRITE(" + p.split("Text: ")[-1] + ")", (1,)) for p in prompts]

    monkeypatch.setattr(generation, "generate", fake)
    return calls


def test_sentence_mode_rewrites_each_sentence_with_the_users_prompt(fake_generate, tokenizer):
    out = paraphrase(
        ["A b. C d.", "E f."], None, tokenizer, mode="sentence", prompt="P {text} Text: {text}", batch_size=2
    )
    assert out == ["REWRITE(A b.) REWRITE(C d.)", "REWRITE(E f.)"]
    sent = [p for prompts, _ in fake_generate for p in prompts]
    assert sent == ["P A b. Text: A b.", "P C d. Text: C d.", "P E f. Text: E f."]
    assert fake_generate[0][1]["temperature"] == 0.7


def test_units_are_batched_by_length_and_returned_in_order(fake_generate, tokenizer):
    texts = ["A much longer first sentence with many words in it. Short.", "Mid length one here."]
    out = paraphrase(texts, None, tokenizer, mode="sentence", prompt="{text}", batch_size=2)
    assert out == [
        "REWRITE(A much longer first sentence with many words in it.) REWRITE(Short.)",
        "REWRITE(Mid length one here.)",
    ]
    batches = [prompts for prompts, _ in fake_generate]
    assert batches == [
        ["Short.", "Mid length one here."],
        ["A much longer first sentence with many words in it."],
    ]
    assert fake_generate[0][1]["max_new_tokens"] < fake_generate[1][1]["max_new_tokens"]


def test_units_line_up_with_the_original_sentences(fake_generate, tokenizer):
    # Unit i of every rewrite stands for sentence i of the original, so rewrites made with
    # different settings can be mixed sentence by sentence; `paraphrase` is their join.
    from wm_toolkit.attacks.paraphrase import paraphrase_units, split_sentences

    texts = ["A b. C d.", "E f."]
    units = paraphrase_units(texts, None, tokenizer, mode="sentence", prompt="{text}")
    assert units == [["REWRITE(A b.)", "REWRITE(C d.)"], ["REWRITE(E f.)"]]
    assert [len(u) for u in units] == [len(split_sentences(t)) for t in texts]
    assert paraphrase(texts, None, tokenizer, mode="sentence", prompt="{text}") == [
        " ".join(u) for u in units
    ]
    assert paraphrase_units(texts, None, tokenizer, mode="whole", prompt="{text}") == [
        ["REWRITE(A b. C d.)"],
        ["REWRITE(E f.)"],
    ]


def test_whole_mode_sends_each_text_once(fake_generate, tokenizer):
    out = paraphrase(["A b. C d.", "E f."], None, tokenizer, mode="whole", temperature=1.3)
    assert out == ["REWRITE(A b. C d.)", "REWRITE(E f.)"]
    assert len(fake_generate) == 1 and fake_generate[0][1]["temperature"] == 1.3
    assert DEFAULT_PROMPT.format(text="A b. C d.") in fake_generate[0][0]


def test_bad_prompt_and_mode_are_config_errors(tokenizer):
    with pytest.raises(ConfigError):
        paraphrase(["x"], None, tokenizer, prompt="no slot")
    with pytest.raises(ConfigError):
        paraphrase(["x"], None, tokenizer, mode="words")


def test_real_generation_is_deterministic_under_a_seed(tiny_model, tokenizer):
    texts = ["The river runs fast."]
    a = paraphrase(texts, tiny_model, tokenizer, seed=3, max_new_tokens=4)
    assert a == paraphrase(texts, tiny_model, tokenizer, seed=3, max_new_tokens=4)
    assert a[0] != texts[0]

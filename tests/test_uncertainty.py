"""SAR pipeline pieces on real tokenizers and tiny models: removal by position, batching, sampling, CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wm_toolkit.watermark.errors import ConfigError, InputError
from wm_toolkit.watermark.uncertainty import (
    Estimator,
    SamplingConfig,
    load_nli,
    load_similarity,
    sample_answers,
)
from wm_toolkit.watermark.uncertainty.estimate import texts_without_each_token
from wm_toolkit.watermark.uncertainty.evaluate import load_qa, rouge_correctness
from wm_toolkit.watermark.uncertainty.sampling import Answer, QuestionSamples, stop_token_ids, token_nlls


def test_token_removal_is_by_position_not_by_string(tokenizer):
    ids = tokenizer(" the cat saw the dog", add_special_tokens=False)["input_ids"]
    the = ids[0]
    assert ids.count(the) == 2, "the test needs ' the' twice as one token"
    removed = texts_without_each_token(tokenizer, ids)
    assert len(removed) == len(ids)
    second = ids.index(the, 1)
    assert removed[second] == " the cat saw dog"  # only that occurrence goes
    assert removed[0] == " cat saw the dog"
    # the reference code's str.replace would have dropped both
    assert " the cat saw the dog".replace(tokenizer.decode([the]), "") == " cat saw dog"


class CountingSimilarity:
    """g = 0.5 for every pair; counts model calls to check batching."""

    name = "fake"

    def __init__(self):
        self.calls = 0

    def pairs(self, left, right):
        self.calls += 1
        return np.array([0.9 if r.endswith("X") else 0.5 for r in right])

    def matrix(self, texts):
        self.calls += 1
        m = np.full((len(texts), len(texts)), 0.5)
        np.fill_diagonal(m, 1.0)
        return m


def _answer(tokenizer, text, nlls):
    ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert len(ids) == len(nlls)
    return Answer(text, ids, tuple(nlls))


def test_estimator_batches_one_similarity_call_per_kind_and_matches_formulas(tokenizer):
    a = _answer(tokenizer, " red blue", [1.0, 3.0])
    b = _answer(tokenizer, " red blue", [1.0, 3.0])
    qs = QuestionSamples("Q?", a, (a, b))
    sim = CountingSimilarity()
    out = Estimator(tokenizer, sim).score(qs)
    assert sim.calls == 2  # one pairs() for all tokens of all samples, one matrix()
    # equal relevance (g = 0.5 for both removals) -> TokenSAR = mean NLL = 2
    assert out.token_sar == pytest.approx([2.0, 2.0])
    assert out.scores["token-sar"] == pytest.approx(2.0)
    assert out.scores["pe"] == pytest.approx(4.0) and out.scores["ln-pe"] == pytest.approx(2.0)
    assert out.scores["lexical"] == pytest.approx(-1.0)  # identical samples
    # SentSAR by hand: each -log(e^-4 + 0.5 e^-4 / 0.001)
    assert out.scores["sent-sar"] == pytest.approx(4 - np.log(1 + 500))
    assert out.scores["sar"] == pytest.approx(2 - np.log(1 + 500))
    assert out.clusters == [0, 1]  # g = 0.5 < 0.95: two meanings


def test_estimator_only_computes_what_is_asked(tokenizer):
    a = _answer(tokenizer, " red", [1.0])
    sim = CountingSimilarity()
    out = Estimator(tokenizer, sim, methods=("pe", "ln-pe", "lexical")).score(
        QuestionSamples("Q?", a, (a, a))
    )
    assert sim.calls == 0 and set(out.scores) == {"pe", "ln-pe", "lexical"}


def test_bi_encoder_is_a_clipped_cosine_with_unit_diagonal():
    sim = load_similarity()
    m = sim.matrix(["The capital is Paris.", "Paris is the capital.", "I like green apples."])
    assert m.shape == (3, 3) and np.allclose(np.diag(m), 1.0) and np.allclose(m, m.T)
    assert m.min() >= 0 and m.max() <= 1
    assert m[0, 1] > m[0, 2]  # a paraphrase is closer than an unrelated sentence
    got = sim.pairs(["a cat", "a cat", "a dog"], ["a cat", "a dog", "a cat"])
    assert got[0] == pytest.approx(1.0, abs=1e-5) and got[1] == pytest.approx(got[2], abs=1e-6)


def _tiny_classifier(path, num_labels, id2label=None):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from wm_toolkit.watermark.modeling.models import similarity_model_path

    tok = AutoTokenizer.from_pretrained(similarity_model_path())
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=num_labels,
        **({"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {}),
    )
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_cross_encoder_and_nli_wrappers_on_tiny_models(tmp_path):
    cross = load_similarity(_tiny_classifier(tmp_path / "ce", 1))
    assert type(cross).__name__ == "CrossEncoder"
    m = cross.matrix(["a b", "c d", "e f"])
    assert m.shape == (3, 3) and np.allclose(np.diag(m), 1) and ((m > 0) & (m <= 1)).all()
    nli_path = _tiny_classifier(tmp_path / "nli", 3, {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"})
    contra, ent = load_nli(nli_path).verdicts(["a b", "c d", "e f"])
    assert contra.shape == ent.shape == (3, 3) and not contra.diagonal().any()
    with pytest.raises(ConfigError, match="not a similarity cross-encoder"):
        load_similarity(nli_path)
    with pytest.raises(ConfigError, match="not an NLI model"):
        load_nli(_tiny_classifier(tmp_path / "bad", 2))


def test_missing_similarity_model_is_a_one_line_error(tmp_path):
    from wm_toolkit.watermark.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        load_similarity(str(tmp_path / "nope"))


@pytest.fixture(scope="module")
def tiny_samples(tiny_model, tokenizer):
    cfg = SamplingConfig(k=3, max_new_tokens=6, seed=3)
    return sample_answers(
        tiny_model, tokenizer, ["What is two plus two?", "Name a colour."], cfg, batch_size=2
    )


def test_samples_have_one_nll_per_generated_id_and_no_stop_tokens(tiny_samples, tiny_model, tokenizer):
    from wm_toolkit.watermark.uncertainty.sampling import build_prompt

    stop = set(stop_token_ids(tokenizer, tiny_model))
    for qs in tiny_samples:
        assert len(qs.samples) == 3
        answers = [qs.most_likely, *qs.samples]
        for a in answers:
            assert 1 <= len(a.token_ids) <= 6 and not stop & set(a.token_ids)
            assert len(a.token_nlls) == len(a.token_ids)
        # the NLLs read during decoding equal a teacher-forced forward pass over the same ids
        prompt = tokenizer(build_prompt(tokenizer, qs.question), add_special_tokens=False)["input_ids"]
        ref = token_nlls(tiny_model, prompt, [a.token_ids for a in answers])
        for a, r in zip(answers, ref, strict=True):
            assert np.allclose(a.token_nlls, r, atol=1e-3)


def test_most_likely_answer_is_greedy_and_sampling_is_seeded(tiny_samples, tiny_model, tokenizer):
    from wm_toolkit.watermark.uncertainty.sampling import build_prompt

    stop = stop_token_ids(tokenizer, tiny_model)
    qs = tiny_samples[0]
    enc = tokenizer(build_prompt(tokenizer, qs.question), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        ref = tiny_model.generate(
            **enc, do_sample=False, max_new_tokens=6, min_new_tokens=1, eos_token_id=stop, pad_token_id=2
        )[0, enc["input_ids"].shape[1] :].tolist()
    assert (
        list(qs.most_likely.token_ids)
        == [t for t in ref if t not in set(stop)][: len(qs.most_likely.token_ids)]
    )
    again = sample_answers(
        tiny_model,
        tokenizer,
        ["What is two plus two?", "Name a colour."],
        SamplingConfig(k=3, max_new_tokens=6, seed=3),
    )
    assert [a.token_ids for a in again[0].samples] == [a.token_ids for a in qs.samples]


def test_beam_search_most_likely_answer(tiny_model, tokenizer):
    cfg = SamplingConfig(k=2, max_new_tokens=4, num_beams=3)
    qs = sample_answers(tiny_model, tokenizer, ["Hi?"], cfg)[0]
    assert len(qs.most_likely.token_nlls) == len(qs.most_likely.token_ids) >= 1


def test_rouge_correctness_uses_the_best_reference():
    assert rouge_correctness("It is Jupiter", ["Saturn", "Jupiter"]) == pytest.approx(0.5)
    assert rouge_correctness("Jupiter", ["Saturn", "the planet Jupiter"]) == pytest.approx(0.5)
    assert rouge_correctness("Paris", ["Paris"]) == 1.0


def test_load_qa_validates(tmp_path):
    p = tmp_path / "qa.jsonl"
    p.write_text('{"id": "a", "question": "Q?", "answer": "A", "aliases": ["Ay", "A"]}\n')
    (item,) = load_qa(p)
    assert item.references == ("A", "Ay")
    p.write_text('{"question": "Q?"}\n')
    with pytest.raises(InputError, match="answer"):
        load_qa(p)
    with pytest.raises(InputError, match="no such file"):
        load_qa(tmp_path / "missing.jsonl")


def _run(*args):
    from wm_toolkit.cli.main import wm

    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


def test_cli_question_prints_answer_and_every_score(tiny_dir):
    res = _run(
        "uncertainty", "What is two plus two?", "--model", tiny_dir, "--k", 3, "--max-new-tokens", 5, "--json"
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out["scores"]) == {"sar", "token-sar", "sent-sar", "pe", "ln-pe", "lexical", "semantic"}
    assert len(out["samples"]) == 3 and out["answer"]
    table = _run(
        "uncertainty", "Hi?", "--model", tiny_dir, "--k", 2, "--max-new-tokens", 3, "--methods", "pe"
    )
    assert table.exit_code == 0 and "PE" in table.stdout and "Answer:" in table.stdout


def test_cli_eval_end_to_end_with_cache(tiny_dir, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        "\n".join(
            json.dumps({"id": f"q{i}", "question": q, "answer": a, "aliases": []})
            for i, (q, a) in enumerate(
                [("Two plus two?", "4"), ("Sky colour?", "blue"), ("Cat sound?", "meow")]
            )
        )
        + "\n"
    )
    out = tmp_path / "run"
    args = [
        "uncertainty",
        "eval",
        qa,
        "--model",
        tiny_dir,
        "--k",
        2,
        "--max-new-tokens",
        4,
        "-o",
        out,
        "--json",
    ]
    res = _run(*args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["n"] == 3 and 0 <= summary["accuracy"] <= 1 and summary["generated"] == 3
    assert set(summary["auroc"]) == {"sar", "token-sar", "sent-sar", "pe", "ln-pe", "lexical", "semantic"}
    results = json.loads((out / "results.json").read_text())
    assert len(results["questions"]) == 3 and (out / "roc.png").stat().st_size > 0
    again = _run(*args[:-1], "--methods", "pe,ln-pe", "--limit", 2, "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["generated"] == 0 and summary["n"] == 2 and set(summary["auroc"]) == {"pe", "ln-pe"}


def test_cli_errors_are_one_line(tiny_dir, tmp_path):
    for args in (
        ["uncertainty", "eval", tmp_path / "missing.jsonl", "--model", tiny_dir],
        ["uncertainty", "Q?", "--model", tiny_dir, "--methods", "nope"],
        ["uncertainty", "   ", "--model", tiny_dir],
    ):
        res = _run(*args)
        assert res.exit_code == 2, res.output
        assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_default_model_answers_an_easy_question_confidently():
    from wm_toolkit.watermark.modeling.models import load_model

    model, tok = load_model()
    qs = sample_answers(model, tok, ["What is the capital of France?"], SamplingConfig(k=5))[0]
    assert "paris" in qs.most_likely.text.lower()
    out = Estimator(tok, load_similarity()).score(qs)
    assert out.scores["pe"] < 10

"""Span detection: where the watermark is in a long text, with a document p-value valid over
every window scanned (`watermark.spans`, `scheme.detect_spans`, `wm detect --spans`).

Statistical tests use fixed seeds; each states its false-failure probability under a correct
implementation (a binomial tail on the number of flagged texts)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying import prf
from wm_toolkit.watermark.keying.hfkeys import HashingKey
from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.statistics import spans
from wm_toolkit.watermark.statistics.pvalues import (
    log10_binomial_tail,
    log10_binomial_tails,
    log10_gamma_tail,
    log10_gamma_tails,
    log10_hypergeom_tail,
    log10_hypergeom_tails,
)

KEY = Key.from_seed("span-tests")


def kgw(vocab: int = 1000, **cfg):
    return build_scheme({"scheme": "kgw", "vocab_size": vocab, **cfg}, KEY)


def plant_green(scheme, ids: np.ndarray, a: int, b: int, rng, share: float = 1.0) -> np.ndarray:
    """Tokens a..b-1 replaced, with probability `share` each, by a token green for its context
    (h = 1): a strongly watermarked passage as the detector sees it."""
    ids = ids.copy()
    v = scheme.config.vocab_size
    for i in range(a, b):
        if rng.random() >= share:
            continue
        cands = rng.integers(0, v, 64)
        seeds = scheme.seeds_for(np.full((64, 1), ids[i - 1]))
        green = scheme.is_green(torch.from_numpy(seeds), torch.from_numpy(cands)).numpy()
        ids[i] = cands[np.argmax(green)]
    return ids


def flagged_bound(trials: int, alpha: float) -> int:
    """Flagged texts tolerated: P[Binomial(trials, alpha) > bound] < 1e-4."""
    k = 0
    while log10_binomial_tail(k + 1, trials, alpha) > -4:
        k += 1
    return k


# ---- the window family and the scan -------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 31, 32, 33, 100, 1000, 4097])
def test_windows_cover_the_text_at_every_scale_and_their_weights_sum_to_one(n):
    w = spans.windows(n, 32)
    assert w.lengths[-1] == n and all(a < b for a, b in zip(w.lengths, w.lengths[1:], strict=False))
    for j, length in enumerate(w.lengths):
        at = w.scale == j
        assert np.all(w.ends[at] - w.starts[at] == length)
        assert w.starts[at].min() == 0 and w.ends[at].max() == n  # the last window is flush with the end
        assert np.all(np.diff(w.starts[at]) <= max(1, length // 2))
    assert math.isclose(float(np.sum(10.0**-w.log10_weight)), 1.0)  # weighted Bonferroni: valid


def test_max_segment_is_the_maximal_sum_run():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.normal(size=int(rng.integers(1, 30)))
        a, b, gain = spans._max_segment(x)
        best = max(x[i:j].sum() for i in range(len(x)) for j in range(i + 1, len(x) + 1))
        assert math.isclose(gain, best, abs_tol=1e-9) and math.isclose(x[a:b].sum(), best, abs_tol=1e-9)


def test_vectorised_tails_equal_the_scalar_ones_even_below_the_float_range():
    g = np.array([0, 1, 5, 30, 400, 900, 1000])
    t = np.array([10, 10, 10, 40, 1000, 1000, 1000])
    got = log10_binomial_tails(g, t, 0.25)
    want = [log10_binomial_tail(int(a), int(b), 0.25) for a, b in zip(g, t, strict=True)]
    assert np.allclose(got, want, rtol=1e-9) and got[-1] < -600
    assert np.allclose(
        log10_hypergeom_tails(g, 5000, 1250, t),
        [log10_hypergeom_tail(int(a), 5000, 1250, int(b)) for a, b in zip(g, t, strict=True)],
        rtol=1e-9,
    )
    x = np.array([0.0, 3.0, 50.0, 2000.0])
    k = np.array([5, 5, 20, 100])
    assert np.allclose(
        log10_gamma_tails(x, k), [log10_gamma_tail(a, b) for a, b in zip(x, k, strict=True)], rtol=1e-9
    )


def test_document_p_value_is_valid_over_all_windows_on_random_bits():
    """H0: i.i.d. Bernoulli(gamma) green bits. The document p-value must be super-uniform even
    though ~120 windows are scanned; without the correction it would be far below alpha."""
    rng = np.random.default_rng(1)
    trials, n, gamma = 1500, 500, 0.25
    p_doc, p_best = [], []
    for _ in range(trials):
        bits = rng.random(n) < gamma
        ev = spans.CountEvidence(np.ones(n, bool), bits, gamma)
        found = spans.scan(ev, alpha=0.05)
        p_doc.append(10.0**found.log10_p_value)
        p_best.append(10.0**found.log10_best_window)
    for u in (0.01, 0.05, 0.2):
        assert sum(p <= u for p in p_doc) <= flagged_bound(trials, u)  # false failure < 1e-4 each
    assert sum(p <= 0.05 for p in p_best) > 0.3 * trials  # the uncorrected minimum is not a p-value


# ---- schemes: validity on texts independent of the key --------------------------------------------


def _random_docs(rng, vocab: int, n: int, trials: int, repeated: bool):
    for _ in range(trials):
        if repeated:  # a short random chunk, copied over and over: repeats must be scored once
            chunk = rng.integers(0, vocab, 40)
            yield np.tile(chunk, n // 40 + 1)[:n]
        else:
            yield rng.integers(0, vocab, n)


@pytest.mark.parametrize(
    "config",
    [
        {"scheme": "kgw", "vocab_size": 40},
        {"scheme": "kgw", "vocab_size": 40, "seeding": "selfhash"},
        {"scheme": "unigram", "vocab_size": 40},
        {"scheme": "gumbel", "vocab_size": 40, "context_width": 1},
        {"scheme": "exp", "vocab_size": 40, "key_length": 64},
        {"scheme": "exp-edit", "vocab_size": 40, "key_length": 64},
        {"scheme": "synthid", "vocab_size": 40, "ngram_len": 2},
    ],
    ids=lambda c: f"{c['scheme']}-{c.get('seeding', '')}",
)
@pytest.mark.parametrize("repeated", [False, True], ids=["random", "repeated"])
def test_texts_independent_of_the_key_are_flagged_at_most_alpha(config, repeated):
    scheme = build_scheme(config, KEY)
    rng = np.random.default_rng(2)
    trials, alpha = 150, 0.05
    flagged = sum(
        scheme.detect_spans(ids, alpha=alpha).watermarked(alpha)
        for ids in _random_docs(rng, 40, 600, trials, repeated)
    )
    assert flagged <= flagged_bound(trials, alpha)  # false failure < 1e-4


def test_counting_repeated_pairs_would_flag_repetitive_plain_texts():
    """Why windows score each (context, token) pair once: the same scan over every occurrence
    flags most repetitive texts (this is what the test above would catch)."""
    scheme = kgw(40)
    rng = np.random.default_rng(3)
    flagged = 0
    for ids in _random_docs(rng, 40, 600, 60, repeated=True):
        ev = scheme.span_evidence(ids)
        green, _ = scheme.scored_positions(ids)
        every = spans.CountEvidence(np.r_[False, np.ones(599, bool)], np.r_[False, green], 0.25)
        assert ev.scored.sum() <= 41
        flagged += spans.scan(every, alpha=0.05).log10_p_value <= math.log10(0.05)
    assert flagged > 10


def test_count_repeats_configs_have_no_span_test():
    scheme = kgw(count_repeats=True)
    assert not scheme.has_spans
    with pytest.raises(ConfigError, match="count_repeats"):
        scheme.detect_spans(np.arange(100))


def test_its_has_no_span_test_and_says_so():
    scheme = build_scheme({"scheme": "its", "vocab_size": 100, "key_length": 32}, KEY)
    assert not scheme.has_spans
    with pytest.raises(ConfigError, match="not available"):
        scheme.detect_spans(np.arange(100))


# ---- schemes: planted spans are found with the right ends -------------------------------------------


def test_kgw_planted_passage_is_found_with_tight_ends_where_the_whole_text_test_misses_it():
    scheme = kgw()
    rng = np.random.default_rng(4)
    ids = plant_green(scheme, rng.integers(0, 1000, 4000), 2300, 2500, rng, share=0.6)
    det = scheme.detect_spans(ids, alpha=1e-3)
    assert det.verdict(1e-3) == "watermarked" and det.p_value < 1e-12
    assert scheme.detect(ids).p_value > det.p_value * 1e6
    (span,) = det.spans
    assert abs(span.start_token - 2300) <= 10 and abs(span.end_token - 2500) <= 10
    assert span.p_value == det.p_value and span.start_char is None
    assert det.to_dict(1e-3)["spans"][0]["start_token"] == span.start_token


def test_two_separate_passages_give_two_spans():
    scheme = kgw()
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 1000, 3000)
    ids = plant_green(scheme, plant_green(scheme, ids, 500, 650, rng), 2000, 2150, rng)
    found = [(s.start_token, s.end_token) for s in scheme.detect_spans(ids).spans]
    assert len(found) == 2
    assert all(
        abs(a - ta) <= 5 and abs(b - tb) <= 5
        for (a, b), (ta, tb) in zip(found, [(500, 650), (2000, 2150)], strict=True)
    )


def test_gumbel_planted_passage_is_found():
    scheme = build_scheme({"scheme": "gumbel", "vocab_size": 1000, "context_width": 1}, KEY)
    rng = np.random.default_rng(6)
    ids = rng.integers(0, 1000, 3000)
    for i in range(1200, 1400):  # the EXP decoder over 8 equally likely candidates
        cands = rng.integers(0, 1000, 8)
        seeds = torch.from_numpy(scheme.seeds_for(np.full((8, 1), ids[i - 1])))
        ids[i] = cands[int(prf.uniforms(seeds, torch.from_numpy(cands)).argmax())]
    (span,) = scheme.detect_spans(ids).spans
    assert abs(span.start_token - 1200) <= 15 and abs(span.end_token - 1400) <= 15


@pytest.mark.parametrize("name", ["exp", "exp-edit"])
def test_exp_planted_passage_on_consecutive_key_rows_is_found(name):
    scheme = build_scheme({"scheme": name, "vocab_size": 1000, "key_length": 256}, KEY)
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 1000, 3000)
    shift = 77
    for step, i in enumerate(range(1000, 1200)):  # the EXP decoder over 8 equally likely candidates
        row = torch.from_numpy(scheme._row_seeds.numpy()[[(shift + step) % 256]])
        cands = rng.integers(0, 1000, 8)
        ids[i] = cands[int(prf.uniforms(row.reshape(1, 1), torch.from_numpy(cands).reshape(1, -1)).argmax())]
    det = scheme.detect_spans(ids)
    (span,) = det.spans
    assert abs(span.start_token - 1000) <= 15 and abs(span.end_token - 1200) <= 15
    assert max(det.window_lengths) <= 256  # no window longer than the key (rows would repeat)


def test_a_text_shorter_than_the_smallest_window_is_one_window_with_the_whole_text_p_value():
    scheme = kgw()
    rng = np.random.default_rng(8)
    ids = plant_green(scheme, rng.integers(0, 1000, 30), 1, 30, rng)
    det = scheme.detect_spans(ids)
    assert det.num_windows == 1 and math.isclose(det.log10_p_value, scheme.detect(ids).log10_p_value)
    uni = build_scheme({"scheme": "unigram", "vocab_size": 1000}, KEY)
    assert math.isclose(uni.detect_spans(ids).log10_p_value, uni.detect(ids).log10_p_value)
    synthid = build_scheme({"scheme": "synthid", "vocab_size": 1000}, KEY)  # the mean g-value score
    assert math.isclose(10 ** synthid.detect_spans(ids).log10_p_value, synthid.detect(ids).p_value_mean)


def test_hf_kgw_windows_use_the_exact_per_seed_null():
    scheme = build_scheme(
        {"scheme": "hf-kgw", "vocab_size": 300, "model_vocab_size": 300}, HashingKey(15485863)
    )
    rng = np.random.default_rng(9)
    above = 0
    for _ in range(30):  # few previous tokens: several tokens per seed (hypergeometric)
        ids = rng.choice(20, 31)
        whole, det = scheme.detect(ids), scheme.detect_spans(ids)
        if whole.green_count > 0.25 * whole.num_tokens_scored:  # one window: the whole-text test
            above += 1
            assert math.isclose(det.log10_p_value, whole.log10_p_value, abs_tol=1e-9)
        else:  # at or below the mean a window is never significant: p = 1 (conservative)
            assert det.p_value == 1.0
    assert 5 <= above <= 25
    flagged = sum(
        scheme.detect_spans(rng.integers(0, 300, 300), alpha=0.05).watermarked(0.05) for _ in range(40)
    )
    assert flagged <= flagged_bound(40, 0.05)


# ---- text offsets and the CLI ------------------------------------------------------------------------


PLAIN = (
    "The river rose slowly through the night, and by morning the lower fields were under water. "
    "Farmers moved their animals to the hill behind the church, where the old road still held. "
)


def green_words(scheme, tokenizer, n: int, first: int, seed: int = 0) -> list[int]:
    """n " word" tokens each green for its predecessor (h = 1), after token `first`."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    cands = np.array(
        [
            i
            for i, t in enumerate(vocab)
            if t.startswith("Ġ") and t[1:].isascii() and t[1:].isalpha() and t[1:].islower()
        ]
    )
    rng = np.random.default_rng(seed)
    ids = [first]
    while len(ids) <= n:
        c = rng.choice(cands, 64)
        seeds = scheme.seeds_for(np.full((64, 1), ids[-1]))
        green = scheme.is_green(torch.from_numpy(seeds), torch.from_numpy(c)).numpy()
        if green.any():
            ids.append(int(c[np.argmax(green)]))
    return ids[1:]


@pytest.fixture(scope="module")
def document(tokenizer):
    """(text, start, end): a green passage (characters start..end) inside plain text."""
    scheme = build_scheme({"scheme": "kgw", "vocab_size": len(tokenizer), "tokenizer": "smollm2-135m"}, KEY)
    before = PLAIN * 6
    last = tokenizer(before, add_special_tokens=False)["input_ids"][-1]
    passage = tokenizer.decode(green_words(scheme, tokenizer, 90, last))
    text = before + passage.strip() + ". " + PLAIN * 6
    start = len(before)
    return text, start, start + len(passage.strip())


def test_detect_spans_text_gives_character_offsets_of_the_input_text(tokenizer, document):
    text, start, end = document
    scheme = build_scheme({"scheme": "kgw", "vocab_size": len(tokenizer)}, KEY)
    (span,) = scheme.detect_spans_text(text, tokenizer).spans
    assert abs(span.start_char - start) <= 12 and abs(span.end_char - end) <= 12
    # doubled spaces are collapsed before scoring; offsets still index the text as given
    spaced = text.replace(". ", ".   ")
    (moved,) = scheme.detect_spans_text(spaced, tokenizer).spans
    shift = spaced[: moved.start_char].count(".   ") * 2
    assert moved.start_char == span.start_char + shift
    assert (
        spaced[moved.start_char : moved.end_char].replace(".   ", ". ")
        == text[span.start_char : span.end_char]
    )


@pytest.fixture
def files(tmp_path, document):
    write_key_file(tmp_path / "key", KEY)
    (tmp_path / "doc.txt").write_text(document[0])
    (tmp_path / "plain.txt").write_text(PLAIN * 12)
    return tmp_path


def run(files, *args):
    res = CliRunner().invoke(wm, ["detect", "--key", str(files / "key"), *args])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_json_spans_contract(files, document):
    text, start, end = document
    rows = [
        json.loads(x)
        for x in run(
            files, str(files / "doc.txt"), str(files / "plain.txt"), "--spans", "--json", "--tokens"
        ).splitlines()
    ]
    doc, plain = rows
    for row in rows:
        assert {"spans", "span_p_value", "span_log10_p_value", "span_verdict", "span_windows"} <= set(row)
        assert row["p_value"] > 0  # the whole-text fields are unchanged
    assert (
        doc["span_verdict"] == "watermarked"
        and plain["spans"] == []
        and plain["span_verdict"] == "not watermarked"
    )
    (span,) = doc["spans"]
    assert set(span) >= {"start_char", "end_char", "start_token", "end_token", "p_value"}
    assert abs(span["start_char"] - start) <= 12 and abs(span["end_char"] - end) <= 12
    toks = doc["tokens"]
    assert toks[span["start_token"]]["start"] == span["start_char"]
    assert toks[span["end_token"] - 1]["end"] == span["end_char"]
    assert span["p_value"] <= doc["span_p_value"] * (1 + 1e-9) and doc["span_p_value"] <= 1e-3
    without = json.loads(run(files, str(files / "doc.txt"), "--json"))
    assert "spans" not in without and "span_p_value" not in without


def test_spans_are_marked_in_the_table_show_tokens_and_html(files, document):
    text, start, end = document
    table = run(files, str(files / "doc.txt"), "--spans")
    assert "span p" in table
    row = json.loads(run(files, str(files / "doc.txt"), "--spans", "--json"))
    (span,) = row["spans"]
    assert f"{span['start_char']}-{span['end_char']}" in table  # the characters of the span
    shown = run(files, str(files / "doc.txt"), "--spans", "--show-tokens")
    assert "{{ ... }}: a region the span test found watermarked" in shown
    body = shown.split("== ", 1)[1].split("\n", 2)[2]
    assert body.count("{{") == 1 and body.count("}}") == 1
    inside = body.split("{{", 1)[1].split("}}", 1)[0]
    assert (
        inside.replace("[+", "").replace("[-", "").replace("]", "")
        == text[span["start_char"] : span["end_char"]]
    )
    run(files, str(files / "doc.txt"), "--spans", "--html", str(files / "r.html"))
    page = (files / "r.html").read_text()
    assert 't-span"' in page and "span test p" in page


def test_spans_for_a_scheme_without_a_span_test_are_empty_with_a_note(files):
    row = json.loads(
        run(files, str(files / "plain.txt"), "--scheme", "kgw", "--count-repeats", "--spans", "--json")
    )
    assert row["spans"] == [] and "not available" in row["spans_note"]

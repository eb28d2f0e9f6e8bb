"""The streaming test: an e-value that a user may watch token by token and stop on at will."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.statistics.sequential import SequentialTest, feed, sequential_test_for


def _null_fpr(kind: str, streams: int, length: int, alpha: float, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(streams):
        t = SequentialTest(kind, alpha, prob=0.25)
        if kind == "count":
            t.update_counts(np.ones(length), rng.random(length) < 0.25)
        else:
            t.update_scores(rng.exponential(size=length))
        hits += t.stopped_at is not None
    return hits / streams


@pytest.mark.parametrize("kind", ["count", "gamma"])
def test_null_streams_watched_at_every_token_reject_at_most_alpha(kind):
    # continuous monitoring over 500 tokens: Ville's inequality bounds the chance of ever crossing
    fpr = _null_fpr(kind, 2000, 500, alpha=0.05)
    assert fpr <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 2000)


def test_feeding_in_pieces_gives_the_same_path_as_feeding_at_once():
    rng = np.random.default_rng(1)
    x = rng.random(300) < 0.5
    a, b = SequentialTest("count", 1e-3, prob=0.25), SequentialTest("count", 1e-3, prob=0.25)
    a.update_counts(np.ones(300), x)
    for lo in range(0, 300, 7):
        b.update_counts(np.ones(len(x[lo : lo + 7])), x[lo : lo + 7])
    assert a.verdict().to_dict() == pytest.approx(b.verdict().to_dict())


def test_a_watermarked_rate_is_detected_and_the_stopping_time_is_the_first_crossing():
    rng = np.random.default_rng(2)
    t = SequentialTest("count", 1e-3, prob=0.25)
    t.update_counts(np.ones(400), rng.random(400) < 0.6)
    v = t.verdict()
    assert v.watermarked and 10 < v.stopped_at < 200
    assert v.p_value <= 1e-3  # anytime p = 1 / running max of E


def test_unscored_positions_carry_no_evidence():
    t = SequentialTest("count", 1e-3, prob=0.25)
    t.update_counts(np.zeros(50), np.zeros(50))
    assert t.tokens == 50 and t.verdict().log_e == pytest.approx(0.0)


def test_the_exp_union_bound_stops_at_the_key_length():
    t = SequentialTest("shifted", 1e-3, shifts=64)
    t.update_scores(np.full((64, 80), 3.0))
    assert t.tokens == 80 and t.verdict().watermarked
    frozen = t.verdict().log_e
    t.update_scores(np.full((64, 5), 50.0))  # past the key length nothing counts
    assert t.verdict().log_e == frozen


def test_hypergeometric_lists_use_the_conditional_null_rate():
    # every one of a list's K green tokens drawn first: the rate left for the rest is 0
    t = SequentialTest("count", 1e-3, hypergeom=(10, 2))
    t.update_counts(np.ones(2), np.ones(2), np.zeros(2))
    assert t._seen[0] == (2, 2)


@pytest.mark.parametrize("scheme", ["kgw", "unigram", "gumbel", "exp", "synthid"])
def test_every_scheme_with_span_evidence_has_a_streaming_test(scheme):
    s = build_scheme({"scheme": scheme, "vocab_size": 1000}, Key.from_seed(3))
    ids = np.random.default_rng(0).integers(0, 1000, 120)
    ev = s.span_evidence(ids)
    t = sequential_test_for(ev, 1e-3)
    feed(t, ev, 0, ev.n)
    assert t.tokens == ev.n and not t.verdict().watermarked


# ---- following a growing text ---------------------------------------------------------------------


def _green_text(scheme, tokenizer, n=90, seed=0) -> str:
    """Words each green for its predecessor (kgw, h = 1): a strongly watermarked text, no model."""
    import torch

    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    cands = np.array(
        [
            i
            for i, t in enumerate(vocab)
            if t.startswith("Ġ") and t[1:].isascii() and t[1:].isalpha() and t[1:].islower()
        ]
    )
    rng = np.random.default_rng(seed)
    ids = [tokenizer.convert_tokens_to_ids("The")]
    while len(ids) < n:
        seed_t = torch.from_numpy(scheme.seeds_for(np.array([[ids[-1]]])))
        green = scheme.is_green(seed_t.expand(len(cands)), torch.from_numpy(cands)).numpy()
        ids.append(int(rng.choice(cands[green])))
    return tokenizer.decode(ids)


def test_a_followed_text_is_called_watermarked_before_it_ends(tokenizer):
    from wm_toolkit.watermark.runtime.follow import HOLD, monitor_for

    s = build_scheme({"scheme": "kgw", "vocab_size": len(tokenizer)}, Key.from_seed("follow"))
    text = _green_text(s, tokenizer)
    mon = monitor_for([("key", s, "tok")], {"tok": tokenizer}, 1e-3)
    words = text.split(" ")
    states = [mon.update(" ".join(words[:i])) for i in range(2, len(words), 5)]
    assert states[0]["verdict"] == "undecided"
    assert any(st["verdict"] == "watermarked" for st in states)  # before the final update
    first = next(st for st in states if st["verdict"] == "watermarked")
    assert first["entries"][0]["tokens_to_detect"] < 40
    end = mon.update(text, final=True)
    assert end["final"] and end["tokens"] == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert all(st["tokens"] <= max(0, len(tokenizer(text)["input_ids"]) - HOLD) for st in states[:-1])


def test_wm_detect_follow_prints_a_line_per_update_and_a_final_verdict(tmp_path):
    from click.testing import CliRunner

    from wm_toolkit.cli.main import wm
    from wm_toolkit.watermark.keying.keys import write_key_file

    write_key_file(tmp_path / "k", Key.from_seed("follow cli"))
    lines = "".join(f"Line {i} of a plain text that keeps arriving.\n" for i in range(6))
    res = CliRunner().invoke(
        wm, ["detect", "--follow", "-", "--key", str(tmp_path / "k"), "--json"], input=lines
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(rows) == 7 and rows[-1]["final"] and rows[-1]["verdict"] == "not watermarked"
    assert [r["tokens"] for r in rows] == sorted(r["tokens"] for r in rows)

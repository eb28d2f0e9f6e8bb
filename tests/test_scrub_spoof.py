"""Scrubbing and spoofing with a stolen list, judged by the real detector (tiny random LLaMA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wm_toolkit.attacks.scrub import count_believed_green, perplexity, scrub_ids, success_rate
from wm_toolkit.attacks.spoof import StolenListLogitsProcessor, flagged_rate, spoof_generate
from wm_toolkit.attacks.stealing import StolenList
from wm_toolkit.watermark.errors import WmError
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.greenlist import GreenListConfig

ALPHA = 1e-3


@pytest.fixture(scope="module")
def unigram(tokenizer):
    from wm_toolkit.watermark.keying.keys import Key

    cfg = GreenListConfig(scheme="unigram", gamma=0.25, delta=4.0, context_width=0, vocab_size=len(tokenizer))
    return build_scheme(cfg, Key.from_seed("scrub-spoof"))


@pytest.fixture(scope="module")
def true_list(unigram):
    return StolenList(unigram.green_token_ids().tolist(), "oracle")


PROMPTS = ["Tell me about rivers.", "Write a poem on trains.", "Explain tides."]


def test_spoof_with_the_true_list_is_flagged_and_without_it_is_not(tiny_model, tokenizer, unigram, true_list):
    # A perfect stolen list with the owner's delta reproduces the watermark exactly in law.
    gens = spoof_generate(tiny_model, tokenizer, PROMPTS, true_list, delta=4.0, max_new_tokens=30, seed=1)
    p = [unigram.detect(g.token_ids).p_value for g in gens]
    assert flagged_rate(p, ALPHA) == 1.0
    plain = generate(tiny_model, tokenizer, PROMPTS, max_new_tokens=30, seed=1)
    assert flagged_rate([unigram.detect(g.token_ids).p_value for g in plain], ALPHA) == 0.0


def test_scrub_with_the_true_list_removes_the_watermark(tiny_model, tokenizer, unigram, true_list):
    gens = generate(tiny_model, tokenizer, PROMPTS[:2], scheme=unigram, max_new_tokens=30, seed=2)
    assert all(unigram.detect(g.token_ids).p_value < ALPHA for g in gens)
    prefix = [tokenizer.bos_token_id or tokenizer.eos_token_id]
    p_after = []
    for g in gens:
        res = scrub_ids(tiny_model, g.token_ids, true_list, prefix, top_k=20, max_edit_rate=1.0)
        assert len(res.edited_ids) == len(g.token_ids)
        assert res.believed_green_after == 0 < res.believed_green_before  # every green token replaced
        assert res.edits == res.believed_green_before
        assert np.isfinite(res.ppl_before) and np.isfinite(res.ppl_after)
        p_after.append(unigram.detect(res.edited_ids).p_value)
    assert success_rate(p_after, ALPHA) == 1.0


def test_edit_budget_and_beam(tiny_model, tokenizer, unigram, true_list):
    g = generate(tiny_model, tokenizer, PROMPTS[:1], scheme=unigram, max_new_tokens=25, seed=3)[0]
    prefix = [tokenizer.eos_token_id]
    capped = scrub_ids(tiny_model, g.token_ids, true_list, prefix, max_edit_rate=0.1)
    assert capped.edits == int(0.1 * len(g.token_ids))
    beam = scrub_ids(tiny_model, g.token_ids, true_list, prefix, beam=3, top_k=5, max_edit_rate=1.0)
    assert beam.believed_green_after == 0
    emb = scrub_ids(tiny_model, g.token_ids, true_list, prefix, candidates="embedding", top_k=30)
    assert emb.believed_green_after < emb.believed_green_before
    # the beam's reported perplexity is the perplexity of the text it returns
    assert perplexity(tiny_model, beam.edited_ids, prefix) == pytest.approx(beam.ppl_after, rel=1e-4)


def test_stolen_list_processor_biases_exactly_the_stolen_ids():
    proc = StolenListLogitsProcessor(StolenList([1, 3], "vanilla"), delta=2.5)
    out = proc(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 5))
    assert out.tolist() == [[0, 2.5, 0, 2.5, 0]] * 2
    pairs = StolenList([], "oracle", context_width=1, green_pairs=[(4, 0), (2, 1)])
    out = StolenListLogitsProcessor(pairs, 1.0)(torch.tensor([[9, 4], [9, 2]]), torch.zeros(2, 3))
    assert out.tolist() == [[1, 0, 0], [0, 1, 0]]


def test_bad_scrub_and_spoof_parameters_are_clear_errors(tiny_model):
    sl = StolenList([1], "vanilla")
    with pytest.raises(WmError, match="empty"):
        StolenListLogitsProcessor(StolenList([], "vanilla"))
    with pytest.raises(WmError, match="delta"):
        StolenListLogitsProcessor(sl, -1)
    for kwargs, msg in (
        (dict(candidates="thesaurus"), "candidate source"),
        (dict(max_edit_rate=2), "budget"),
    ):
        with pytest.raises(WmError, match=msg):
            scrub_ids(tiny_model, [1, 2], sl, [0], **kwargs)
    with pytest.raises(WmError, match="prefix"):
        scrub_ids(tiny_model, [1, 2], sl, [])
    assert count_believed_green([1, 2, 1], sl) == 2


def test_planned_scrub_edits_only_what_the_estimate_needs(tiny_model, tokenizer, unigram, true_list):
    from wm_toolkit.attacks.scrub import estimated_z, plan_edits

    gens = generate(tiny_model, tokenizer, PROMPTS[:2], scheme=unigram, max_new_tokens=30, seed=4)
    prefix = [tokenizer.eos_token_id]
    for g in gens:
        full = scrub_ids(tiny_model, g.token_ids, true_list, prefix, top_k=20, max_edit_rate=1.0)
        plan = plan_edits(
            tiny_model, g.token_ids, true_list, prefix, target_z=0.0, top_k=20, max_edit_rate=1.0
        )
        planned = scrub_ids(
            tiny_model, g.token_ids, true_list, prefix, top_k=20, max_edit_rate=1.0, target_z=0.0, penalty=1.0
        )
        assert planned.edits == len(plan) <= full.edits
        # the attacker's own estimate of what is left: gamma + (1 - gamma) x boost per distinct token
        left = {t: 0.25 + 0.75 * true_list.is_green(t) for t in planned.edited_ids}
        assert estimated_z(list(left.values()), 0.25) <= 0.5
        assert unigram.detect(planned.edited_ids).p_value > ALPHA
    assert estimated_z([], 0.25) == 0.0


def test_word_filter_edits_whole_words_into_whole_words(tokenizer):
    from wm_toolkit.attacks.scrub import WordFilter

    wf = WordFilter(tokenizer)
    ids = tokenizer(" The river flows past Nikolaus", add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([t]) for t in ids]
    assert pieces[:4] == [" The", " river", " flows", " past"] and len(ids) > 5  # " Nik" + "olaus"...
    assert wf.editable(ids, 1) and wf.editable(ids, 3)
    assert not wf.editable(ids, 4)  # " Nik" is continued by "olaus": editing it leaves a fragment
    stream = tokenizer(" stream", add_special_tokens=False)["input_ids"][0]
    capital = tokenizer(" Stream", add_special_tokens=False)["input_ids"][0]
    comma = tokenizer(",", add_special_tokens=False)["input_ids"][0]
    assert wf.allows(ids[1], stream) and not wf.allows(ids[1], capital) and not wf.allows(ids[1], comma)


def test_eos_ban_holds_the_end_until_the_estimate_reaches_the_threshold():
    from wm_toolkit.attacks.spoof import EstimatedZEosBan

    sl = StolenList([5, 6, 7, 8, 9, 10, 11, 12], "vanilla", gamma=0.25)  # boost 1 on these ids
    prompt = [0, 1]  # the response starts after the first input the processor sees
    ban = EstimatedZEosBan(sl, eos_ids=[2], threshold=3.0)
    ban(torch.tensor([prompt, prompt]), torch.zeros(2, 20))
    # row 0: eight distinct believed-green tokens; row 1: one green token repeated eight times,
    # which the detector (and so the estimate) counts once
    resp = torch.tensor([prompt + list(range(5, 13)), prompt + [5] * 8])
    out = ban(resp, torch.zeros(2, 20))
    z_green = (8 - 0.25 * 8) / (0.25 * 0.75 * 8) ** 0.5  # 4.9: every item green
    assert ban.estimate(0) == pytest.approx(z_green)
    assert ban.estimate(1) == pytest.approx((1 - 0.25) / (0.25 * 0.75) ** 0.5)  # 1.7
    assert out[0, 2] == 0 and out[1, 2] == -torch.inf  # only the low estimate may not end
    assert (out[:, [0, 1, 3]] == 0).all()  # nothing else is touched
    # believed-red tokens lower the estimate: the ban returns
    out = ban(torch.cat([resp, torch.tensor([list(range(13, 29))] * 2)], 1), torch.zeros(2, 40))
    assert ban.estimate(0) == pytest.approx((8 + 0.25 * 16 - 0.25 * 24) / (0.25 * 0.75 * 24) ** 0.5)  # 2.8
    assert out[0, 2] == -torch.inf


def test_eos_ban_counts_context_token_items_for_h1():
    from wm_toolkit.attacks.spoof import EstimatedZEosBan

    pairs = StolenList([], "oracle", context_width=1, green_pairs=[(4, 5), (5, 4)], gamma=0.25)
    ban = EstimatedZEosBan(pairs, eos_ids=[2], threshold=1.0)
    ban(torch.tensor([[0]]), torch.zeros(1, 8))
    ban(torch.tensor([[0, 4, 5, 4, 5, 4]]), torch.zeros(1, 8))
    # items (4,5) and (5,4), each green: the repeats add nothing; the first token has no context
    assert ban.estimate(0) == pytest.approx((2 - 0.5) / (0.25 * 0.75 * 2) ** 0.5)
    with pytest.raises(WmError, match="threshold"):
        EstimatedZEosBan(pairs, [2], threshold=float("nan"))


def test_spoof_with_the_eos_ban_writes_on_until_its_estimate_is_high(tiny_model, tokenizer, true_list):
    # the true list, a strong bias: a short answer is only allowed once it looks watermarked
    gens = spoof_generate(
        tiny_model, tokenizer, PROMPTS[:2], true_list, delta=4.0, max_new_tokens=40, seed=1, eos_ban_z=4.0
    )
    for g in gens:
        ids = list(g.token_ids)
        probs = {t: 0.25 + 0.75 * true_list.is_green(t) for t in ids}
        from wm_toolkit.attacks.scrub import estimated_z

        assert len(ids) == 40 or estimated_z(list(probs.values()), 0.25) >= 4.0


def test_text_estimated_z_counts_each_distinct_item_once(tokenizer, true_list):
    from wm_toolkit.attacks.scrub import estimated_z, text_estimated_z

    green = true_list.green_token_ids[:2]
    red = next(t for t in range(1000) if not true_list.is_green(t))
    ids = [green[0], green[0], green[1], red, red]  # 3 distinct tokens: 2 believed green, 1 not
    assert text_estimated_z(ids, true_list, gamma=0.25) == pytest.approx(estimated_z([1.0, 1.0, 0.25], 0.25))


def test_rewrite_scrub_keeps_the_lowest_estimate_within_the_perplexity_budget(
    tiny_model, tokenizer, unigram, true_list, monkeypatch
):
    # The attacker sees only its own model's perplexity and its stolen scores: of the rewrites
    # within budget it keeps the one whose z-estimate is lowest, and the cheapest when none is.
    from wm_toolkit.attacks import scrub

    texts = ["A river flows to the sea.", "Trains run on rails."]
    settings = [(0.0, -2.0), (0.7, -2.0), (0.7, -4.0)]
    fake = {  # rewrite i of text j; perplexities below make rewrite 2 of text 0 too costly
        (0, 0): "A river flows to the sea.", (1, 0): "The stream goes down.", (2, 0): "Water moves.",
        (0, 1): "Trains run on rails.", (1, 1): "Trains run on rails.", (2, 1): "Engines roll.",
    }  # fmt: skip
    calls = []

    def fake_paraphrase(model, tok, ts, stolen, strength, temperature, **kw):
        i = settings.index((temperature, strength))
        calls.append(i)
        return [[fake[(i, j)]] for j in range(len(ts))]  # one sentence each, as units

    edited_ppl = [12.0]  # the perplexity of any text the planner edits
    ppl = {t: 10.0 for t in texts} | {
        "The stream goes down.": 15.0,
        "Water moves.": 50.0,
        "Engines roll.": 50.0,
    }
    monkeypatch.setattr(scrub, "paraphrase_scrub", fake_paraphrase)
    monkeypatch.setattr(
        "wm_toolkit.watermark.measure.evaluation.text_perplexities",
        lambda model, tok, ts, prompts, **kw: np.array([ppl.get(t, edited_ppl[0]) for t in ts]),
    )
    z = {t: scrub.text_estimated_z(tokenizer(t, add_special_tokens=False)["input_ids"], true_list)
         for t in set(fake.values())}  # fmt: skip
    out = scrub.rewrite_scrub(tiny_model, tokenizer, texts, true_list, settings=settings, max_ppl_ratio=2.0)
    assert sorted(calls) == [0, 1, 2]
    best0 = min(["A river flows to the sea.", "The stream goes down."], key=lambda t: z[t])
    assert out[0].text == best0 and out[0].within_budget and out[0].ppl_after <= 20.0
    assert out[1].text == "Trains run on rails." and out[1].rewrite in (0, 1)  # "Engines roll." costs 5x
    assert out[0].estimated_z == pytest.approx(z[best0])
    lax = scrub.rewrite_scrub(tiny_model, tokenizer, texts[:1], true_list, settings=settings, target_z=100.0)
    assert lax[0].text == "A river flows to the sea." and lax[0].edits == 0  # goal met: the most fluent
    tight = scrub.rewrite_scrub(
        tiny_model, tokenizer, texts[:1], true_list, settings=settings, max_ppl_ratio=0.5
    )
    assert not tight[0].within_budget and tight[0].ppl_after == 10.0  # none fits: the cheapest is kept
    # a goal no rewrite meets: believed-green tokens are replaced, kept while within the budget
    edited = scrub.rewrite_scrub(
        tiny_model, tokenizer, texts[:1], true_list, settings=settings, target_z=-100.0
    )
    assert edited[0].edits > 0 and edited[0].ppl_after == 12.0 and edited[0].estimated_z < out[0].estimated_z
    edited_ppl[0] = 25.0  # every edit now leaves the 2x budget: the rewrite is kept as it was
    over = scrub.rewrite_scrub(
        tiny_model, tokenizer, texts[:1], true_list, settings=settings, target_z=-100.0
    )
    assert over[0].edits == 0 and over[0].text in fake.values()
    with pytest.raises(WmError):
        scrub.rewrite_scrub(tiny_model, tokenizer, texts, true_list, max_ppl_ratio=0.0)


def test_items_copied_from_the_watermarked_original_count_at_the_copied_rate(tiny_model):
    # h = 1: a rewrite that keeps (context, token) pairs of the watermarked original the attacker
    # never scored must not look clean: each copied pair counts at least at the copied rate
    # (0.5 by default for h >= 1), and the planner edits copied pairs although none is scored.
    from wm_toolkit.attacks.scrub import (
        copied_items,
        default_copied_rate,
        estimated_z,
        plan_edits,
        text_estimated_z,
    )

    pairs = StolenList([], "vanilla", context_width=1, green_pairs=[(5, 6)], gamma=0.25)
    assert default_copied_rate(pairs) == 0.5
    assert default_copied_rate(StolenList([1], "vanilla")) == 0.0  # h = 0: the list's own score
    original, prefix = [11, 12, 13, 14, 15, 16], [1]
    copied = copied_items(original, pairs, prefix)
    assert copied == {(11, 12), (12, 13), (13, 14), (14, 15), (15, 16)}  # as the detector scores them
    rewrite = [11, 12, 13, 20, 21, 22]  # keeps (11, 12) and (12, 13); (13, 20), ... are new
    assert text_estimated_z(rewrite, pairs, prefix) == pytest.approx(estimated_z([0.25] * 5, 0.25))
    with_copies = text_estimated_z(rewrite, pairs, prefix, copied=copied)
    assert with_copies == pytest.approx(estimated_z([0.5] * 2 + [0.25] * 3, 0.25))
    assert text_estimated_z(rewrite, pairs, prefix, copied=copied, copied_rate=0.0) < with_copies
    assert plan_edits(tiny_model, rewrite, pairs, prefix, target_z=-5.0, top_k=50) == set()
    planned = plan_edits(tiny_model, rewrite, pairs, prefix, target_z=-5.0, top_k=50, max_edit_rate=1.0,
                         copied=copied)  # fmt: skip
    assert planned and planned <= {1, 2}  # only the copied pairs are worth editing
    free = dict(target_z=-5.0, top_k=50, max_edit_rate=1.0, copied=copied)
    assert plan_edits(tiny_model, rewrite, pairs, prefix, max_cost=1e9, **free) == planned
    assert plan_edits(tiny_model, rewrite, pairs, prefix, max_cost=-1.0, **free) == set()  # nothing fits


def test_h1_planner_counts_the_item_an_edit_moves_to_a_new_context(tiny_model):
    # h = 1: replacing token i also changes the context of item i + 1, so the edit removes that
    # item too (when it occurs only there). A pair the planner would not edit for its own sake
    # (believed green at gamma) can be the cheapest way to remove the copied pair after it.
    from wm_toolkit.attacks.scrub import _following_items, _unit_probs, _units, plan_edits

    pairs = StolenList([], "vanilla", context_width=1, green_pairs=[(5, 6)], gamma=0.25)
    rewrite, prefix = [11, 12, 13, 20, 21, 22], [1]
    copied = {(12, 13)}  # only the item at position 2 was copied from the original
    units = _units(rewrite, prefix, 1)
    prob = _unit_probs(units, dict.fromkeys(units, 0.0), 0.25, copied, 0.5)
    moved = _following_items(rewrite, prefix + rewrite, 1, 1, 40, units, prob, pairs, 0.25, copied, 0.5)
    assert moved == {(12, 13): 0.25}  # (12, 13) becomes (40, 13), an unseen pair
    assert _following_items(rewrite, prefix + rewrite, 1, 2, 40, units, prob, pairs, 0.25, copied, 0.5) == {}
    planned = plan_edits(tiny_model, rewrite, pairs, prefix, target_z=-5.0, top_k=50, max_edit_rate=1.0,
                         copied=copied, copied_rate=0.5)  # fmt: skip
    assert len(planned) == 1 and planned <= {1, 2}  # one edit removes the copied pair; a second adds nothing


def test_rewrite_scrub_edits_the_original_when_no_rewrite_fits_the_budget(
    tiny_model, tokenizer, true_list, monkeypatch
):
    # A paraphrase may cost more than the whole budget; the watermarked original itself is then
    # the candidate to edit (rewrite == ORIGINAL), kept only if the edited text stays within it.
    from wm_toolkit.attacks import scrub

    text = "A river flows to the sea and the sea is wide."
    monkeypatch.setattr(scrub, "paraphrase_scrub", lambda m, t, ts, s, **kw: [["Water moves."]] * len(ts))
    edited_ppl = [12.0]
    monkeypatch.setattr(
        "wm_toolkit.watermark.measure.evaluation.text_perplexities",
        lambda model, tok, ts, prompts, **kw: np.array(
            [10.0 if t == text else 50.0 if t == "Water moves." else edited_ppl[0] for t in ts]
        ),
    )
    settings = [(0.0, -2.0)]
    out = scrub.rewrite_scrub(tiny_model, tokenizer, [text], true_list, settings=settings, target_z=-100.0)
    assert out[0].rewrite == scrub.ORIGINAL and out[0].edits > 0 and out[0].text != text
    assert out[0].within_budget and out[0].ppl_after == 12.0
    edited_ppl[0] = 25.0  # no edit fits either: the cheapest rewrite is reported, over budget
    over = scrub.rewrite_scrub(tiny_model, tokenizer, [text], true_list, settings=settings, target_z=-100.0)
    assert over[0].text == "Water moves." and not over[0].within_budget and over[0].edits == 0


def test_lookahead_prices_each_edit_on_the_whole_text(tiny_model):
    # A replacement can fit its own slot and clash with the words after it; with a look-ahead the
    # planner prices each candidate edit by the log-likelihood the whole text loses, and the
    # edits it plans fit the budget in those terms.
    from wm_toolkit.attacks.scrub import _edit_costs, _plan

    full = [1, 11, 12, 13, 14, 15, 16, 17, 18]
    off = 1

    @torch.inference_mode()
    def loglik(ids):
        logp = torch.log_softmax(tiny_model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        return sum(float(logp[k - 1, ids[k]]) for k in range(off, len(ids)))

    edits = [(3, 40), (5, 41), (8, 42)]
    want = [max(loglik(full) - loglik(full[:i] + [c] + full[i + 1 :]), 0.0) for i, c in edits]
    assert _edit_costs(tiny_model, full, edits, off) == pytest.approx(want, abs=1e-4)

    pairs = StolenList([], "vanilla", context_width=1, green_pairs=[(5, 6)], gamma=0.25)
    ids = full[off:]
    copied = set(zip(ids[:-1], ids[1:], strict=True))  # every item copied: every edit pays
    free = dict(target_z=-5.0, top_k=50, max_edit_rate=1.0, copied=copied, copied_rate=0.5)
    everything = _plan(tiny_model, ids, pairs, full[:off], lookahead=3, **free)
    assert 0 < len(everything) <= 3  # only the 3 edits priced on the whole text are planned
    priced = _edit_costs(tiny_model, full, [(off + i, c) for i, c in everything.items()], off)
    costs = dict(zip(everything, priced, strict=True))
    budget = min(costs.values()) + 1e-6
    one = _plan(tiny_model, ids, pairs, full[:off], lookahead=3, max_cost=budget, **free)
    assert len(one) >= 1 and sum(costs.get(i, 0.0) for i in one) <= budget + 1e-6


def _option(excess, nll, tokens):
    from wm_toolkit.attacks.scrub import _Option

    return _Option([f"s{k}" for k in range(len(excess))], np.array(excess), np.array(nll), np.array(tokens))


def test_sentence_mix_takes_the_least_believed_green_choice_within_the_budget():
    # Per sentence one version; the sum over sentences of (nll - limit x tokens) must stay <= 0.
    # On random small instances the mixer's choice is feasible and exactly as good as brute force.
    import itertools

    from wm_toolkit.attacks.scrub import _mix_choice

    rng = np.random.default_rng(3)
    for _ in range(200):
        n_opt, n_sent = int(rng.integers(2, 5)), int(rng.integers(1, 6))
        tokens = rng.integers(5, 30, size=n_sent)
        options = [
            _option(rng.uniform(0, 5, n_sent), tokens * rng.uniform(1.0, 3.0, n_sent), tokens)
            for _ in range(n_opt)
        ]
        limit = float(rng.uniform(1.2, 2.6))
        cost = np.stack([o.nll - limit * o.tokens for o in options])
        excess = np.stack([o.excess for o in options])
        cols = np.arange(n_sent)
        pick = _mix_choice(options, limit)
        feasible = [
            excess[list(c), cols].sum()
            for c in itertools.product(range(n_opt), repeat=n_sent)
            if cost[list(c), cols].sum() <= 0
        ]
        if not feasible:  # nothing fits: the cheapest choice, which the caller's real check turns down
            assert list(pick) == list(cost.argmin(0))
            continue
        assert cost[pick, cols].sum() <= 1e-9
        assert excess[pick, cols].sum() == pytest.approx(min(feasible))  # exact


def test_mix_sentences_takes_each_sentence_from_the_version_that_left_it_cleanest(
    tiny_model, tokenizer, true_list
):
    # Two rewrites, each clean in one sentence and green-heavy in the other: the mix of the clean
    # halves estimates lower than either whole rewrite, and nothing fits a budget below them all.
    from wm_toolkit.attacks.scrub import mix_sentences, text_estimated_z

    green = [t for t in true_list.green_token_ids if tokenizer.decode([t]).strip().isalpha()][:40]
    red = [
        t for t in range(3, 2000) if not true_list.is_green(t) and tokenizer.decode([t]).strip().isalpha()
    ][:40]
    word = lambda ts: " ".join(tokenizer.decode([t]).strip() for t in ts)  # noqa: E731
    green_a, red_a, green_b, red_b = (
        word(green[:20]) + ".",
        word(red[:20]) + ".",
        word(green[20:]) + ".",
        word(red[20:]) + ".",
    )
    a, b = [red_a, green_b], [green_a, red_b]
    z = lambda t: text_estimated_z(tokenizer(t, add_special_tokens=False)["input_ids"], true_list)  # noqa: E731
    mixed = mix_sentences(tiny_model, tokenizer, true_list, [a, b], "Write.", budget=1e12)
    assert mixed is not None
    text, ppl = mixed
    assert text == red_a + " " + red_b and np.isfinite(ppl)
    assert z(text) < min(z(" ".join(a)), z(" ".join(b)))
    assert mix_sentences(tiny_model, tokenizer, true_list, [a, b], "Write.", budget=1.0) is None
    assert (
        mix_sentences(tiny_model, tokenizer, true_list, [a, b[:1]], "Write.", budget=1e12) is None
    )  # misaligned


def test_rewrite_scrub_keeps_a_sentence_mix_that_beats_every_whole_rewrite(
    tiny_model, tokenizer, true_list, monkeypatch
):
    # Each rewrite cleans one sentence and copies the other: the mix of the clean sentences is a
    # candidate of its own (rewrite == MIXED) and wins on the estimate; --no-mix never builds it.
    from wm_toolkit.attacks import scrub

    alpha = lambda t: tokenizer.decode([t]).strip().isalpha()  # noqa: E731
    green = [t for t in true_list.green_token_ids if alpha(t)][:40]
    red = [t for t in range(3, 2000) if not true_list.is_green(t) and alpha(t)][:40]
    words = lambda ts: "So " + " ".join(tokenizer.decode([t]).strip() for t in ts) + "."  # noqa: E731
    original = [words(green[:20]), words(green[20:])]  # two sentences, as `split_sentences` finds them
    a, b = [words(red[:20]), words(green[20:])], [words(green[:20]), words(red[20:])]
    text = " ".join(original)
    settings = [(0.0, -2.0), (0.7, -2.0)]
    monkeypatch.setattr(
        scrub, "paraphrase_scrub", lambda m, t, ts, s, temperature=0.0, **kw: [a if temperature == 0.0 else b]
    )
    monkeypatch.setattr(
        "wm_toolkit.watermark.measure.evaluation.text_perplexities",
        lambda model, tok, ts, prompts, **kw: np.array([10.0 if t == text else 15.0 for t in ts]),
    )
    kw = dict(settings=settings, max_ppl_ratio=1e6)
    mixed = scrub.rewrite_scrub(tiny_model, tokenizer, [text], true_list, **kw)[0]
    assert mixed.rewrite == scrub.MIXED and mixed.text == " ".join([a[0], b[1]])
    whole = scrub.rewrite_scrub(tiny_model, tokenizer, [text], true_list, mix=False, **kw)[0]
    assert whole.rewrite in (0, 1) and mixed.estimated_z < whole.estimated_z


def test_rewrite_settings_start_with_the_authors_and_stay_distinct():
    from wm_toolkit.attacks.scrub import rewrite_settings

    eight = rewrite_settings(-2.0, 8)
    assert eight[:4] == rewrite_settings(-2.0) == ((0.0, -2.0), (0.0, -4.0), (0.7, -2.0), (0.7, -4.0))
    assert len(set(eight)) == 8 and all(s < 0 for _, s in eight)

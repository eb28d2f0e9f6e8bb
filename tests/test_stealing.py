"""Green-list stealing (Zhang et al. 2024) on the synthetic Zipf LM, whose green list is known.

Every corpus is drawn with a fixed seed, so each test is deterministic; the thresholds below
were checked on seeds 0-5 with margin (see benchmarks/results/stealing.md for the sweep).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wm_toolkit.attacks.stealing import (
    StealingConfigError,
    StealingInputError,
    StolenList,
    build_corpus,
    frequency_baseline,
    lexical_token_weights,
    score_list,
    steal,
)
from wm_toolkit.attacks.stealing_mip import get_solver, thresholds
from wm_toolkit.attacks.synthetic import SyntheticLM
from wm_toolkit.watermark.errors import WmError

V = 500


def detector_labelled(lm: SyntheticLM, n: int, length: int, seed: int, z: float = 4.0):
    """Texts from both models, relabelled by the detector (what Vanilla/Pro attackers hold)."""
    texts = lm.sample(n, length, True, seed) + lm.sample(n, length, False, seed + 1)
    flagged = np.array([lm.z(t) > z for t in texts])
    return [t for t, f in zip(texts, flagged, strict=True) if f], [
        t for t, f in zip(texts, flagged, strict=True) if not f
    ]


def test_oracle_without_noise_recovers_exactly_the_planted_list():
    # Small vocabulary and many texts: every token occurs, and the exact counts determine a
    # unique list, so the minimum-weight list consistent with them must be the planted one.
    lm = SyntheticLM(vocab_size=200, gamma=0.25, delta=2.0, zipf_exponent=0.8, seed=3)
    wm, nat = lm.sample(150, 80, True, 1), lm.sample(150, 80, False, 2)
    assert len(np.unique(np.concatenate(wm + nat))) == 200  # the whole planted list is observable
    counts = [lm.green_count(t) for t in wm + nat]
    stolen = steal(
        wm, nat, "oracle", gamma=lm.green_fraction, vocab_size=200, exact_counts=counts, time_limit=20
    )
    assert stolen.green_token_ids == lm.green.tolist()
    assert stolen.solver["status"] == "Optimal Solution Found"
    assert stolen.solver["fractional"] == 0


def test_oracle_with_repeats_counted_is_exact_too():
    lm = SyntheticLM(vocab_size=120, gamma=0.5, delta=2.0, zipf_exponent=0.7, seed=4)
    wm, nat = lm.sample(80, 60, True, 5), lm.sample(80, 60, False, 6)
    counts = [lm.green_count(t, count_repeats=True) for t in wm + nat]
    stolen = steal(wm, nat, "oracle", exact_counts=counts, count_repeats=True, time_limit=20)
    observed = np.unique(np.concatenate(wm + nat))
    assert stolen.green_token_ids == sorted(set(lm.green.tolist()) & set(observed.tolist()))


@pytest.mark.parametrize("threat", ["vanilla", "pro"])
def test_detector_labelled_attack_recovers_frequent_green_tokens_precisely(threat):
    lm = SyntheticLM(vocab_size=V, gamma=0.25, delta=2.0, seed=0)
    wm, nat = detector_labelled(lm, 300, 100, seed=11)
    stolen = steal(wm, nat, threat, gamma=lm.green_fraction, vocab_size=V, time_limit=20)
    s = score_list(stolen.green_token_ids, lm.green)
    assert s.precision >= 0.9  # base rate of a random guess is 0.25
    frequent = np.argsort(-lm.natural_probs)[:50]
    frequent_green = [t for t in frequent if lm.is_green(t)]
    found = len(set(stolen.green_token_ids) & set(frequent_green)) / len(frequent_green)
    assert found >= 0.9
    assert len(stolen) <= lm.green_fraction * V  # the list-size constraint holds after rounding


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_program_is_more_precise_than_frequency_baseline_on_small_corpora(seed):
    lm = SyntheticLM(vocab_size=V, gamma=0.25, delta=2.0, seed=seed)
    wm_raw, nat_raw = lm.sample(40, 100, True, 10 + seed), lm.sample(40, 100, False, 20 + seed)
    flagged = [lm.z(t) > 4 for t in wm_raw + nat_raw]
    wm = [t for t, f in zip(wm_raw + nat_raw, flagged, strict=True) if f]
    nat = [t for t, f in zip(wm_raw + nat_raw, flagged, strict=True) if not f]
    vanilla = steal(wm, nat, "vanilla", gamma=lm.green_fraction, vocab_size=V, time_limit=10)
    base = frequency_baseline(wm_raw, nat_raw, gamma=0.25, vocab_size=V)
    p_mip = score_list(vanilla.green_token_ids, lm.green).precision
    p_base = score_list(base.green_token_ids, lm.green).precision
    assert p_mip > p_base + 0.03
    counts = [lm.green_count(t) for t in wm_raw + nat_raw]
    oracle = steal(wm_raw, nat_raw, "oracle", gamma=lm.green_fraction, vocab_size=V, exact_counts=counts)
    assert score_list(oracle.green_token_ids, lm.green).f1 > score_list(base.green_token_ids, lm.green).f1


def test_blind_attacker_without_parameters_or_detector_is_well_above_chance():
    lm = SyntheticLM(vocab_size=V, gamma=0.25, delta=2.0, seed=1)
    wm, nat = lm.sample(60, 100, True, 3), lm.sample(60, 100, False, 4)  # noisy labels: by source
    stolen = steal(wm, nat, "blind", time_limit=3)
    s = score_list(stolen.green_token_ids, lm.green)
    assert stolen.gamma is None and stolen.threat == "blind"
    assert s.precision >= 0.8 and s.recall >= 0.4
    assert stolen.solver["stage1_objective"] is not None
    assert [st["stage"] for st in stolen.solver["stages"]] == [
        "separation",
        "separation_fixed_trust",
        "min_weight",
    ]
    # the authors' binary trusted-text indicators (CBC with a MIP start) agree closely on this size
    small_wm, small_nat = wm[:25], nat[:25]
    fixed = steal(small_wm, small_nat, "blind", time_limit=3)
    binary = steal(small_wm, small_nat, "blind", trust="binary", time_limit=3)
    assert binary.solver["stages"][0]["stage"] == "separation" and len(binary.solver["stages"]) == 2
    assert score_list(binary.green_token_ids, lm.green).precision >= 0.75
    assert score_list(fixed.green_token_ids, lm.green).precision >= 0.75


def test_binary_list_satisfies_every_vanilla_constraint():
    lm = SyntheticLM(vocab_size=300, gamma=0.25, delta=3.0, seed=2)
    wm, nat = detector_labelled(lm, 60, 80, seed=7)
    stolen = steal(wm, nat, "vanilla", gamma=lm.green_fraction, vocab_size=300, relax=False, time_limit=20)
    assert stolen.solver["relaxed"] is False and stolen.solver["fractional"] == 0
    ids = set(stolen.green_token_ids)
    for texts, is_wm in ((wm, True), (nat, False)):
        for t in texts:
            u = np.unique(t)
            g = sum(int(x) in ids for x in u)
            # floored G*(L), as the authors' count_z_score_bound
            bound = thresholds(np.array([len(u)]), lm.green_fraction, 4.0, floor=True)[0]
            assert (g >= bound - 1e-6) if is_wm else (g <= bound + 1e-6)


def test_inconsistent_labels_fall_back_to_the_elastic_program():
    lm = SyntheticLM(vocab_size=300, gamma=0.25, delta=3.0, seed=2)
    wm, nat = detector_labelled(lm, 40, 80, seed=7)
    wm = wm + [np.array([1, 2, 3])]  # G*(3) = 3.75 > 3: no list can make this text watermarked
    stolen = steal(wm, nat, "vanilla", gamma=lm.green_fraction, vocab_size=300, time_limit=10)
    assert stolen.solver["elastic"] is True and stolen.solver["slack"] > 0
    assert score_list(stolen.green_token_ids, lm.green).precision >= 0.8


def test_solver_statistics_are_reported():
    lm = SyntheticLM(vocab_size=200, seed=5)
    wm, nat = detector_labelled(lm, 30, 80, seed=1)
    st = steal(wm, nat, "pro", gamma=lm.green_fraction, vocab_size=200, time_limit=5).solver
    corpus = build_corpus(wm, nat)
    assert st["items"] == corpus.num_items and st["texts"] == len(wm) + len(nat)
    assert st["variables"] >= corpus.num_items + corpus.num_texts  # c_v and b_s (+ a_s)
    assert st["constraints"] >= 2 * corpus.num_texts
    assert st["solve_s"] > 0 and st["objective"] is not None and st["solver"] == "cbc"


def test_frequency_baseline_follows_the_papers_rule():
    # frequencies W / H: token 1 0.6 / 0.1, token 2 0.2 / 0.2, token 3 0.2 / unseen, token 4 0 / 0.7
    wm = [[1, 1, 1, 2, 3]]
    nat = [[1, 2, 2, 4, 4, 4, 4, 4, 4, 4]]
    base = frequency_baseline(wm, nat, count_repeats=True)
    assert base.green_token_ids == [1, 3]  # ratio > 1; unseen-in-H uses the smallest H frequency
    assert frequency_baseline(wm, nat, count_repeats=True, size=1).green_token_ids == [1]
    assert frequency_baseline(wm, nat, count_repeats=True, skip_ids=[3]).green_token_ids == [1]


def test_lexical_weights_follow_the_papers_word_classes():
    class Tok:
        vocab = [" the", "x", " ab", " word", "I", " Of", "\n"]

        def __len__(self):
            return len(self.vocab)

        def batch_decode(self, ids):
            return [self.vocab[i[0]] for i in ids]

    # stop word 2 (case-insensitive, space stripped), one character 5, two characters 4, else 1
    assert lexical_token_weights(Tok()).tolist() == [2.0, 5.0, 4.0, 1.0, 2.0, 2.0, 5.0]


@pytest.mark.parametrize("expensive, expected", [(1, [2]), (2, [1])])
def test_lexical_weights_decide_between_tokens_the_counts_cannot_tell_apart(expensive, expected):
    # 1 and 2 always occur together and each watermarked text has exactly one green token, so
    # the oracle's counts allow either; the minimum-weight stage must take the cheaper one.
    wm, nat = [[1, 2], [1, 2, 3]], [[3, 4]]
    token_weights = np.ones(5)
    token_weights[expensive] = 5.0
    stolen = steal(
        wm, nat, "oracle", exact_counts=[1, 1, 0], relax=False, weights="lexical",
        token_weights=token_weights, time_limit=10,
    )  # fmt: skip
    assert stolen.green_token_ids == expected


def test_lexical_weights_need_one_weight_per_token_id():
    with pytest.raises(StealingConfigError, match="lexical"):
        steal([[1, 2, 3]], [[4, 5]], "oracle", exact_counts=[1, 0], weights="lexical")
    with pytest.raises(StealingConfigError, match="wrong tokenizer"):
        steal(
            [[1, 2, 9]], [[4, 5]], "oracle", exact_counts=[1, 0], weights="lexical", token_weights=np.ones(5)
        )


def test_score_list_by_hand():
    s = score_list([1, 2, 3, 4], [2, 4, 6, 8, 10], observed=[1, 2, 3, 4, 6])
    assert (s.predicted, s.correct, s.true_size) == (4, 2, 5)
    assert s.precision == 0.5 and s.recall == 0.4 and s.f1 == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    assert s.recall_observed == pytest.approx(2 / 3)


def test_stolen_list_json_round_trip_and_context_lookup(tmp_path):
    sl = StolenList([5, 3], "pro", solver={"status": "Optimal Solution Found"}, tokenizer="smollm2-135m")
    back = StolenList.from_json(sl.to_json())
    assert back.green_token_ids == [3, 5] and back.threat == "pro" and back.tokenizer == "smollm2-135m"
    assert back.is_green(3) and not back.is_green(4)
    pairs = StolenList([], "oracle", context_width=1, green_pairs=[(7, 1), (7, 2), (8, 1)])
    sl.save(tmp_path / "s.json")
    assert StolenList.load(tmp_path / "s.json").green_token_ids == [3, 5]
    p2 = StolenList.from_dict(json.loads(pairs.to_json()))
    assert p2.is_green(2, context=[9, 7]) and not p2.is_green(2, context=[8])
    assert p2.green_after([8]) == [1] and len(p2) == 3


# ---- h >= 1: the program over (context, token) pairs ----------------------------------------------
def context_dependent_texts(key, vocab: int, n: int, length: int, seed: int, watermarked: bool):
    """A Markov chain whose green bias depends on the previous token through the real PRF."""
    from wm_toolkit.watermark.schemes.greenlist import GreenListConfig, GreenListScheme

    scheme = GreenListScheme(GreenListConfig(vocab_size=vocab, gamma=0.25, delta=3.0, context_width=1), key)
    seeds = torch.from_numpy(scheme.seeds_for(np.arange(vocab).reshape(-1, 1)))
    table = scheme.vocab_green_mask(seeds, vocab).numpy()  # table[prev, v]
    rng = np.random.default_rng(seed)
    base = 1.0 / np.arange(1, vocab + 1)
    texts = []
    for _ in range(n):
        t = [int(rng.integers(vocab))]
        for _ in range(length - 1):
            p = base * (np.exp(3.0 * table[t[-1]]) if watermarked else 1.0)
            t.append(int(rng.choice(vocab, p=p / p.sum())))
        texts.append(t)
    return scheme, table, texts


def test_pairs_program_for_h1_only_sees_observed_pairs(key):
    vocab = 40
    scheme, table, wm = context_dependent_texts(key, vocab, 60, 60, 1, True)
    _, _, nat = context_dependent_texts(key, vocab, 60, 60, 2, False)
    counts = [scheme.detect(t).green_count for t in wm + nat]
    stolen = steal(wm, nat, "oracle", exact_counts=counts, context_width=1, time_limit=20)
    true_pairs = [tuple(p) for p in np.argwhere(table)]
    corpus = build_corpus(wm, nat, context_width=1)
    s = score_list(stolen.green_pairs, true_pairs, observed=[tuple(r) for r in corpus.items])
    assert stolen.green_token_ids == [] and stolen.context_width == 1
    assert s.precision >= 0.75  # 3x the base rate: exact counts pin many observed pairs down
    assert len(corpus.items) < 0.7 * vocab * vocab  # a third of the pairs never occur at all...
    assert s.recall < 0.75  # ...so they stay unknown: the list is not stolen whole
    assert all(stolen.is_green(p[1], context=[p[0]]) for p in stolen.green_pairs)


# ---- bad input ---------------------------------------------------------------------------------------
def one_line(exc: Exception) -> bool:
    return isinstance(exc, WmError) and "\n" not in str(exc) and len(str(exc)) > 10


def test_no_watermarked_texts_is_a_clear_error():
    with pytest.raises(StealingInputError, match="no watermarked texts") as e:
        steal([], [[1, 2, 3]], "vanilla", gamma=0.25)
    assert one_line(e.value)


def test_empty_texts_are_a_clear_error():
    with pytest.raises(StealingInputError, match="every watermarked text is empty") as e:
        steal([[], []], [[1, 2, 3]], "vanilla", gamma=0.25)
    assert one_line(e.value)
    with pytest.raises(StealingInputError, match="no natural texts"):
        frequency_baseline([[1, 2]], [])


@pytest.mark.parametrize("gamma", [0.0, 1.0, -0.2, 1.5])
def test_gamma_outside_the_unit_interval_is_a_clear_error(gamma):
    with pytest.raises(StealingConfigError, match=r"gamma must be in \(0, 1\)") as e:
        steal([[1, 2]], [[3, 4]], "vanilla", gamma=gamma)
    assert one_line(e.value)


def test_other_bad_parameters_are_clear_errors():
    wm, nat = [[1, 2, 3]], [[3, 4, 5]]
    for kwargs, msg in (
        (dict(threat="sneaky", gamma=0.25), "unknown threat model"),
        (dict(threat="vanilla"), "needs --gamma"),
        (dict(threat="oracle", gamma=0.25), "exact green count"),
        (dict(threat="vanilla", gamma=0.25, solver="nosuchsolver"), "not a PuLP solver"),
        (dict(threat="vanilla", gamma=0.25, time_limit=0), "time limit"),
        (dict(threat="oracle", exact_counts=[1]), "exact green counts for 2 texts"),
    ):
        with pytest.raises(StealingConfigError, match=msg) as e:
            steal(wm, nat, **kwargs)
        assert one_line(e.value)


def test_solver_lookup_by_name():
    assert get_solver("cbc", 5).name == "PULP_CBC_CMD"
    assert get_solver("PULP_CBC_CMD", 5).available()

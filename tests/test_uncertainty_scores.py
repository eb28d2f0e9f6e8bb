"""SAR formulas, baselines, clustering and AUROC on hand-computed toy values (papers.md §5)."""

import math

import numpy as np
import pytest

from wm_toolkit.watermark.measure.metrics import auroc, roc_curve
from wm_toolkit.watermark.uncertainty import scores
from wm_toolkit.watermark.uncertainty.estimate import parse_methods


def test_token_relevance_is_one_minus_similarity_normalised():
    assert scores.token_relevance([0.2, 0.6, 1.0]) == pytest.approx([2 / 3, 1 / 3, 0.0])


def test_token_relevance_clips_similarity_to_unit_interval():
    # g = -0.5 counts as 0 (relevance 1), g = 1.2 as 1 (relevance 0)
    assert scores.token_relevance([-0.5, 1.2, 0.5]) == pytest.approx([1 / 1.5, 0.0, 0.5 / 1.5])


def test_token_relevance_falls_back_to_uniform_when_no_token_matters():
    assert scores.token_relevance([1.0, 1.0, 1.0, 1.0]) == pytest.approx([0.25] * 4)


def test_token_sar_is_relevance_weighted_nll():
    rel = scores.token_relevance([0.2, 0.6, 1.0])  # 2/3, 1/3, 0
    assert scores.token_sar([3.0, 6.0, 100.0], rel) == pytest.approx(2.0 + 2.0 + 0.0)
    with pytest.raises(ValueError):
        scores.token_sar([1.0], [0.5, 0.5])


def test_sent_sar_matches_hand_computation():
    # p1 = e^-1 (NLLs 0.4 + 0.6), p2 = e^-2, g = 0.5 both ways, t = 0.001
    sim = np.array([[1.0, 0.5], [0.5, 1.0]])
    e1 = -math.log(math.exp(-1) + 0.5 * math.exp(-2) / 0.001)  # = -log(68.0355) = -4.2200
    e2 = -math.log(math.exp(-2) + 0.5 * math.exp(-1) / 0.001)  # = -log(184.075) = -5.2153
    got = scores.sent_sar([[0.4, 0.6], [2.0]], sim, t=0.001)
    assert got == pytest.approx((e1 + e2) / 2) and got == pytest.approx(-4.71768, abs=1e-4)


def test_sent_sar_uses_row_j_of_the_similarity_matrix():
    sim = np.array([[1.0, 0.2], [0.8, 1.0]])  # g_12 = 0.2, g_21 = 0.8
    t = 0.5
    e1 = -math.log(math.exp(-1) + 0.2 * math.exp(-3) / t)
    e2 = -math.log(math.exp(-3) + 0.8 * math.exp(-1) / t)
    assert scores.sent_sar([[1.0], [3.0]], sim, t=t) == pytest.approx((e1 + e2) / 2)


def test_sent_sar_without_similar_answers_is_predictive_entropy():
    nlls = [[1.0, 2.0], [0.5], [4.0]]
    assert scores.sent_sar(nlls, np.eye(3)) == pytest.approx(scores.predictive_entropy(nlls))


def test_sent_sar_survives_probabilities_that_underflow():
    got = scores.sent_sar([[800.0], [900.0]], np.array([[1.0, 1.0], [1.0, 1.0]]), t=1.0)
    # log-space: -log(e^-800 + e^-900) ~ 800 and -log(e^-900 + e^-800) ~ 800
    assert got == pytest.approx(800.0)


def test_sar_is_sent_sar_with_token_sar_probabilities():
    sim = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert scores.sar([1.0, 2.0], sim, t=0.001) == pytest.approx(-4.71768, abs=1e-4)
    assert scores.sar([1.0, 2.0], sim) == pytest.approx(scores.sent_sar([[1.0], [2.0]], sim))


def test_predictive_entropy_and_length_normalised():
    nlls = [[1.0, 2.0], [3.0]]
    assert scores.predictive_entropy(nlls) == pytest.approx(3.0)  # mean(3, 3)
    assert scores.ln_predictive_entropy(nlls) == pytest.approx(2.25)  # mean(1.5, 3)


def test_semantic_entropy_hand_value():
    # mean NLLs 1, 1, 2; clusters {0, 1}, {2}: -(log(2e^-1) + log(e^-2)) / 2 = (3 - ln 2) / 2
    got = scores.semantic_entropy([[1.0], [0.5, 1.5], [2.0]], [0, 0, 1])
    assert got == pytest.approx((3 - math.log(2)) / 2)


def test_semantic_entropy_is_lower_when_answers_agree():
    nlls = [[1.0], [1.0], [1.0]]
    assert scores.semantic_entropy(nlls, [0, 0, 0]) < scores.semantic_entropy(nlls, [0, 1, 2])


def test_clusters_from_a_toy_similarity_matrix():
    sim = np.array(
        [
            [1.0, 0.96, 0.50, 0.97],
            [0.96, 1.0, 0.50, 0.20],
            [0.50, 0.50, 1.0, 0.50],
            [0.97, 0.20, 0.50, 1.0],
        ]
    )
    # 3 matches the representative 0 (0.97) though not member 1: it still joins cluster 0
    assert scores.clusters_from_similarity(sim, 0.95) == [0, 0, 1, 0]
    assert scores.clusters_from_similarity(sim, 0.99) == [0, 1, 2, 3]


def test_clusters_need_similarity_in_both_directions():
    sim = np.array([[1.0, 0.99], [0.5, 1.0]])
    assert scores.clusters_from_similarity(sim, 0.9) == [0, 1]


def test_nli_clusters_split_on_contradiction_either_way():
    contra = np.zeros((3, 3), dtype=bool)
    contra[2, 0] = True  # only one direction contradicts: still split (the SAR code's rule)
    assert scores.clusters_from_nli(contra) == [0, 0, 1]
    ent = np.eye(3, dtype=bool)
    ent[0, 1] = True  # entailment one way only: strict rule keeps them apart
    assert scores.clusters_from_nli(contra, ent) == [0, 1, 2]


def test_lexical_uncertainty_is_minus_mean_pairwise_similarity():
    m = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, 0.8], [0.2, 0.8, 1.0]])
    assert scores.lexical_uncertainty(m) == pytest.approx(-0.5)
    assert scores.lexical_uncertainty(np.ones((4, 4))) == pytest.approx(-1.0)  # identical: most certain
    with pytest.raises(ValueError):
        scores.lexical_uncertainty(np.ones((1, 1)))


def test_auroc_hand_cases():
    # positive-negative pairs: 0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1 -> 3 of 4
    assert auroc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    assert auroc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert auroc([1, 1, 0], [0.3, 0.7, 0.3]) == pytest.approx(0.75)  # (0.5 + 1) / 2
    assert auroc([1, 1, 0, 0], [1, 2, 3, 4]) == 0.0
    assert math.isnan(auroc([1, 1], [0.1, 0.2]))


def test_auroc_equals_brute_force_pair_count_and_roc_area():
    rng = np.random.default_rng(7)
    for _ in range(20):
        y = rng.integers(0, 2, 30)
        if y.min() == y.max():
            continue
        s = rng.integers(0, 5, 30).astype(float)  # many ties
        pos, neg = s[y == 1], s[y == 0]
        brute = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
        assert auroc(y, s) == pytest.approx(brute)
        fpr, tpr, _ = roc_curve(y, s)
        assert np.trapezoid(tpr, fpr) == pytest.approx(brute)
        assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1


def test_auroc_rejects_bad_input():
    with pytest.raises(ValueError):
        auroc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        auroc([0, 1], [0.1])
    with pytest.raises(ValueError):
        auroc([0, 1], [0.1, float("nan")])


def test_parse_methods():
    from wm_toolkit.watermark.errors import ConfigError

    assert parse_methods("pe, SAR") == ("sar", "pe")
    assert len(parse_methods(None)) == 7
    with pytest.raises(ConfigError, match="unknown method"):
        parse_methods("sar,bogus")

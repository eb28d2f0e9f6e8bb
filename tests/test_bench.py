"""The bench's statistics on hand-computed examples."""

import math

from wm_toolkit.watermark.measure.bench_stats import (
    aggregate_detected,
    bleu,
    distinct_n,
    self_bleu,
    size_summary,
    size_tokens,
)


def test_size_is_first_prefix_at_or_below_alpha() -> None:
    assert size_tokens([0.5, 0.1, 0.02, 0.001]) == 3
    assert size_tokens([0.5, 0.3]) is None


def test_size_summary_counts_never_reached() -> None:
    s = size_summary([10, 20, 30, None])
    assert s["median"] == 25.0 and s["never_fraction"] == 0.25
    assert s["low"] is not None and s["low"] <= 25.0


def test_distinct_n() -> None:
    assert distinct_n(["a b a b"], 2) == 2 / 3
    assert distinct_n(["a"], 2) == 0.0


def test_bleu_identical_is_one_and_self_bleu_of_copies() -> None:
    w = ["the", "cat", "sat", "on", "the", "mat"]
    assert math.isclose(bleu(w, [w]), 1.0)
    assert math.isclose(self_bleu(["the cat sat on the mat"] * 3), 1.0)


def test_aggregate_rule_ignores_low_quality_attacks() -> None:
    det = {"none": [True, True], "a": [True, False], "b": [False, False]}
    assert aggregate_detected(det, {"none": 1.0, "a": 0.9, "b": 0.5}) == 0.5
    assert aggregate_detected(det, {"none": 0.1}) is None


def test_classifier_auroc_chance_and_separable() -> None:
    import numpy as np

    from wm_toolkit.watermark.measure.bench_stats import classifier_auroc

    rng = np.random.default_rng(1)
    same = classifier_auroc(rng.normal(size=(60, 4)), rng.normal(size=(60, 4)), resamples=200)
    assert 0.3 < same["auroc"] < 0.7  # false failure well under 1% at n = 60 + 60
    far = classifier_auroc(rng.normal(size=(30, 4)) + 5, rng.normal(size=(30, 4)), resamples=200)
    assert far["auroc"] > 0.99

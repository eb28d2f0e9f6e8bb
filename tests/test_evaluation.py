"""Evaluation metrics against hand computations, batched perplexity, and the cached robustness grid."""

import json
import math

import numpy as np
import pytest
import torch

import wm_toolkit.watermark.modeling.generation as generation
from wm_toolkit.attacks.grid import GridSetup, run_grid
from wm_toolkit.attacks.registry import parse_attacks
from wm_toolkit.watermark.config import default_config
from wm_toolkit.watermark.measure.evaluation import (
    GenerationSettings,
    auroc_from_p_values,
    cached_generations,
    detection_summary,
    empirical_threshold,
    generation_tag,
    perplexities,
    resolution_warnings,
    roc_from_p_values,
    tpr_at_fpr,
    tpr_at_p,
)
from wm_toolkit.watermark.schemes import build_scheme

NULL = [0.9, 0.5, 0.1, 0.3, 0.7, 0.05, 0.6, 0.2, 0.8, 0.4]  # 10 unwatermarked p-values


def test_empirical_threshold_allows_at_most_the_asked_fraction_of_false_positives():
    assert empirical_threshold(NULL, 0.1) == 0.1  # p < 0.1 flags one of ten (0.05)
    assert empirical_threshold(NULL, 0.25) == 0.2  # floor(2.5) = 2 false positives: 0.05, 0.1
    assert empirical_threshold(NULL, 0.01) == 0.05  # below resolution: below every null p-value
    assert empirical_threshold(NULL, 1.0) == math.inf
    # ties at the threshold are never flagged, so the achieved FPR can only be lower
    assert empirical_threshold([0.1, 0.1, 0.1, 0.5], 0.5) == 0.1


def test_tpr_at_fpr_and_at_nominal_p():
    pos = [1e-6, 0.04, 0.05, 0.15, 0.5]
    r = tpr_at_fpr(pos, NULL, 0.1)
    assert (r.tpr, r.threshold, r.achieved_fpr) == (0.6, 0.1, 0.1)
    assert tpr_at_fpr(pos, NULL, 0.01).tpr == 0.4  # strictly below 0.05
    assert tpr_at_p(pos, 1e-3) == 0.2


def test_auroc_and_roc_on_toy_scores_with_a_tie():
    pos, null = [0.01, 0.2, 0.5], [0.1, 0.5, 0.9]
    # pairs with pos p < null p: 3 + 2 + 1, and one tie (0.5, 0.5) counting one half
    assert auroc_from_p_values(pos, null) == pytest.approx(6.5 / 9)
    fpr, tpr = roc_from_p_values(pos, null)
    assert np.allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert np.allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(6.5 / 9)
    assert auroc_from_p_values([0.001] * 3, [0.5] * 4) == 1.0
    assert auroc_from_p_values([0.5] * 3, [0.5] * 4) == 0.5


def test_detection_summary_fields():
    s = detection_summary([1e-5, 1e-4, 0.02], NULL)
    assert s["tpr_at_p_0_001"] == pytest.approx(2 / 3)
    assert s["auroc"] == pytest.approx((10 + 10 + 10) / 30)
    assert s["median_p_value"] == 1e-4 and s["median_p_value_unwatermarked"] == 0.45


def test_resolution_warnings_name_each_fpr_that_n_unwatermarked_texts_cannot_resolve():
    assert resolution_warnings(1000) == []  # 0.1% of 1000 is one text: resolved
    (only_01,) = resolution_warnings(999)
    assert "an FPR of 0.1% is below the resolution 1/n" in only_01 and "TPR@.1%FPR" in only_01
    assert "with 999 unwatermarked texts" in only_01
    assert len(resolution_warnings(100)) == 1
    one, point_one = resolution_warnings(99)
    assert "FPR of 1%" in one and "TPR@1%FPR" in one and "FPR of 0.1%" in point_one


def test_batched_perplexity_equals_one_text_at_a_time(tiny_model):
    rng = np.random.default_rng(0)
    texts = [rng.integers(20, 1000, n).tolist() for n in (5, 17, 9, 1)]
    prefixes = [rng.integers(20, 1000, n).tolist() for n in (3, 1, 7, 2)]
    batched = perplexities(tiny_model, texts, prefixes, batch_size=3)
    for t, p, got in zip(texts, prefixes, batched, strict=True):
        x = torch.tensor([p + t])
        with torch.no_grad():
            logp = torch.log_softmax(tiny_model(input_ids=x).logits[0].float(), -1)
        nll = -np.mean([logp[len(p) - 1 + j, t[j]].item() for j in range(len(t))])
        assert got == pytest.approx(math.exp(nll), rel=1e-4)
    assert np.isnan(perplexities(tiny_model, [[]], [[1]])[0])


PROMPTS = ["Tell me about rivers.", "Write a poem.", "Describe a cat.", "Explain rain."]


@pytest.fixture
def setup(tiny_model, tokenizer, tmp_path):
    return GridSetup(
        model=tiny_model,
        tokenizer=tokenizer,
        settings=GenerationSettings(model="tiny", max_new_tokens=16, batch_size=2, seed=0),
        prompts=PROMPTS,
        out_dir=tmp_path,
        chunk_size=2,
    )


def test_generation_cache_resumes_after_an_interrupted_batch(setup, tmp_path):
    path = tmp_path / "gen.jsonl"
    first = cached_generations(path, setup.model, setup.tokenizer, PROMPTS, None, setup.settings)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # batch 2 half written, cut mid-line
    again = cached_generations(path, setup.model, setup.tokenizer, PROMPTS, None, setup.settings)
    assert again == first


def test_generation_cache_is_shared_by_configs_that_generate_alike():
    settings = GenerationSettings(model="tiny")

    def tag(name, **fields):
        return generation_tag(settings, default_config(name, **fields).generation_dict())

    # detection-only parameters and the basic/edit statistic do not change the generated texts
    assert tag("exp") == tag("exp-edit") == tag("exp", resamples=99, block_length=20)
    assert tag("its") == tag("its-edit", edit_gamma=0.1)
    assert tag("kgw") == tag("kgw", count_repeats=True)
    # everything the generator reads does
    assert tag("exp") != tag("its") != tag("kgw")
    assert tag("exp") != tag("exp", key_length=128)
    assert tag("kgw") != tag("kgw", delta=4.0)


def test_grid_rows_caches_and_interruption(setup, key, tmp_path, monkeypatch):
    scheme = build_scheme(default_config("kgw").replace(vocab_size=len(setup.tokenizer)), key)
    rows = run_grid(setup, [scheme], parse_attacks("none,substitute:0.5"))
    assert [r["attack"] for r in rows] == ["none", "substitute:0.5"]
    for r in rows:
        for k in ("tpr_at_fpr_1pct", "tpr_at_fpr_0_1pct", "tpr_at_p_0_001", "auroc", "median_p_value"):
            assert 0.0 <= r[k] <= 1.0
        assert r["scheme"] == "kgw" and r["n"] == 4 and r["perplexity"] > 1
        assert r["warnings"] == resolution_warnings(4) and len(r["warnings"]) == 2  # 4 texts resolve no FPR
    assert rows[0]["fraction_changed"] == 0.0 and 0.3 < rows[1]["fraction_changed"] <= 0.7
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(rows))

    # a rerun with a new attack reuses every generation and the attacked texts it has
    def no_generation(*a, **k):
        raise AssertionError("generated again")

    monkeypatch.setattr(generation, "generate", no_generation)
    detected = []
    real_detect = type(scheme).detect
    monkeypatch.setattr(
        type(scheme),
        "detect",
        lambda self, ids, alpha=None: detected.append(1) or real_detect(self, ids, alpha),
    )
    rows2 = run_grid(setup, [scheme], parse_attacks("none,substitute:0.5,delete:0.2"))
    assert rows2[:2] == rows and rows2[2]["attack"] == "delete:0.2"
    assert len(detected) == 2 * 4  # only the new attack's texts were detected; the rest are cached
    # the same texts under a detector with other parameters are detected again, in their own file
    other = build_scheme(scheme.config.replace(count_repeats=True), key)
    assert run_grid(setup, [other], parse_attacks("none"))[0]["pvalues_file"] != rows[0]["pvalues_file"]
    assert len(detected) == 2 * (2 * 4)
    # ... and so does a smaller n (the first texts are the same texts)
    setup.prompts = PROMPTS[:2]
    assert run_grid(setup, [scheme], parse_attacks("none"))[0]["n"] == 2
    setup.prompts = PROMPTS

    # Ctrl-C after the first row keeps that row in results.json
    def interrupt(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(setup, [scheme], parse_attacks("word-delete:0.2,none"), on_row=interrupt)
    kept = json.loads((tmp_path / "results.json").read_text())
    assert [r["attack"] for r in kept] == ["word-delete:0.2"]

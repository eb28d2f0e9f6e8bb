"""`wm bench` end to end on a tiny random model, its bad input, and the numbers it derives."""

import json
import math
import os

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wm_toolkit.attacks.bench import QUALITY_KEPT, _tamper
from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.keying.keys import write_key_file
from wm_toolkit.watermark.measure.bench_size import prefix_lengths, text_size


@pytest.fixture(autouse=True)
def numba_layer_kept(monkeypatch):
    """wm bench picks numba's workqueue layer for its process unless one is set; in this shared
    test process a set layer keeps it from doing so (workqueue is not thread-safe, and other tests
    run numba's parallel kernels from several threads)."""
    monkeypatch.setenv("NUMBA_THREADING_LAYER", os.environ.get("NUMBA_THREADING_LAYER", "default"))


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_key_file(tmp_path / "key")
    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "key"))
    return tmp_path


def run(*args):
    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


PROMPTS = "".join(
    json.dumps({"prompt": p, "kind": k}) + "\n"
    for p, k in [
        ("Write a short story about a fox.", "story"),
        ("Write a recipe for soup.", "recipe"),
        ("Why is the sky blue?", "factual"),
        ("Write a letter to a friend.", "letter"),
    ]
)


def test_bench_writes_the_table_json_and_plot_and_resumes_from_its_caches(env, tiny_dir, monkeypatch):
    (env / "p.jsonl").write_text(PROMPTS)
    args = ["bench", "--schemes", "kgw,gumbel", "--model", tiny_dir, "--prompts", env / "p.jsonl"]
    args += ["--limit", 4, "--max-new-tokens", 16, "--batch-size", 2, "--attacks", "none,typo:0.2,lowercase"]
    args += ["-o", env / "b", "--size-step", 2]
    res = run(*args, "--json")
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["scheme"] for r in results] == ["kgw", "gumbel"]
    assert json.loads((env / "b" / "bench.json").read_text()) == results
    for r in results:
        assert {"scheme", "size_tokens_median", "tamper", "quality", "tamper_aggregate", "size"} <= set(r)
        assert list(r["tamper"]) == ["none", "typo:word:0.2", "lowercase:1"]
        assert r["tamper"]["none"]["quality_ratio"] == pytest.approx(1.0)  # unattacked = the original
        assert all(
            {"tpr_at_fpr_1pct", "quality_ratio", "kept", "detected"} <= set(t) for t in r["tamper"].values()
        )
        assert 0.0 <= r["size"]["never_fraction"] <= 1.0 and len(r["size"]["curves"]) == 4
        assert all(c["lengths"][0] == 2 for c in r["size"]["curves"])  # --size-step 2
        q = r["quality"]
        assert q["perplexity"]["median"] > 1 and q["perplexity_unwatermarked"]["median"] > 1
        assert 0 < q["distinct_2"] <= 1 and 0 <= q["self_bleu"] <= 1
        assert "auroc" in q["embedding_auroc"] or "skipped" in q["embedding_auroc"]
    md = (env / "b" / "bench.md").read_text()
    assert "## Leaderboard" in md and "| kgw |" in md and "| gumbel |" in md and "same-strength" in md
    assert (env / "b" / "size-curves.png").stat().st_size > 0
    # a rerun generates nothing: every text comes from the caches
    from wm_toolkit.watermark.modeling import generation

    def no_generation(*a, **k):
        raise AssertionError("generated again")

    monkeypatch.setattr(generation, "generate", no_generation)
    again = run(*args, "--no-plots", "--no-embedding")
    assert again.exit_code == 0, again.output
    assert "| kgw |" in again.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--schemes", "kgw,teleport"], "unknown scheme 'teleport'"),
        (["--schemes", "kgw,kgw"], "named twice"),
        (["--prompts", "missing.jsonl"], "missing.jsonl"),
        (["--attacks", "none,teleport"], "unknown attack 'teleport'"),
    ],
)
def test_bad_input_is_one_error_line_before_any_model_loads(env, extra, message):
    res = run("bench", "--quick", "--model", "/nonexistent", "-o", env / "b", *extra)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert message in res.stderr
    assert not (env / "b").exists()


def test_size_is_the_first_prefix_reaching_alpha():
    assert (
        prefix_lengths(10, 4) == [4, 8, 10] and prefix_lengths(8, 4) == [4, 8] and prefix_lengths(0, 3) == []
    )
    lengths = [4, 8, 12]
    assert text_size(lengths, [-1.0, math.log10(0.02), -5.0]) == 8  # p <= 0.02 counts
    assert text_size(lengths, [-1.0, -1.5, -1.6]) is None


def test_the_aggregate_needs_detection_after_every_kept_attack():
    """Text 0 survives both attacks, text 1 only the one that ruins quality (which is not counted)."""

    def row(attack, kind, ppl):
        return {"scheme": "kgw", "attack": attack, "kind": kind, "strength": None, "perplexity": ppl}

    rows = [row("none", "none", 10.0), row("kept", "typo", 11.0), row("ruined", "swap", 50.0)]
    for r in rows:
        r.update(tpr_at_fpr_1pct=1.0, fpr_1pct_achieved=0.0, auroc=1.0, fraction_changed=0.1)
    p = {
        ("kgw", "none"): ([1e-5, 1e-5], [0.5, 0.5]),
        ("kgw", "kept"): ([1e-3, 0.5], [0.5, 0.5]),
        ("kgw", "ruined"): ([0.5, 1e-5], [0.5, 0.5]),
    }
    per, agg = _tamper(rows, p, 0.02, None)  # no embedding model: perplexity ratio
    assert per["kept"]["quality_ratio"] == pytest.approx(10 / 11) and per["kept"]["kept"]
    assert per["ruined"]["quality_ratio"] == pytest.approx(0.2) and not per["ruined"]["kept"]
    assert agg["attacks"] == ["none", "kept"] and agg["fraction"] == 0.5
    per, agg = _tamper(rows, p, 0.02, {"none": 1.0, "kept": 0.5, "ruined": 0.9})  # similarity decides
    assert agg["attacks"] == ["none", "ruined"] and agg["fraction"] == 0.5
    assert per["kept"]["quality_measure"] == "embedding-similarity" and QUALITY_KEPT == 0.8


@settings(
    max_examples=40, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.lists(
            st.dictionaries(st.sampled_from(["prompt", "kind", "text"]), st.text(max_size=20)), max_size=4
        ).map(lambda rs: "".join(json.dumps(r) + "\n" for r in rs).encode()),
    ),
    schemes=st.lists(
        st.sampled_from(["kgw", "gumbel", "unigram", "", " ", "x", "kgw;", "synthid"]), max_size=3
    ),
    limit=st.integers(-1, 3),
)
def test_any_prompt_file_and_scheme_list_exits_0_or_2_with_one_line(tmp_path_factory, body, schemes, limit):
    """Fuzzing (40 derandomised cases): bad input is one `error:` line, never a traceback or exit 1;
    the model never loads (/nonexistent), so every case ends in exit 2 within milliseconds."""
    d = tmp_path_factory.mktemp("fz")
    write_key_file(d / "key")
    (d / "p.jsonl").write_bytes(body)
    args = ["bench", "--key", d / "key", "--prompts", d / "p.jsonl", "--model", "/nonexistent", "-o", d / "b"]
    args += ["--schemes", ",".join(schemes), "--limit", limit]
    res = CliRunner().invoke(wm, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output


def test_the_embedding_classifier_keeps_each_prompts_pair_in_one_fold():
    """8 + 8 texts, as --quick, where text i of both sides answers prompt i (same topic, one label
    each). Pairs in one fold: indistinguishable sides score about 0.5. Split apart, the held-out
    text's partner of the other label is in training and the AUROC collapses (about 0.06). Means of
    20 fixed-seed draws, standard error about 0.04: the bands fail far below once in 10^4."""
    import numpy as np

    from wm_toolkit.watermark.measure.bench_stats import classifier_auroc

    rng = np.random.default_rng(3)

    def mean_auroc(paired: bool) -> float:
        out = []
        for _ in range(20):
            topic = rng.normal(size=(8, 64)) * 3
            marked, plain = topic + rng.normal(size=(8, 64)), topic + rng.normal(size=(8, 64))
            out.append(classifier_auroc(marked, plain, resamples=50, paired=paired)["auroc"])
        return float(np.mean(out))

    assert 0.35 < mean_auroc(True) < 0.65
    assert mean_auroc(False) < 0.25

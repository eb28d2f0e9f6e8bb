"""`wm steal` end to end on real-tokenizer text, and `scrub`/`spoof` as commands.

The texts are words drawn from a Zipf law over single-token words of the real tokenizer, with
the real Unigram green list boosted by e^3 in the watermarked ones, so they tokenise back to
exactly the sampled ids and the true list is the scheme's own.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.cli.steal import scrub_command, spoof_command
from wm_toolkit.watermark.config import save_config_file
from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.greenlist import GreenListConfig


def run(*args):
    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


def invoke(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(res, match: str):
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and match in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer):
    d = tmp_path_factory.mktemp("steal")
    key = Key.from_seed("steal-cli")
    write_key_file(d / "key", key)
    cfg = GreenListConfig(scheme="unigram", gamma=0.25, delta=3.0, context_width=0, vocab_size=len(tokenizer))
    save_config_file(cfg, d / "cfg.json")
    green = set(build_scheme(cfg, key).green_token_ids().tolist())
    words = []
    for i in range(300, 20000):
        s = tokenizer.decode([i])
        if (
            s.startswith(" ")
            and s[1:].isalpha()
            and tokenizer(s, add_special_tokens=False)["input_ids"] == [i]
        ):
            words.append(i)
        if len(words) == 400:
            break
    words = np.array(words)
    base = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    boost = np.exp(3.0 * np.array([w in green for w in words]))
    rng = np.random.default_rng(0)

    def texts(n, watermarked):
        p = base * boost if watermarked else base
        draws = rng.choice(words, size=(n, 80), p=p / p.sum())
        return ["".join(tokenizer.decode([int(t)]) for t in row).strip() for row in draws]

    (d / "wm.txt").write_text("\n".join(texts(80, True)) + "\n")
    nat = [json.dumps({"prompt": "p", "text": t}) for t in texts(80, False)]
    (d / "nat.jsonl").write_text("\n".join(nat) + "\n")
    return d


def test_steal_writes_the_list_and_scores_it_against_the_truth(world):
    out = world / "stolen.json"
    res = run(
        "steal", "-w", world / "wm.txt", "-n", world / "nat.jsonl", "--threat", "pro", "--gamma", 0.25,
        "--time-limit", 10, "--key", world / "key", "--config", world / "cfg.json", "-o", out, "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    stolen = json.loads(out.read_text())
    assert stolen["threat"] == "pro" and stolen["tokenizer"] == "smollm2-135m"
    assert stolen["solver"]["status"] in ("Optimal Solution Found", "Solution Found")
    assert {"variables", "constraints", "solve_s", "objective"} <= set(stolen["solver"])
    assert len(stolen["green_token_ids"]) == summary["stolen"] > 10
    assert summary["evaluation"]["precision"] >= 0.8  # chance is 0.25
    assert "baseline" in summary and "key" not in json.dumps(stolen).lower().replace("token", "")


def test_steal_with_the_papers_lexical_weights(world, tmp_path):
    res = run(
        "steal", "-w", world / "wm.txt", "-n", world / "nat.jsonl", "--gamma", 0.25, "--weights", "lexical",
        "--time-limit", 10, "--key", world / "key", "--config", world / "cfg.json", "-o", tmp_path / "s.json",
        "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["stolen"] > 10 and summary["evaluation"]["precision"] >= 0.8


def test_oracle_uses_the_key_for_exact_counts_and_needs_it(world, tmp_path):
    args = ["steal", "-w", world / "wm.txt", "-n", world / "nat.jsonl", "--threat", "oracle"]
    res = run(
        *args, "--key", world / "key", "--config", world / "cfg.json", "-o", tmp_path / "o.json", "--json"
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["evaluation"]["precision"] >= 0.95
    assert_one_line_error(run(*args, "-o", tmp_path / "x.json"), "needs the exact green counts")


def test_steal_bad_input_is_one_line_error(world, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    base = ["steal", "-n", world / "nat.jsonl", "-o", tmp_path / "s.json"]
    assert_one_line_error(run(*base, "-w", tmp_path / "empty.txt", "--gamma", 0.25), "is empty")
    assert_one_line_error(run(*base, "-w", world / "wm.txt", "--gamma", 1.5), "gamma must be in (0, 1)")
    assert_one_line_error(run(*base, "-w", world / "missing.txt", "--gamma", 0.25), "no such file")


def test_scrub_and_spoof_commands(world, tmp_path, tiny_model, tokenizer):
    tiny = tmp_path / "tiny"
    tiny_model.save_pretrained(tiny)
    tokenizer.save_pretrained(tiny)
    key = Key.from_seed("steal-cli")
    cfg = GreenListConfig(scheme="unigram", gamma=0.25, delta=3.0, context_width=0, vocab_size=len(tokenizer))
    ids = build_scheme(cfg, key).green_token_ids().tolist()
    (tmp_path / "true.json").write_text(json.dumps({"green_token_ids": ids, "threat": "oracle"}))
    (tmp_path / "p.txt").write_text("Tell me about rivers.\nExplain tides.\n")
    common = ["--key", world / "key", "--config", world / "cfg.json", "--model", tiny, "--json"]
    res = invoke(
        spoof_command,
        ["--stolen", tmp_path / "true.json", "--prompt-file", tmp_path / "p.txt", "--bias", 4, "--max-new-tokens", 25,
         "--seed", 1, "-o", tmp_path / "spoof.jsonl", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["flagged_rate"] == 1.0
    res = invoke(
        scrub_command,
        [str(tmp_path / "spoof.jsonl"), "--stolen", tmp_path / "true.json", "--max-edit-rate", 1, "--top-k", 20,
         "-o", tmp_path / "scrub.jsonl", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["flagged_before"] == 1.0 and summary["texts"] == 2
    rows = [json.loads(line) for line in (tmp_path / "scrub.jsonl").read_text().splitlines()]
    assert all(r["scrub"]["believed_green_after"] == 0 for r in rows)
    assert summary["success_rate"] >= 0.5  # re-tokenisation can merge pieces back into green tokens


@pytest.fixture(scope="module")
def planted_words(tmp_path_factory, tokenizer):
    """Issue 13's planted corpus in real words: 2,000 single-token words, 500 of them in the
    scheme's green list, green boosted by e^2, 300 + 300 texts of 150 words (Zipf 1.1, ranks
    assigned to words at random)."""
    d = tmp_path_factory.mktemp("planted")
    key = Key.from_seed("planted-words")
    write_key_file(d / "key", key)
    cfg = GreenListConfig(scheme="unigram", gamma=0.25, delta=2.0, context_width=0, vocab_size=len(tokenizer))
    save_config_file(cfg, d / "cfg.json")
    green_all = set(build_scheme(cfg, key).green_token_ids().tolist())
    green, red = [], []
    for i in range(300, len(tokenizer)):
        s = tokenizer.decode([i])
        if (
            s.startswith(" ")
            and s[1:].isalpha()
            and tokenizer(s, add_special_tokens=False)["input_ids"] == [i]
        ):
            (green if i in green_all else red).append(i)
        if len(green) >= 500 and len(red) >= 1500:
            break
    words = np.array(green[:500] + red[:1500])
    rng = np.random.default_rng(0)
    base = rng.permutation(len(words)) + 1.0
    base = base**-1.1
    boost = np.exp(2.0 * (np.arange(len(words)) < 500))

    def texts(n, watermarked):
        p = base * boost if watermarked else base
        draws = rng.choice(words, size=(n, 150), p=p / p.sum())
        return ["".join(tokenizer.decode([int(t)]) for t in row).strip() for row in draws]

    (d / "wm.txt").write_text("\n".join(texts(300, True)) + "\n")
    (d / "nat.txt").write_text("\n".join(texts(300, False)) + "\n")
    return d


@pytest.mark.slow
def test_done_when_on_the_planted_corpus_both_methods_recover_200_words_precisely(planted_words, tmp_path):
    d = planted_words
    common = [
        "-w",
        d / "wm.txt",
        "-n",
        d / "nat.txt",
        "--key",
        d / "key",
        "--config",
        d / "cfg.json",
        "--json",
    ]
    res = run("steal", "--method", "ratio", *common, "-o", tmp_path / "ratio.json")
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)["evaluation"]
    assert ev["precision"] >= 0.85 and ev["correct"] >= 200  # measured 0.93 and ~460
    stolen = json.loads((tmp_path / "ratio.json").read_text())
    assert stolen["method"] == "ratio" and stolen["ratio_model"]["context_width"] == 0
    assert len(stolen["scores"]) >= 1900 and all(len(r) == 2 for r in stolen["scores"])
    # vanilla, relabelled by the detector and with frequent-token pruning (measured 0.95, 339;
    # without the pruning 0.89 and 158: issue 13's finding)
    res = run("steal", "--threat", "vanilla", "--gamma", 0.25, *common, "-o", tmp_path / "mip.json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["evaluation"]["precision"] >= 0.85 and summary["evaluation"]["correct"] >= 200
    relabelled = summary["relabelled"]["by_detector"]  # every text re-judged by the detector
    assert relabelled["watermarked"] + relabelled["natural"] == 600 and relabelled["watermarked"] >= 280
    scores = json.loads((tmp_path / "mip.json").read_text())["scores"]
    assert {r[0] for r in scores[: summary["stolen"]]} == set(
        json.loads((tmp_path / "mip.json").read_text())["green_token_ids"]
    )


def test_ratio_output_feeds_spoof_and_scrub(world, tmp_path, tiny_model, tokenizer):
    tiny = tmp_path / "tiny"
    tiny_model.save_pretrained(tiny)
    tokenizer.save_pretrained(tiny)
    out = tmp_path / "ratio.json"
    res = run(
        "steal", "--method", "ratio", "-w", world / "wm.txt", "-n", world / "nat.jsonl", "-o", out, "--json"
    )
    assert res.exit_code == 0, res.output
    (tmp_path / "p.txt").write_text("Tell me about rivers.\nExplain tides.\n")
    common = ["--key", world / "key", "--config", world / "cfg.json", "--model", tiny, "--json"]
    res = invoke(
        spoof_command,
        ["--stolen", out, "--prompt-file", tmp_path / "p.txt", "--max-new-tokens", 20, "--seed", 1,
         "--repetition-penalty", 1.6, "-o", tmp_path / "spoof.jsonl", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["bias"] == 3.0  # the authors' Unigram strength
    res = invoke(
        scrub_command,
        [str(tmp_path / "spoof.jsonl"), "--stolen", out, "--target-z", 0, "--penalty", 1, "--whole-words",
         "-o", tmp_path / "scrub.jsonl", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["texts"] == 2
    res = invoke(
        scrub_command,
        [
            str(tmp_path / "spoof.jsonl"),
            "--stolen",
            out,
            "--paraphrase",
            "-o",
            tmp_path / "para.jsonl",
            *common,
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["mode"] == "paraphrase" and summary["strength"] == -2.0 and summary["texts"] == 2
    rows = [json.loads(line) for line in (tmp_path / "para.jsonl").read_text().splitlines()]
    assert all("p_after" in r["scrub"] and r["text"] for r in rows)
    res = invoke(
        scrub_command,
        [str(tmp_path / "spoof.jsonl"), "--stolen", out, "--paraphrase", "--rewrites", 2, "--target-z", 0,
         "--copied-rate", 0.6, "--lookahead", 8, "-o", tmp_path / "rewrite.jsonl", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["mode"] == "rewrite"
    rows = [json.loads(line) for line in (tmp_path / "rewrite.jsonl").read_text().splitlines()]
    assert all(
        r["scrub"]["rewrite"] in (-2, -1, 0, 1) and "estimated_z" in r["scrub"] for r in rows
    )  # -1: original, -2: mixed sentence by sentence
    assert all(
        r["scrub"]["within_budget"] == (r["scrub"]["ppl_after"] <= 2 * r["scrub"]["ppl_before"]) for r in rows
    )
    res = invoke(
        scrub_command,
        [str(tmp_path / "spoof.jsonl"), "--stolen", out, "--paraphrase", "--rewrites", 2, "--no-mix",
         "--target-z", 0, "--lookahead", 0, "-o", tmp_path / "whole.jsonl", *common],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "whole.jsonl").read_text().splitlines()]
    assert all(r["scrub"]["rewrite"] in (-1, 0, 1) for r in rows)  # whole rewrites or the original only


def test_bad_context_weights_are_one_line_errors(world, tmp_path):
    base = [
        "steal",
        "--method",
        "ratio",
        "-w",
        world / "wm.txt",
        "-n",
        world / "nat.jsonl",
        "-o",
        tmp_path / "s.json",
    ]
    assert_one_line_error(run(*base, "--context-weights", "1,2"), "three numbers")
    assert_one_line_error(run(*base, "--context-weights", "0,0,0"), "positive sum")

"""`wm attack` and `wm eval` end to end on a tiny random model saved to a folder."""

import json

import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.keying.keys import write_key_file


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_key_file(tmp_path / "key")
    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "key"))
    return tmp_path


def run(*args):
    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


TEXT = "The old keeper climbed the stairs every night. He lit the lamp, and the ships came home safely."


def test_attack_jsonl_keeps_records_and_config_and_adds_the_attack(env):
    cfg = {"scheme": "kgw", "vocab_size": 49152, "tokenizer": "smollm2-135m", "gamma": 0.25}
    lines = [{"prompt": f"p{i}", "text": TEXT, "scheme": "kgw", "config": cfg, "extra": i} for i in range(3)]
    (env / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    res = run(
        "attack",
        "substitute",
        env / "in.jsonl",
        "-o",
        env / "out.jsonl",
        "--rate",
        0.3,
        "--seed",
        5,
        "--json",
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["attack"] == "substitute:0.3" and summary["records"] == 3
    out = [json.loads(x) for x in (env / "out.jsonl").read_text().splitlines()]
    for before, after in zip(lines, out, strict=True):
        assert (
            after["config"] == cfg
            and after["extra"] == before["extra"]
            and after["prompt"] == before["prompt"]
        )
        assert after["text"] != TEXT
        a = after["attack"]
        assert (a["kind"], a["rate"], a["seed"]) == ("substitute", 0.3, 5) and 0.1 < a[
            "fraction_changed"
        ] < 0.5
    again = run(
        "attack", "substitute", env / "in.jsonl", "-o", env / "again.jsonl", "--rate", 0.3, "--seed", 5
    )
    assert again.exit_code == 0 and (env / "again.jsonl").read_text() == (env / "out.jsonl").read_text()


def test_attack_plain_text_in_plain_text_out(env):
    (env / "in.txt").write_text(TEXT + "\n")
    assert run("attack", "word-delete", env / "in.txt", "-o", env / "out.txt", "--rate", 0.5).exit_code == 0
    out = (env / "out.txt").read_text()
    assert out.endswith("\n") and 0 < len(out.split()) < len(TEXT.split())
    (env / "donor.txt").write_text("Plain words from somewhere else entirely, " * 10)
    res = run(
        "attack", "dilute", env / "in.txt", "--donor", env / "donor.txt", "-o", env / "d.txt", "--rate", 0.5
    )
    assert res.exit_code == 0 and TEXT.split(".")[0].split()[-1] in (env / "d.txt").read_text()


def test_attack_errors_are_one_line(env):
    (env / "in.txt").write_text(TEXT)
    res = run("attack", "dilute", env / "in.txt", "-o", env / "x.txt")
    assert res.exit_code == 2 and "--donor" in res.output
    res = run("attack", "paraphrase", env / "in.txt", "-o", env / "x.txt", "--prompt", "no placeholder")
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "{text}" in res.stderr
    res = run("attack", "delete", env / "missing.txt", "-o", env / "x.txt")
    assert res.exit_code == 2 and "no such file" in res.stderr


def test_eval_end_to_end_on_a_tiny_model(env, tiny_dir):
    (env / "p.txt").write_text("Tell me about rivers.\nWrite a poem.\nDescribe a cat.\nExplain rain.\n")
    args = ["eval", "--scheme", "kgw", "--model", tiny_dir, "--prompt-file", env / "p.txt", "--n", 4]
    args += [
        "--max-new-tokens",
        16,
        "--batch-size",
        2,
        "--attacks",
        "none,substitute:0.3,dilute:0.5",
        "-o",
        env / "ev",
    ]
    res = run(*args, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["attack"] for r in rows] == ["none", "substitute:0.3", "dilute:0.5"]
    fields = ("scheme", "attack", "tpr_at_fpr_1pct", "tpr_at_fpr_0_1pct", "tpr_at_p_0_001", "auroc")
    fields += ("median_p_value", "perplexity", "fraction_changed")
    assert all(f in r for r in rows for f in fields)
    # the table's resolution warning is in the JSON too: 4 unwatermarked texts resolve neither FPR
    assert all(len(r["warnings"]) == 2 and "below the resolution 1/n" in r["warnings"][1] for r in rows)
    assert json.loads((env / "ev" / "results.json").read_text()) == rows
    assert (env / "ev" / "roc-kgw.png").stat().st_size > 0 and (env / "ev" / "strength-kgw.png").exists()
    # the table view reuses the cache: same numbers, no new generations
    table = run(*args, "--no-plots")
    assert table.exit_code == 0 and "substitute:0.3" in table.stdout and "TPR" in table.stdout
    assert "an FPR of 0.1% is below the resolution 1/n" in " ".join(table.stdout.split())


def test_eval_rejects_unknown_attacks_before_loading_anything(env):
    res = run("eval", "--attacks", "none,teleport", "--model", "/nonexistent")
    assert res.exit_code == 2 and "unknown attack 'teleport'" in res.stderr


def test_eval_paraphrases_with_the_model_given_by_paraphrase_model(env, tiny_dir, tiny_model, tokenizer):
    import copy

    import torch

    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for w in other.parameters():
            w.mul_(-1.0)  # a different model with the same tokenizer
    other_dir = env / "other-model"
    other.save_pretrained(other_dir)
    tokenizer.save_pretrained(other_dir)
    (env / "p.txt").write_text("Tell me about rivers.\nWrite a poem.\n")
    base = ["eval", "--scheme", "unigram", "--model", tiny_dir, "--prompt-file", env / "p.txt", "--n", 2]
    base += ["--max-new-tokens", 12, "--batch-size", 2, "--attacks", "paraphrase:whole:0.7", "--no-plots"]
    own = run(*base, "-o", env / "own", "--json")
    theirs = run(*base, "-o", env / "theirs", "--paraphrase-model", other_dir, "--json")
    assert own.exit_code == 0 and theirs.exit_code == 0, own.output + theirs.output

    def attacked(d):
        (path,) = [p for p in (d / "attacks").glob("unigram-*paraphrase*.jsonl")]
        return [json.loads(x) for x in path.read_text().splitlines()]

    mine, other_recs = attacked(env / "own"), attacked(env / "theirs")
    assert all("model" not in r["attack"] for r in mine)
    assert all(r["attack"]["model"] == str(other_dir) for r in other_recs)
    assert [r["text"] for r in mine] != [r["text"] for r in other_recs]
    missing = run(*base, "-o", env / "m", "--paraphrase-model", env / "no-such-model")
    assert missing.exit_code != 0 and missing.stderr.startswith("error: ")

"""The MarkMyWords / WaterPark kinds in the registry, `wm attack` and `wm eval --attacks`."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wm_toolkit.attacks.emoji import EMOJI_INSTRUCTION, insert_emojis
from wm_toolkit.attacks.registry import AttackContext, apply_attack, available_attacks, parse_attacks
from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.errors import ConfigError

PROMPTS = Path(__file__).resolve().parent.parent / "data" / "prompts.jsonl"
KINDS = ("typo", "misspelling", "contraction", "expansion", "lowercase", "swap", "copy-paste", "scramble")
SPECS = (
    "typo:0.2",
    "typo:char:0.05",
    "misspelling:0.5",
    "contraction",
    "expansion",
    "lowercase",
    "lowercase:0.5",
    "swap:0.2",
    "copy-paste:0.3",
    "scramble",
    "emoji",
)
RANDOM = ("typo:0.2", "typo:char:0.05", "misspelling:0.5", "lowercase:0.5", "swap:0.2", "copy-paste:0.3")


@pytest.fixture(scope="module")
def texts():
    lines = [json.loads(x)["prompt"] for x in PROMPTS.read_text().splitlines() if x.strip()]
    texts = [
        " ".join(lines[i : i + 4]) + " I do not know, but it is what they're doing." for i in range(0, 40, 4)
    ]
    return [t if i % 2 else insert_emojis(t, np.random.default_rng(i)) for i, t in enumerate(texts)]


def test_every_kind_is_registered_with_its_default_strength():
    assert set(KINDS) | {"emoji"} <= set(available_attacks())
    labels = [s.label for s in parse_attacks(",".join(KINDS + ("emoji", "typo:char")))]
    assert labels == [
        "typo:word:0.1",
        "misspelling:0.5",
        "contraction:1",
        "expansion:1",
        "lowercase:1",
        "swap:0.1",
        "copy-paste:0.25",
        "scramble:1",
        "emoji:1",
        "typo:char:0.1",
    ]
    for bad in ("typo:1.5", "typo:key", "copy-paste:0", "swap:-0.1"):
        with pytest.raises(ConfigError):
            parse_attacks(bad)


@pytest.mark.parametrize("spec", SPECS)
def test_every_kind_changes_text_is_seeded_and_independent_of_chunking(spec, texts, tokenizer):
    s = parse_attacks(spec)[0]
    full = apply_attack(s, texts, AttackContext(tokenizer, seed=4))
    again = apply_attack(s, texts, AttackContext(tokenizer, seed=4))
    tail = apply_attack(s, texts[3:], AttackContext(tokenizer, seed=4, first_index=3))
    assert [a.text for a in full] == [a.text for a in again]
    assert [a.text for a in full[3:]] == [a.text for a in tail]
    assert all(a.fraction_changed > 0 for a in full if a.text != texts[full.index(a)])
    assert sum(a.text != t for a, t in zip(full, texts, strict=True)) >= len(texts) // 2
    assert full[0].params["kind"] == s.kind and full[0].params["seed"] == 4
    if spec in RANDOM:
        other = apply_attack(s, texts, AttackContext(tokenizer, seed=5))
        assert [a.text for a in full] != [a.text for a in other]


def test_emoji_kind_strips_what_the_instructed_model_added(texts, tokenizer):
    out = apply_attack(parse_attacks("emoji")[0], texts, AttackContext(tokenizer))
    assert all(o.text == texts[i] for i, o in enumerate(out) if i % 2)  # no emojis: unchanged
    assert all("😀" not in o.text and "🎉" not in o.text for o in out)


def test_copy_paste_uses_donors_when_given_else_the_human_text_file(texts, tokenizer):
    s = parse_attacks("copy-paste:0.5")[0]
    donors = ["plain human words " * 200]
    with_donors = apply_attack(s, texts[:2], AttackContext(tokenizer, donors=donors))
    assert with_donors[0].params["human_text"] == "donors" and with_donors[0].params["spans"] == 3
    for o, t in zip(with_donors, texts[:2], strict=True):
        out = o.text.split()
        assert abs(sum(w not in {"plain", "human", "words"} for w in out) - 0.5 * len(out)) <= 1
        assert abs(len(out) - 2 * len(t.split())) <= 1
    own = apply_attack(s, texts[:2], AttackContext(tokenizer, options={"copy_paste_spans": 2}))
    assert own[0].params == {
        "kind": "copy-paste",
        "fraction": 0.5,
        "seed": 0,
        "spans": 2,
        "human_text": "data/human_text.txt",
    }
    human = set((Path(__file__).resolve().parent.parent / "data" / "human_text.txt").read_text().split())
    for o, t in zip(own, texts[:2], strict=True):
        out = o.text.split()
        assert abs(len(out) - 2 * len(t.split())) <= 1 and set(out) - set(t.split()) <= human


# ---------------------------------------------------------------------------------------------
# the CLI


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args):
    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


TEXT = (
    "The keeper didn't sleep. He climbed the stairs every night, and I am sure he believed it was "
    "necessary. Then he lit the lamp 🔥 too. Nobody knew why, and their friend never asked."
)


@pytest.mark.parametrize("kind", KINDS + ("emoji",))
def test_every_kind_runs_through_wm_attack(kind, env):
    cfg = {"scheme": "kgw", "vocab_size": 49152, "tokenizer": "smollm2-135m", "gamma": 0.25}
    lines = [{"prompt": f"p{i}", "text": TEXT, "config": cfg} for i in range(2)]
    (env / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    args = ["attack", kind, env / "in.jsonl", "-o", env / "out.jsonl", "--seed", 3, "--json"]
    if kind in ("typo", "misspelling", "swap", "lowercase"):
        args += ["--rate", 0.5]
    res = run(*args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["records"] == 2 and summary["attack"].startswith(kind)
    out = [json.loads(x) for x in (env / "out.jsonl").read_text().splitlines()]
    assert all(o["config"] == cfg and o["attack"]["kind"] == kind for o in out)
    assert all(o["text"] != TEXT for o in out)


def test_attack_typo_char_mode_and_copy_paste_donor_and_spans(env):
    (env / "in.txt").write_text(TEXT + "\n")
    assert (
        run("attack", "typo", env / "in.txt", "-o", env / "t.txt", "--mode", "char", "--rate", 0.2).exit_code
        == 0
    )
    typo = (env / "t.txt").read_text()
    assert len(typo) == len(TEXT) + 1 and typo != TEXT + "\n"
    (env / "donor.txt").write_text("Plain words from somewhere else entirely. " * 30)
    res = run(
        "attack", "copy-paste", env / "in.txt", "--donor", env / "donor.txt", "-o", env / "c.txt",
        "--rate", 0.2, "--spans", 2, "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    words = (env / "c.txt").read_text().split()
    assert abs(sum(w in TEXT.split() for w in words) - 0.2 * len(words)) <= 1
    assert json.loads(res.stdout.strip().splitlines()[-1])["params"]["spans"] == 2


def test_emoji_prompts_wraps_each_prompt(env):
    (env / "p.txt").write_text("Tell me about rivers.\nWrite a poem.\n")
    res = run("attack", "emoji-prompts", env / "p.txt", "-o", env / "w.jsonl")
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (env / "w.jsonl").read_text().splitlines()]
    assert [r["prompt"].split("\n\n") for r in rows] == [
        ["Tell me about rivers.", EMOJI_INSTRUCTION],
        ["Write a poem.", EMOJI_INSTRUCTION],
    ]


def test_bad_input_is_one_error_line(env):
    (env / "in.txt").write_text(TEXT)
    for args in (
        ["copy-paste", env / "in.txt", "-o", env / "x.txt", "--rate", 0],
        ["copy-paste", env / "in.txt", "-o", env / "x.txt", "--spans", 0],
        ["typo", env / "in.txt", "-o", env / "x.txt", "--mode", "keys"],
        ["swap", env / "missing.txt", "-o", env / "x.txt"],
        ["emoji-prompts", env / "missing.txt", "-o", env / "x.jsonl"],
    ):
        res = run("attack", *args)
        assert res.exit_code == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.output


def test_wm_eval_runs_the_new_kinds(env, tiny_dir):
    (env / "p.txt").write_text("Tell me about rivers.\nWrite a poem.\n")
    attacks = "typo:0.3,misspelling,contraction,expansion,lowercase,swap:0.3,copy-paste:0.5,scramble,emoji"
    args = ["eval", "--scheme", "kgw", "--model", tiny_dir, "--prompt-file", env / "p.txt", "--n", 2]
    args += ["--max-new-tokens", 24, "--batch-size", 2, "--attacks", attacks, "--no-plots"]
    args += ["--no-perplexity", "-o", env / "ev", "--json"]
    res = run(*args)
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["attack"] for r in rows] == [s.label for s in parse_attacks(attacks)]
    by = {r["kind"]: r for r in rows}
    assert by["copy-paste"]["fraction_changed"] > 0.3 and by["typo"]["fraction_changed"] > 0

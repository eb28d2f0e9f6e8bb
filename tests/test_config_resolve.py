"""One config resolver for every command: the record's config, then --config, then flags, field by field;
a disagreement between two sources is a warning on stderr and a `config_conflicts` entry, never silent.
Each command that detects (scrub, spoof, steal, eval) resolves exactly as `wm detect` does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.config_resolve import ConfigSource, resolve_config
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.greenlist import GreenListConfig

# ---- the rule itself ------------------------------------------------------------------------------


def test_later_sources_override_field_by_field_and_each_disagreement_is_a_conflict():
    record = ConfigSource.complete(
        {"scheme": "kgw", "gamma": 0.25, "context_width": 2}, "the record's config"
    )
    file = ConfigSource("--config c.json", {"scheme": "kgw", "gamma": 0.5})
    flags = ConfigSource("flags", {"delta": 3.0}, {"delta": "--delta"})
    res = resolve_config(record, file, flags)
    assert (res.config.gamma, res.config.context_width, res.config.delta) == (0.5, 2, 3.0)
    (c,) = res.conflicts
    assert (c.field, c.overridden, c.used, c.used_from) == ("gamma", 0.25, 0.5, "--config c.json")
    assert "gamma is 0.25 in the record's config but 0.5 in --config c.json" in c.message()


def test_equal_values_and_nulls_are_not_conflicts():
    record = ConfigSource("record", {"scheme": "kgw", "gamma": 0.25, "delta": 2, "vocab_size": 100})
    file = ConfigSource("file", {"scheme": "kgw", "gamma": 0.25, "delta": 2.0, "vocab_size": None})
    res = resolve_config(record, file)
    assert res.conflicts == () and res.config.vocab_size == 100


def test_another_scheme_or_key_fingerprint_is_a_conflict():
    record = ConfigSource("record", {"scheme": "exp", "key_length": 128, "key_fingerprint": "aa"})
    flags = ConfigSource("flags", {"scheme": "exp-edit", "key_fingerprint": "bb"}, {"scheme": "--scheme"})
    res = resolve_config(record, flags)
    # a non-default key_length carries over to the new scheme of the same family
    assert (res.config.scheme, res.config.key_length, res.config.key_fingerprint) == ("exp-edit", 128, "bb")
    assert {c.field for c in res.conflicts} == {"scheme", "key_fingerprint"}


def test_switching_to_unigram_drops_kgws_default_context_width():
    record = ConfigSource("record", {"scheme": "kgw", "context_width": 1, "gamma": 0.4})
    res = resolve_config(record, ConfigSource("flags", {"scheme": "unigram"}))
    assert (res.config.context_width, res.config.gamma) == (0, 0.4)


def test_a_flag_for_a_field_the_scheme_lacks_is_an_error():
    record = ConfigSource("record", {"scheme": "exp"})
    with pytest.raises(ConfigError, match="--gamma does not apply to scheme 'exp'"):
        resolve_config(record, ConfigSource("flags", {"gamma": 0.5}, {"gamma": "--gamma"}))


def test_a_bad_record_config_names_the_record():
    with pytest.raises(ConfigError, match="out.jsonl:3 config: .*context_width"):
        ConfigSource.complete({"scheme": "kgw", "context_width": 1.5}, "record", "out.jsonl:3 config")


# ---- every command resolves as detect does --------------------------------------------------------


def run(*args):
    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


def last_json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer, tiny_dir):
    """kgw texts (gamma 0.5, h = 2: not the defaults) made of green single-token words, in records
    that carry their config as `wm generate` writes it."""
    d = tmp_path_factory.mktemp("resolve")
    key = Key.from_seed("resolve")
    write_key_file(d / "key", key)
    cfg = GreenListConfig(
        scheme="kgw", gamma=0.5, context_width=2, vocab_size=len(tokenizer), tokenizer=tiny_dir
    )
    scheme = build_scheme(cfg, key)
    words = []
    for i in range(300, 6000):
        s = tokenizer.decode([i])
        if (
            s.startswith(" ")
            and s[1:].isalpha()
            and tokenizer(s, add_special_tokens=False)["input_ids"] == [i]
        ):
            words.append(i)
    rng = np.random.default_rng(0)
    records = []
    for _ in range(6):
        ids = [int(w) for w in rng.choice(words, 2)]
        while len(ids) < 50:
            cands = torch.tensor(rng.choice(words, 20))
            seeds = torch.from_numpy(scheme.seeds_for(np.array([ids[-2:]] * 20)))
            ids.append(int(cands[scheme.is_green(seeds, cands)][0]))
        text = "".join(tokenizer.decode([t]) for t in ids)
        records.append({"prompt": "Tell me a story.", "text": text, "config": scheme.config.to_dict()})
    (d / "wm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return d, key, records


FLAGS = ["--count-repeats"]  # differs from the records' count_repeats false: one conflict


def detect_rows(d, path, *extra):
    res = run("detect", path, "--key", d / "key", *extra, "--json")
    assert res.exit_code == 0, res.output
    return [json.loads(x) for x in res.stdout.strip().splitlines()]


def test_detect_uses_the_records_config_and_reports_the_conflict(world, tiny_dir):
    d, key, records = world
    res = run("detect", d / "wm.jsonl", "--key", d / "key", "--model", tiny_dir, *FLAGS, "--json")
    rows = [json.loads(x) for x in res.stdout.strip().splitlines()]
    assert all(r["p_value"] < 1e-6 for r in rows)
    assert rows[0]["config"] == {**records[0]["config"], "count_repeats": True}
    assert rows[0]["config_conflicts"] == [
        {
            "field": "count_repeats",
            "used": True,
            "used_from": "--count-repeats",
            "overridden": False,
            "overridden_from": "the record's config",
        }
    ]
    assert res.stderr.count("warning: config conflict: count_repeats") == 1  # once, not per record


def test_scrub_judges_each_text_by_its_records_config_as_detect_does(world, tiny_dir, tmp_path):
    d, key, records = world
    (tmp_path / "stolen.json").write_text(json.dumps({"green_token_ids": [5, 6, 7], "threat": "oracle"}))
    args = ["attack", "scrub", d / "wm.jsonl", "--stolen", tmp_path / "stolen.json", "--max-edit-rate", 0]
    summary = last_json(
        run(*args, "--key", d / "key", "--model", tiny_dir, *FLAGS, "-o", tmp_path / "s.jsonl", "--json")
    )
    assert summary["flagged_before"] == 1.0  # the kgw texts, no longer judged as unigram
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    detected = detect_rows(d, d / "wm.jsonl", "--model", tiny_dir, *FLAGS)
    assert [r["scrub"]["p_before"] for r in rows] == [r["p_value"] for r in detected]
    assert rows[0]["scrub"]["config_conflicts"] == detected[0]["config_conflicts"]


def test_spoof_judges_each_text_by_its_prompt_records_config_as_detect_does(world, tiny_dir, tmp_path):
    d, key, records = world
    (tmp_path / "stolen.json").write_text(json.dumps({"green_token_ids": [5, 6, 7], "threat": "oracle"}))
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    res = run(
        "attack", "spoof", "--stolen", tmp_path / "stolen.json", "--prompt-file", tmp_path / "prompts.jsonl",
        "--max-new-tokens", 12, "--seed", 1, "--key", d / "key", "--model", tiny_dir, *FLAGS,
        "-o", tmp_path / "spoof.jsonl", "--json",
    )  # fmt: skip
    last_json(res)
    spoofed = [json.loads(x) for x in (tmp_path / "spoof.jsonl").read_text().splitlines()]
    again = [{"text": s["text"], "config": r["config"]} for s, r in zip(spoofed, records, strict=False)]
    (tmp_path / "again.jsonl").write_text("".join(json.dumps(x) + "\n" for x in again))
    detected = detect_rows(d, tmp_path / "again.jsonl", "--model", tiny_dir, *FLAGS)
    assert [s["spoof"]["p_value"] for s in spoofed] == [r["p_value"] for r in detected]


def test_steal_takes_h_and_gamma_from_the_records_config_as_detect_does(world, tiny_dir, tmp_path):
    d, key, records = world
    (tmp_path / "nat.txt").write_text("The weather was mild and the river ran slowly past the town.\n" * 6)
    res = run(
        "steal", "-w", d / "wm.jsonl", "-n", tmp_path / "nat.txt", "--model", tiny_dir, "--time-limit", 5,
        *FLAGS, "-o", tmp_path / "stolen.json", "--json",
    )  # fmt: skip
    summary = last_json(res)
    detected = detect_rows(d, d / "wm.jsonl", "--model", tiny_dir, *FLAGS)
    assert summary["config"] == detected[0]["config"]
    assert summary["config_conflicts"] == detected[0]["config_conflicts"]
    stolen = json.loads((tmp_path / "stolen.json").read_text())
    assert (stolen["context_width"], stolen["gamma"]) == (2, 0.5)


def test_eval_resolves_config_file_and_flags_as_detect_does(world, tiny_dir, tmp_path, monkeypatch):
    d, key, records = world
    monkeypatch.setenv("WM_KEY_FILE", str(d / "key"))
    (tmp_path / "c.json").write_text(json.dumps({"scheme": "kgw", "gamma": 0.5, "context_width": 2}))
    (tmp_path / "p.txt").write_text("Tell me about rivers.\nWrite a poem.\n")
    sources = ["--config", tmp_path / "c.json", "--gamma", 0.4, "--model", tiny_dir]
    rows = last_json(
        run(
            "eval",
            *sources,
            "--prompt-file",
            tmp_path / "p.txt",
            "--n",
            2,
            "--max-new-tokens",
            8,
            "--attacks",
            "none",
            "--no-perplexity",
            "--no-plots",
            "-o",
            tmp_path / "ev",
            "--json",
        )  # fmt: skip
    )
    (tmp_path / "t.txt").write_text("A plain text to score with the same sources.")
    detected = detect_rows(d, tmp_path / "t.txt", *sources)
    assert rows[0]["config"] == detected[0]["config"]
    assert rows[0]["config_conflicts"] == detected[0]["config_conflicts"] != []
    assert json.loads((tmp_path / "ev" / "results.json").read_text())[0]["config_conflicts"] != []

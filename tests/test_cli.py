"""The `wm` CLI: generate -> detect round trip, JSON contract, and one-line errors on bad input."""

import json
import os
import stat

import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.keying.keys import Key, write_key_file


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "cfg" / "key"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args, input=None):
    return CliRunner().invoke(wm, [str(a) for a in args], input=input, catch_exceptions=False)


def assert_one_line_error(res, code=2):
    assert res.exit_code == code, res.output
    assert res.stderr.startswith("error: "), res.stderr
    assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1


def test_keygen_writes_0600_and_prints_only_the_fingerprint(env):
    res = run("keygen", "-o", env / "k")
    assert res.exit_code == 0
    secret = (env / "k").read_text().strip()
    assert stat.S_IMODE(os.stat(env / "k").st_mode) == 0o600
    assert secret not in res.output and "fingerprint" in res.stderr


def test_generate_then_detect_round_trip_with_json_contract(env, tiny_dir):
    (env / "p.txt").write_text("Tell me about rivers.\nWrite a poem.\n")
    res = run(
        "generate",
        "--prompt-file",
        env / "p.txt",
        "--model",
        tiny_dir,
        "--max-new-tokens",
        40,
        "--seed",
        1,
        "-o",
        env / "out.jsonl",
        "--config-out",
        env / "cfg.json",
    )
    assert res.exit_code == 0, res.output
    assert "created a new key" in res.stderr
    key_secret = (env / "cfg" / "key").read_text().strip()
    recs = [json.loads(x) for x in (env / "out.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and {"prompt", "text", "scheme", "config", "num_tokens"} <= set(recs[0])
    assert recs[0]["config"]["key_fingerprint"] and key_secret not in (env / "out.jsonl").read_text()
    assert key_secret not in (env / "cfg.json").read_text()
    res = run("detect", env / "out.jsonl", "--model", tiny_dir, "--json")
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    for row in rows:
        assert {
            "source",
            "scheme",
            "p_value",
            "num_tokens_scored",
            "watermarked",
            "z_score",
            "green_fraction",
        } <= set(row)
        assert row["watermarked"] and row["p_value"] < 1e-3
    # plain text from stdin, with the config file
    res = run(
        "detect", "-", "--config", env / "cfg.json", "--model", tiny_dir, "--json", input=recs[0]["text"]
    )
    assert res.exit_code == 0 and json.loads(res.stdout)["p_value"] < 1e-3
    # the human-readable table and the token view
    res = run("detect", env / "out.jsonl", "--model", tiny_dir, "--show-tokens")
    assert res.exit_code == 0 and "watermarked" in res.stdout


def test_no_watermark_output_is_not_detected(env, tiny_dir):
    write_key_file(
        env / "cfg" / "key", Key.from_seed("plain-output")
    )  # fixed: a false positive is 1e-3 per key
    res = run(
        "generate",
        "Hello there",
        "--model",
        tiny_dir,
        "--max-new-tokens",
        40,
        "--seed",
        3,
        "--no-watermark",
        "-o",
        env / "plain.jsonl",
    )
    assert res.exit_code == 0, res.output
    res = run("detect", env / "plain.jsonl", "--model", tiny_dir, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["watermarked"] is False


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b"\x00\x01\x02binary", "binary"),
        (b"caf\xe9 au lait", "not UTF-8"),
        (b'{"text": 3}\n', "string 'text' field"),
        (b'{"text": "a"}\nnot json\n', "not valid JSON"),
    ],
)
def test_bad_input_files_give_one_line_errors(env, content, message):
    write_key_file(env / "cfg" / "key")
    (env / "bad.jsonl" if content.startswith(b"{") else env / "bad.txt").write_bytes(content)
    name = "bad.jsonl" if content.startswith(b"{") else "bad.txt"
    res = run("detect", env / name)
    assert_one_line_error(res)
    assert message in res.stderr


def test_missing_file_directory_and_missing_key(env, tmp_path):
    write_key_file(env / "cfg" / "key")
    assert_one_line_error(run("detect", env / "nope.txt"))
    assert_one_line_error(run("detect", tmp_path))
    (env / "t.txt").write_text("some text here")
    os.remove(env / "cfg" / "key")
    res = run("detect", env / "t.txt")
    assert_one_line_error(res)
    assert "no key" in res.stderr


def test_wrong_key_length_and_wrong_key(env, tiny_dir):
    (env / "short.key").write_text("abcd")
    os.chmod(env / "short.key", 0o600)
    (env / "t.txt").write_text("some text here to test")
    assert_one_line_error(run("detect", env / "t.txt", "--key", env / "short.key"))
    write_key_file(env / "a.key")
    write_key_file(env / "b.key")
    res = run(
        "generate",
        "Hi",
        "--model",
        tiny_dir,
        "--max-new-tokens",
        10,
        "--key",
        env / "a.key",
        "-o",
        env / "g.jsonl",
    )
    assert res.exit_code == 0
    res = run("detect", env / "g.jsonl", "--key", env / "b.key", "--model", tiny_dir)
    assert res.exit_code == 2 and "wrong key" in res.stderr


def test_config_for_another_scheme_and_inapplicable_flags(env, tiny_dir):
    write_key_file(env / "cfg" / "key")
    (env / "t.txt").write_text("some text to score")
    (env / "c.json").write_text(json.dumps({"scheme": "unigram", "context_width": 0}))
    res = run("detect", env / "t.txt", "--config", env / "c.json", "--scheme", "kgw", "--model", tiny_dir)
    assert_one_line_error(res)
    assert "not 'kgw'" in res.stderr
    (env / "c.json").write_text("{not json")
    assert_one_line_error(run("detect", env / "t.txt", "--config", env / "c.json", "--model", tiny_dir))


def test_unknown_model_and_too_short_text(env, tiny_dir):
    write_key_file(env / "cfg" / "key")
    (env / "t.txt").write_text("a")
    res = run("detect", env / "t.txt", "--model", env / "no-such-model")
    assert_one_line_error(res)
    assert "cannot load model" in res.stderr
    res = run("detect", env / "t.txt", "--model", tiny_dir, "--json")
    assert res.exit_code == 2 and "error" in json.loads(res.stdout.splitlines()[0])


def test_mismatched_tokenizer_is_an_error(env, tiny_dir):
    write_key_file(env / "cfg" / "key")
    (env / "c.json").write_text(json.dumps({"scheme": "kgw", "vocab_size": 32000}))
    (env / "t.txt").write_text("some text to score here")
    res = run("detect", env / "t.txt", "--config", env / "c.json", "--model", tiny_dir, "--json")
    assert_one_line_error(res)
    assert "tokenizer" in res.stderr


def test_generate_usage_errors(env):
    res = run("generate")
    assert res.exit_code == 2


def test_switching_scheme_keeps_the_records_non_default_generation_settings():
    from wm_toolkit.cli.common import resolve_config

    record = {"scheme": "exp", "key_length": 128, "vocab_size": 49152, "key_fingerprint": "ab"}
    cfg = resolve_config("exp-edit", None, {}, record)
    assert (cfg.scheme, cfg.key_length, cfg.vocab_size, cfg.key_fingerprint) == ("exp-edit", 128, 49152, "ab")
    assert resolve_config("its-edit", None, {}, dict(record, scheme="its")).edit_gamma == 0.4


def test_seeding_flag_selects_selfhash_and_is_refused_for_other_schemes():
    from wm_toolkit.cli.common import resolve_config
    from wm_toolkit.watermark.errors import ConfigError

    assert resolve_config("kgw", None, {"seeding": "selfhash", "context_width": 3}).seeding == "selfhash"
    with pytest.raises(ConfigError, match="does not apply"):
        resolve_config("exp", None, {"seeding": "selfhash"})


def test_a_small_resampling_cap_still_calls_a_clearly_unwatermarked_text_not_watermarked(env, tiny_dir):
    """its-edit at the default alpha 1e-3 needs ~10,000 null keys; --max-resamples 300 cannot reach
    p <= 1e-3, but a plain text whose null keys put p clearly above alpha (99.9% Clopper-Pearson
    lower bound > alpha) is "not watermarked", not "inconclusive" (issue 30's review; the
    inconclusive case near alpha is tests/test_review_edges.py's)."""
    write_key_file(env / "cfg" / "key")
    (env / "t.txt").write_text("The river runs through the old town and under seven stone bridges.")
    res = run(
        "detect", env / "t.txt", "--scheme", "its-edit", "--model", tiny_dir, "--json",
        "--key-length", 32, "--max-resamples", 300,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout.splitlines()[0])
    assert row["verdict"] == "not watermarked"
    assert row["resamples_cap"] == 300 and row["p_value_floor"] > 1e-3
    assert_one_line_error(run("detect", env / "t.txt", "--scheme", "kgw", "--max-resamples", 5))

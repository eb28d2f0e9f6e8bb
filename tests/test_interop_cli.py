"""The CLI side of the transformers-compatible schemes: integer keys, --hf-config, flags, errors."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from click.testing import CliRunner
from transformers import SynthIDTextWatermarkingConfig, WatermarkDetector, WatermarkingConfig

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.errors import KeyFileError
from wm_toolkit.watermark.keying.hfkeys import HashingKey, SynthIDKeys, load_any_key_file

HASHING_KEY = 987654321987
SYNTHID = "654,400,836,123,340,443,597,160,57,29"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "cfg" / "key"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args):
    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(res, needle=""):
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert needle in res.stderr


def rows(res):
    return [json.loads(x) for x in res.stdout.splitlines() if x.strip()]


def test_keygen_writes_integer_keys_0600_and_never_prints_them(env):
    res = run("keygen", "--hf-hashing-key", HASHING_KEY, "-o", env / "hk")
    assert res.exit_code == 0 and str(HASHING_KEY) not in res.output and "fingerprint" in res.stderr
    assert stat.S_IMODE(os.stat(env / "hk").st_mode) == 0o600
    assert load_any_key_file(env / "hk") == HashingKey(HASHING_KEY)
    res = run("keygen", "--synthid-keys", SYNTHID, "-o", env / "sk")
    assert res.exit_code == 0 and "654" not in res.output
    assert load_any_key_file(env / "sk") == SynthIDKeys(tuple(int(k) for k in SYNTHID.split(",")))
    assert run("keygen", "--synthid-keys", "random", "-o", env / "rk").exit_code == 0
    assert len(load_any_key_file(env / "rk").values) == 30
    os.chmod(env / "hk", 0o644)
    with pytest.raises(KeyFileError):
        load_any_key_file(env / "hk")
    assert_one_line_error(run("keygen", "--hf-hashing-key", "12x", "-o", env / "bad"), "integer")


def test_hf_kgw_round_trip_and_transformers_detector_agrees(env, tiny_dir, tiny_model):
    """wm generate --scheme hf-kgw, detected by wm (flags, key file, --hf-config) and transformers.
    (delta 5: the texts are re-tokenised from their strings, and 40 tokens must be enough.)"""
    (env / "p.txt").write_text("Tell me about rivers.\nWrite a poem.\n")
    res = run(
        "generate", "--prompt-file", "p.txt", "--model", tiny_dir, "--scheme", "hf-kgw",
        "--hashing-key", HASHING_KEY, "--delta", 5, "--max-new-tokens", 40, "--seed", 0, "-o", "out.jsonl",
        "--config-out", "cfg.json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert str(HASHING_KEY) not in (env / "out.jsonl").read_text() + (env / "cfg.json").read_text()
    cfg = json.loads((env / "cfg.json").read_text())
    assert cfg["scheme"] == "hf-kgw" and cfg["model_vocab_size"] == tiny_model.config.vocab_size
    assert cfg["key_fingerprint"] == HashingKey(HASHING_KEY).fingerprint
    by_flag = rows(run("detect", "out.jsonl", "--model", tiny_dir, "--hashing-key", HASHING_KEY, "--json"))
    assert [r["verdict"] for r in by_flag] == ["watermarked", "watermarked"]
    run("keygen", "--hf-hashing-key", HASHING_KEY, "-o", "hk")
    by_file = rows(run("detect", "out.jsonl", "--model", tiny_dir, "--key", "hk", "--json"))
    assert [r["p_value"] for r in by_file] == [r["p_value"] for r in by_flag]
    (env / "wc.json").write_text(json.dumps(WatermarkingConfig(hashing_key=HASHING_KEY, bias=5.0).to_dict()))
    by_hf = rows(run("detect", "out.jsonl", "--model", tiny_dir, "--hf-config", "wc.json", "--json"))
    assert [r["p_value"] for r in by_hf] == [r["p_value"] for r in by_flag]
    assert_one_line_error(run("detect", "out.jsonl", "--model", tiny_dir, "--hashing-key", 5), "wrong key")
    detector = WatermarkDetector(tiny_model.config, "cpu", WatermarkingConfig(hashing_key=HASHING_KEY))
    for rec in map(json.loads, (env / "out.jsonl").read_text().splitlines()):
        ids = torch.tensor([tiny_dir_tokenizer(tiny_dir)(rec["text"], add_special_tokens=False)["input_ids"]])
        assert detector(ids, z_threshold=4.0)[0]


def tiny_dir_tokenizer(path):
    from wm_toolkit.watermark.modeling.models import load_tokenizer

    return load_tokenizer(path)


def test_hf_kgw_flags_match_the_issue_and_print_p_values(env, tiny_dir):
    (env / "t.txt").write_text(
        "The quick brown fox jumps over the lazy dog, then sleeps in the warm sun all day."
    )
    args = ["detect", "t.txt", "--model", tiny_dir, "--hashing-key", 15485863, "--gamma", 0.25]
    res = run(*args, "--seeding", "lefthash", "--context-width", 1, "--json")
    (row,) = rows(res)
    assert row["scheme"] == "hf-kgw" and 0 < row["p_value"] <= 1 and "green_count" in row
    assert "15485863" not in res.output


def test_hf_synthid_and_native_synthid_from_the_cli(env, tiny_dir):
    (env / "p.txt").write_text("Tell me about rivers.\n")
    run("keygen", "-o", "k")
    res = run(
        "generate", "--prompt-file", "p.txt", "--model", tiny_dir, "--scheme", "synthid", "--key", "k",
        "--max-new-tokens", 25, "--seed", 0, "-o", "syn.jsonl",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = rows(run("detect", "syn.jsonl", "--model", tiny_dir, "--key", "k", "--json"))
    assert row["scheme"] == "synthid" and row["verdict"] == "watermarked"
    assert {"p_value_mean", "p_value_weighted", "mean_score", "weighted_mean_score"} <= set(row)
    (mean_row,) = rows(
        run("detect", "syn.jsonl", "--model", tiny_dir, "--key", "k", "--synthid-score", "mean", "--json")
    )
    assert mean_row["p_value"] == row["p_value_mean"]
    res = run(
        "generate", "--prompt-file", "p.txt", "--model", tiny_dir, "--scheme", "hf-synthid",
        "--synthid-keys", SYNTHID, "--ngram-len", 4, "--max-new-tokens", 25, "--seed", 0, "-o", "hf.jsonl",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = rows(run("detect", "hf.jsonl", "--model", tiny_dir, "--synthid-keys", SYNTHID, "--json"))
    assert row["scheme"] == "hf-synthid" and row["verdict"] == "watermarked"
    cfg = SynthIDTextWatermarkingConfig(keys=[int(k) for k in SYNTHID.split(",")], ngram_len=4).to_dict()
    (env / "sc.json").write_text(json.dumps(cfg))
    (again,) = rows(run("detect", "hf.jsonl", "--model", tiny_dir, "--hf-config", "sc.json", "--json"))
    assert again["p_value"] == row["p_value"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--scheme", "kgw", "--hashing-key", "5"], "is for scheme 'hf-kgw'"),
        (["--hashing-key", "5", "--synthid-keys", "1,2"], "not both"),
        (["--hashing-key", "0x1g"], "must be an integer"),
        (["--synthid-keys", "1,,b"], "must be an integer"),
        (["--hashing-key", "-3"], "[0, 2^63)"),
        (["--hf-config", "missing.json"], "does not exist"),
        (["--hf-config", "bad.json"], "unknown field"),
        (["--hf-config", "wc.json", "--hashing-key", "6"], "different keys"),
        (["--hf-config", "wc.json", "--scheme", "hf-synthid"], "not 'hf-synthid'"),
        (["--scheme", "hf-kgw"], "integer hashing key"),
        (["--scheme", "synthid", "--key", "hk"], "needs a wm key file"),
        (["--hashing-key", "5", "--key", "hk"], "give the key once"),
        (["--scheme", "hf-kgw", "--hashing-key", "5", "--ngram-len", "3"], "does not apply"),
    ],
)
def test_bad_interop_input_is_one_line_error(env, tiny_dir, args, needle):
    (env / "t.txt").write_text("Some text that is long enough to be scored by every detector here.")
    (env / "bad.json").write_text(json.dumps({"hashing_key": 5, "salt": 1}))
    (env / "wc.json").write_text(json.dumps(WatermarkingConfig(hashing_key=5).to_dict()))
    run("keygen", "-o", env / "cfg" / "key")
    run("keygen", "--hf-hashing-key", 5, "-o", "hk")
    res = run("detect", "t.txt", "--model", tiny_dir, *args)
    assert_one_line_error(res, needle)
    assert "Traceback" not in res.output

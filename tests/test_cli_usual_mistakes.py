"""Help where a person makes the usual mistakes (issue 32, item 4): a mistyped command is answered
with the nearest one, as git does, and a folder that is not a tokenizer (or model) is named as
such in wm's words, not transformers' truncated "Couldn't instantiate the backend tokenizer"."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.keying.keys import write_key_file


def run(*args):
    return CliRunner().invoke(wm, [str(a) for a in args])


@pytest.mark.parametrize(
    "args,typo,meant",
    [(["dettect", "x.txt"], "dettect", "detect"), (["genrate"], "genrate", "generate"),
     (["keygn"], "keygn", "keygen"), (["attack", "scrubb"], "scrubb", "scrub"),
     (["attack", "dilut", "x.jsonl"], "dilut", "dilute")],
)  # fmt: skip
def test_a_mistyped_command_gets_the_nearest_one(args, typo, meant):
    res = run(*args)
    assert res.exit_code == 2
    assert f"No such command {typo!r}." in res.stderr
    assert f"Did you mean {meant!r}?" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_name_near_nothing_gets_no_guess():
    res = run("xyzzy")
    assert res.exit_code == 2 and "No such command 'xyzzy'" in res.stderr and "Did you mean" not in res.stderr


@pytest.mark.parametrize("command", [["detect", "t.txt"], ["calibrate", "t.txt", "-o", "cal.json"]])
def test_a_folder_that_is_not_a_tokenizer_says_what_was_expected(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    write_key_file(tmp_path / "k.key")
    (tmp_path / "t.txt").write_text("a text to score, long enough to be tokenised")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_text("box\n")
    res = run(*command, "--key", tmp_path / "k.key", "--model", tmp_path / "etc")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(
        f"error: cannot load tokenizer '{tmp_path / 'etc'}': the folder holds no tokenizer"
    )
    assert "tokenizer.json" in res.stderr and "model name" in res.stderr
    assert "backend tokenizer" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_folder_that_is_not_a_model_says_what_was_expected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_key_file(tmp_path / "k.key")
    res = run("generate", "Hi", "--key", tmp_path / "k.key", "--model", tmp_path, "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 2, res.output
    assert "the folder holds no model (expected config.json" in res.stderr

"""Trivial bad input is answered before the model stack loads (issue 32, item 3).

`wm detect missing.txt` took 3-9 s to say "no such file", importing torch and transformers first.
cli/precheck.py now checks the --config file, the --key file and the inputs on the raw arguments;
these tests say that it answers without torch, and with exactly the command's own message.
"""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from wm_toolkit.cli import precheck
from wm_toolkit.cli.main import WmGroup, load_command, wm
from wm_toolkit.watermark.keying.keys import write_key_file

# run `wm ARGS` in a fresh interpreter; print the exit code and whether torch was imported
PROBE = """
import sys
from wm_toolkit.cli.main import wm
try:
    wm.main(sys.argv[1:], prog_name="wm")
except SystemExit as exc:
    print("exit", exc.code, "torch" in sys.modules, "transformers" in sys.modules)
"""


def bad_inputs(tmp_path) -> dict[str, list[str]]:
    """name -> `wm detect` arguments; each must fail with one error line."""
    write_key_file(tmp_path / "k.key")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bin.dat").write_bytes(b"\x7fELF\x00\x01")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    (tmp_path / "t.txt").write_text("a text to score")
    (tmp_path / "notakey").write_text("not a key\n")
    (tmp_path / "notakey").chmod(0o600)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "mixed.txt").write_text('{"text": "a"}\n{"text": \n{"text": "b"}\n')
    key = ["--key", str(tmp_path / "k.key")]
    return {
        "missing": [str(tmp_path / "missing.txt"), *key],
        "empty": [str(tmp_path / "empty.txt"), *key],
        "binary": [str(tmp_path / "bin.dat"), *key],
        "non-UTF-8": [str(tmp_path / "latin1.txt"), *key],
        "directory": [str(tmp_path), *key],
        "not a key": [str(tmp_path / "t.txt"), "--key", str(tmp_path / "notakey")],
        "config not JSON": [str(tmp_path / "t.txt"), *key, "--config", str(tmp_path / "bad.json")],
        "mostly JSON": [str(tmp_path / "mixed.txt"), *key, "--json"],
    }


@pytest.fixture
def cases(tmp_path):
    return bad_inputs(tmp_path)


def test_trivial_bad_input_is_exit_2_without_importing_torch(cases):
    for name, args in cases.items():
        out = subprocess.run(
            [sys.executable, "-c", PROBE, "detect", *args], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.split() == ["exit", "2", "False", "False"], (name, out.stdout, out.stderr)
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, name


def test_the_early_answer_is_the_commands_own(cases, monkeypatch):
    early = {n: CliRunner().invoke(wm, ["detect", *a]).stderr for n, a in cases.items()}
    monkeypatch.setattr(WmGroup, "early", {})  # the command itself, model stack and all
    for name, args in cases.items():
        res = CliRunner().invoke(wm, ["detect", *args])
        assert res.exit_code == 2 and res.stderr == early[name], (name, res.stderr, early[name])


def test_arguments_it_cannot_read_safely_skip_the_early_checks(tmp_path):
    skipped = [
        ["x.txt", "--help"],
        ["x.txt", "--stream"],
        ["x.txt", "--a-flag-added-later"],
        ["x.txt", "-qz"],
        ["x.txt", "--key"],
    ]
    for args in skipped:
        assert precheck.parse_detect_args(args) is None, args
    assert precheck.parse_detect_args(["a", "--key=k", "--json", "--", "--b"]) == (
        {"--key": "k", "--json": True},
        ["a", "--b"],
    )


def test_the_parsers_option_table_is_detects():
    command = load_command("detect")
    takes_value, flags = set(), set()
    for param in command.params:
        if isinstance(param, click.Option):
            (flags if param.is_flag else takes_value).update([*param.opts, *param.secondary_opts])
    assert takes_value == set(precheck.DETECT_VALUE_OPTIONS)
    assert flags == set(precheck.DETECT_FLAGS)

"""A JSONL file with one broken line is refused whatever its name (issue 32, item 1).

`results.txt` is the natural name of a script's output; read as one plain text, its JSON syntax,
field names and configs were tokenised and scored: two watermarked records came back `not
watermarked`, exit 0. Now such a file is refused like a `.jsonl` one, and --as-text reads it as text.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.errors import InputError
from wm_toolkit.watermark.keying.keys import write_key_file
from wm_toolkit.watermark.text.textio import MostlyJsonError, read_records


def run(*args):
    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def results_txt(tmp_path, tiny_dir):
    """Exactly the issue's file: two watermarked kgw records, one broken line between them."""
    write_key_file(tmp_path / "k.key")
    lines = []
    for n, prompt in enumerate(("Tell me about rivers.", "Write about mountains.")):
        out = tmp_path / f"g{n}.jsonl"
        res = run("generate", prompt, "--model", tiny_dir, "--key", tmp_path / "k.key",
                  "--max-new-tokens", 40, "--seed", n, "-o", out)  # fmt: skip
        assert res.exit_code == 0, res.output
        lines.append(out.read_text(encoding="utf-8").strip())
    path = tmp_path / "results.txt"
    path.write_text(f'{lines[0]}\n{{"text": "broken\n{lines[1]}\n', encoding="utf-8")
    return path


def test_the_issues_results_txt_is_refused_at_its_broken_line(results_txt, tiny_dir):
    res = run("detect", results_txt, "--key", results_txt.parent / "k.key", "--model", tiny_dir)
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith(f"error: {results_txt}:2: not valid JSON (")
    assert "--as-text" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_the_same_bytes_named_jsonl_give_the_same_line(results_txt, tiny_dir):
    jsonl = results_txt.with_name("mixed.jsonl")
    jsonl.write_bytes(results_txt.read_bytes())
    res = run("detect", jsonl, "--key", results_txt.parent / "k.key", "--model", tiny_dir)
    assert res.exit_code == 2 and f"{jsonl}:2: not valid JSON (" in res.stderr


def test_as_text_reads_it_as_one_plain_text(results_txt, tiny_dir):
    res = run("detect", results_txt, "--as-text", "--json", "--key", results_txt.parent / "k.key",
              "--model", tiny_dir)  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["source"] for r in rows] == [str(results_txt)]


def test_as_text_is_in_detects_help():
    assert "--as-text" in run("detect", "--help").stdout


@pytest.mark.parametrize(
    "text",
    [
        '{"text": "a"}\nthen a line of prose\n',  # one JSON line is not "mostly"
        '{"text": "a"}\n{"text": "b"}\nprose that quotes\ntwo JSON lines\nabove\n',  # under half
        "{braces} open a plain text\nwith prose after it\n",
    ],
)
def test_plain_text_that_quotes_some_json_is_still_plain_text(tmp_path, text):
    path = tmp_path / "notes.txt"
    path.write_text(text, encoding="utf-8")
    assert [r.text for r in read_records(str(path))] == [text]


def test_half_json_lines_is_mostly_json_and_the_first_bad_line_is_named(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text('{"text": "a"}\n\n[1, 2]\n{"text": "b"}\nprose\n', encoding="utf-8")
    with pytest.raises(MostlyJsonError, match=r"out.txt:3: expected a JSON object, got a JSON list"):
        read_records(str(path))
    assert issubclass(MostlyJsonError, InputError)  # exit 2 in every command
    assert len(read_records(str(path), as_text=True)) == 1


def test_every_line_json_still_reads_as_records(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text('{"text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    assert [r.text for r in read_records(str(path))] == ["a", "b"]

"""Token views of a detection: `wm detect --json --tokens`, `--show-tokens` in a pipe, `--html`."""

from __future__ import annotations

import html
import json
import re

import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.runtime.report import (
    GREEN_LIST_LEGEND,
    TokenPiece,
    marked_text,
    result_html,
    segments,
)

TEXT = (
    'Tides rise twice a day because the Moon pulls on the oceans. <b>Spring</b> tides & "neap" tides '
    "follow the phases of the Moon, and the café by the harbour 😀 posts the times every morning."
)


@pytest.fixture
def setup(tmp_path):
    key = tmp_path / "key"
    write_key_file(key, Key.from_seed("report-tests"))
    (tmp_path / "t.txt").write_text(TEXT)
    return tmp_path


def detect(setup, *args):
    res = CliRunner().invoke(wm, ["detect", "--key", str(setup / "key"), str(setup / "t.txt"), *args])
    assert res.exit_code == 0, res.output
    return res


def test_json_tokens_carry_the_mask_and_each_tokens_characters(setup):
    row = json.loads(detect(setup, "--json", "--tokens").stdout)
    mask, toks = row["token_mask"], row["tokens"]
    assert len(mask) == len(toks) and [t["mask"] for t in toks] == mask
    assert mask[0] == -1 and set(mask[1:]) == {0, 1}
    assert sum(m == 1 for m in mask) >= row["green_count"]  # repeats are coloured, counted once
    for t in toks:
        assert TEXT[t["start"] : t["end"]] == t["text"]
    without = json.loads(detect(setup, "--json").stdout)
    assert "tokens" not in without and "token_mask" not in without


def test_tokens_flag_needs_json(setup):
    res = CliRunner().invoke(wm, ["detect", "--key", str(setup / "key"), str(setup / "t.txt"), "--tokens"])
    assert res.exit_code == 2


def test_show_tokens_in_a_pipe_prints_a_legend_and_markers(setup):
    row = json.loads(detect(setup, "--json", "--tokens").stdout)
    out = detect(setup, "--show-tokens").stdout  # CliRunner's stdout is not a terminal
    assert "legend: [+tok] green" in out and "[-tok] red" in out
    greens = [t["text"] for t in row["tokens"] if t["mask"] == 1]
    marked = out.split("== ", 1)[1].split("\n", 1)[1]
    assert marked.count("[+") == len(greens) and f"[+{greens[0]}]" in marked
    assert "\x1b[" not in out  # no colour codes in a pipe


def test_html_report_is_self_contained_coloured_and_escaped(setup):
    res = detect(setup, "--html", str(setup / "r" / "report.html"))
    assert "wrote" in res.stderr
    page = (setup / "r" / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "t-green" in page and "t-red" in page
    assert "<b>" not in page and "&lt;" in page and "<script" not in page
    for ref in ("src=", "href=", "http://", "https://", "url("):
        assert ref not in page
    body = page.split('<div class="wm-text">', 1)[1].split("</div>", 1)[0]
    assert html.unescape(re.sub(r"<[^>]+>", "", body)) == TEXT  # every character once, in order
    assert "Content-Security-Policy" in page and "not watermarked" in page


def test_segments_cover_every_character_once_with_gaps_and_overlaps():
    text = "ab  cd😀e"
    pieces = [TokenPiece("ab", 0, 2, 1), TokenPiece("cd😀", 4, 7, 0), TokenPiece("😀", 6, 7, 1)]
    runs = segments(text, pieces, spans=[(1, 5)])
    assert "".join(r[0] for r in runs) == text
    assert runs == [
        ("a", 1, False),
        ("b", 1, True),
        ("  ", None, True),
        ("c", 0, True),
        ("d", 0, False),
        ("😀", 0, False),
        ("e", None, False),
    ]
    assert marked_text(pieces[:2], GREEN_LIST_LEGEND) == "[+ab][-cd😀]"


def test_result_html_says_why_tokens_are_not_coloured():
    row = {
        "source": "x",
        "verdict": "inconclusive",
        "p_value": 0.01,
        "alpha": 0.001,
        "inconclusive_reason": "too short",
    }
    out = result_html(row, "<i>text</i>", None, None, "hidden: the server does not show them")
    assert "wm-v-inconclusive" in out and "hidden: the server" in out and "too short" in out
    assert "&lt;i&gt;text&lt;/i&gt;" in out and "t-green" not in out

"""JSONL records survive every character a model can emit; caches read back what they wrote."""

import json

from wm_toolkit.watermark.measure.evaluation import append_cache_jsonl, read_cache_jsonl
from wm_toolkit.watermark.text.textio import read_prompts, read_records, text_lines, write_jsonl

# U+2028/U+2029 and NEL are line breaks to str.splitlines but legal, unescaped, inside JSON strings
ODD = "one\u2028two\u2029three\x85four\x1cfive\x0bsix\x0cseven"


def test_text_lines_splits_only_at_newlines():
    assert text_lines("a\r\nb\n" + ODD + "\n") == ["a", "b", ODD, ""]


def test_jsonl_with_unicode_line_separators_round_trips(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"text": ODD, "prompt": "p\u2028q"}, {"text": "plain"}])
    raw = path.read_text(encoding="utf-8")
    assert "\u2028" in raw or "\\u2028" in raw  # however it is written, it must read back whole
    records = read_records(str(path))
    assert [r.text for r in records] == [ODD, "plain"]
    assert records[0].prompt == "p\u2028q"


def test_prompt_file_lines_keep_unicode_separators(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("first\u2028still first\nsecond\n", encoding="utf-8")
    assert read_prompts(str(path)) == ["first\u2028still first", "second"]


def test_grid_cache_reads_back_every_record(tmp_path):
    path = tmp_path / "cache.jsonl"
    recs = [{"index": i, "text": f"{i} {ODD}"} for i in range(3)]
    append_cache_jsonl(path, recs)
    assert read_cache_jsonl(path) == recs
    path.write_text(path.read_text(encoding="utf-8") + json.dumps({"index": 3})[:5], encoding="utf-8")
    assert read_cache_jsonl(path) == recs  # a record cut short by an interruption is dropped

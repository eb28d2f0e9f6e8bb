"""Reading and writing the texts that commands work on: plain text or `wm generate` JSONL.

Every check a user can trip (missing, empty, binary, non-UTF-8, huge, malformed JSONL) raises
`InputError` with one line that names the file, so no command ever scores garbage silently.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

MAX_INPUT_BYTES = int(os.environ.get("WM_MAX_INPUT_BYTES", str(64 * 1024 * 1024)))


@dataclass
class TextRecord:
    """One text to work on; `record` keeps every field of a JSONL line for writing it back."""

    source: str
    text: str
    prompt: str | None = None
    config: dict[str, Any] | None = None
    record: dict[str, Any] = field(default_factory=dict)


def read_bytes(path: str) -> bytes:
    if path == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    else:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{path}: no such file")
        if p.is_dir():
            raise InputError(f"{path}: is a directory, not a text file")
        if p.stat().st_size > MAX_INPUT_BYTES:
            raise InputError(f"{path}: too large ({p.stat().st_size} bytes; the limit is {MAX_INPUT_BYTES})")
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{path}: too large (the limit is {MAX_INPUT_BYTES} bytes)")
    return data


def decode_text(path: str, data: bytes) -> str:
    if b"\x00" in data:
        raise InputError(f"{path}: looks binary (contains NUL bytes), expected UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    if not text.strip():
        raise InputError(f"{path}: is empty")
    return text


def text_lines(text: str) -> list[str]:
    """Lines split at "\n" (and "\r\n") only. str.splitlines also splits at U+2028, U+0085 and
    other separators that JSON writes unescaped inside strings (ensure_ascii=False), which would
    cut a JSONL record in two."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def _looks_like_jsonl(path: str, text: str) -> bool:
    return path.endswith((".jsonl", ".ndjson")) or text.lstrip().startswith("{")


def parse_jsonl(path: str, text: str, field_name: str = "text") -> list[TextRecord]:
    out: list[TextRecord] = []
    for n, line in enumerate(text_lines(text), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"{path}:{n}: not valid JSON (expected one JSON object per line)") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(field_name), str):
            raise InputError(f"{path}:{n}: expected a JSON object with a string {field_name!r} field")
        config = obj.get("config") if isinstance(obj.get("config"), dict) else None
        out.append(TextRecord(f"{path}:{n}", obj[field_name], obj.get("prompt"), config, obj))
    if not out:
        raise InputError(f"{path}: holds no records")
    return out


def read_records(path: str, one_per_line: bool = False, field_name: str = "text") -> list[TextRecord]:
    """Texts in a file: JSONL records, or the whole file (or each non-empty line) as plain text."""
    text = decode_text(path, read_bytes(path))
    if _looks_like_jsonl(path, text):
        return parse_jsonl(path, text, field_name)
    if one_per_line:
        lines = [(n, ln) for n, ln in enumerate(text_lines(text), 1) if ln.strip()]
        return [TextRecord(f"{path}:{n}", ln) for n, ln in lines]
    return [TextRecord(path, text)]


def read_prompts(path: str) -> list[str]:
    """Prompts: JSONL with a `prompt` field, or plain text with one prompt a line."""
    return [r.text for r in read_records(path, one_per_line=True, field_name="prompt")]


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records atomically (temp file + rename); returns how many were written."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, p)
    return n

"""Reading and writing the texts that commands work on: plain text or `wm generate` JSONL.

Every check a user can trip (missing, empty, binary, non-UTF-8, huge, malformed JSONL) raises
`InputError` with one line that names the file, so no command ever scores garbage silently.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..runtime import atomic

MAX_INPUT_BYTES = int(os.environ.get("WM_MAX_INPUT_BYTES", str(64 * 1024 * 1024)))
MAX_RECORDS = int(os.environ.get("WM_MAX_RECORDS", "250000"))  # texts a file; about 1 KB each in memory


@dataclass(slots=True)
class TextRecord:
    """One text to work on; `record` keeps every field of a JSONL line for writing it back."""

    source: str
    text: str
    prompt: str | None = None
    config: dict[str, Any] | None = None
    record: dict[str, Any] = field(default_factory=dict)


def read_bytes(path: str, limit: int | None = None) -> bytes:
    """The bytes of a file or of stdin ("-"), never more than `limit` (default: the input cap).

    Any kind of file works (regular, FIFO, process substitution, character device), and each is
    read with the cap applied while reading, so /dev/zero or an endless pipe stops at the cap
    instead of filling memory; a named FIFO nobody writes to fails after `FIFO_WAIT_SECONDS`.
    """
    limit = MAX_INPUT_BYTES if limit is None else limit
    if path == "-":
        return _read_stdin(limit)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path}: is a directory, not a text file")
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise InputError(f"{path}: too large ({st.st_size} bytes; the limit is {limit})")
        if stat.S_ISFIFO(st.st_mode) and _is_named_fifo(path):
            _wait_for_writer(fd, path)
        os.set_blocking(fd, True)
        return _read_limited(lambda n: os.read(fd, n), path, limit)
    finally:
        os.close(fd)


FIFO_WAIT_SECONDS = float(os.environ.get("WM_FIFO_WAIT", "10"))
_CHUNK = 1 << 20


def _is_named_fifo(path: str) -> bool:
    """A FIFO in a folder (mkfifo), not a pipe handed over as /dev/fd/N (its writer exists)."""
    try:
        return stat.S_ISFIFO(os.lstat(path).st_mode)
    except OSError:
        return False


def _wait_for_writer(fd: int, path: str) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    if not poller.poll(FIFO_WAIT_SECONDS * 1000):
        raise InputError(f"{path}: a FIFO that nobody wrote to within {FIFO_WAIT_SECONDS:g} s")


def _read_stdin(limit: int) -> bytes:
    stream = sys.stdin
    if stream is None:  # started with stdin closed (`wm detect - <&-`)
        raise InputError("stdin is closed: pass a file name, or pipe the text in")
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        fd = None  # an in-memory stream (tests, embedding)
    if fd is None:
        buf = getattr(stream, "buffer", None)
        if buf is None:
            raise InputError("stdin is not readable as bytes")
        reader = getattr(buf, "read1", buf.read)
        return _read_limited(reader, "stdin", limit)
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if not is_dir:
            os.read(fd, 0)  # fails at once when fd 0 is not open for reading (`<&-`, then reused)
    except OSError:
        raise InputError(
            "stdin is closed (or not open for reading): pass a file name, or pipe the text in"
        ) from None
    if is_dir:
        raise InputError("stdin is a directory, not text")
    return _read_limited(lambda n: os.read(fd, n), "stdin", limit)


def _read_limited(read: Callable[[int], bytes], name: str, limit: int) -> bytes:
    """Read until EOF; fail as soon as more than `limit` bytes or a NUL byte arrive."""
    out = bytearray()
    while True:
        try:
            chunk = read(min(_CHUNK, limit + 1 - len(out)))
        except BlockingIOError:
            raise InputError(f"{name}: no data to read (the writer is not ready)") from None
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror or type(exc).__name__})") from None
        if not chunk:
            return bytes(out)
        if b"\x00" in chunk:
            raise InputError(f"{name}: looks binary (contains NUL bytes), expected UTF-8 text")
        out += chunk
        if len(out) > limit:
            raise InputError(f"{name}: too large (more than the limit of {limit} bytes)")


def decode_text(path: str, data: bytes) -> str:
    if b"\x00" in data:
        raise InputError(f"{path}: looks binary (contains NUL bytes), expected UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    if not text or text.isspace():  # (not text.strip(): that copies a 64 MB text)
        raise InputError(f"{path}: is empty")
    return text


def check_text(text: str, what: str) -> str:
    """Refuse a text that is not valid Unicode: a lone surrogate, e.g. from undecodable argv bytes
    (Python turns a non-UTF-8 byte on the command line into U+DC80..U+DCFF)."""
    if _SURROGATE.search(text):
        raise InputError(f"{what} is not valid UTF-8 text (it holds undecodable bytes or a lone surrogate)")
    return text


def text_lines(text: str) -> list[str]:
    """Lines split at "\n" (and "\r\n") only. str.splitlines also splits at U+2028, U+0085 and
    other separators that JSON writes unescaped inside strings (ensure_ascii=False), which would
    cut a JSONL record in two."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


JSONL_SUFFIXES = (".jsonl", ".ndjson")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class _NotJson(Exception):
    """A line that is not JSON at all (plain text that happens to start with '{')."""


def _parse_line(where: str, line: str) -> Any:
    """One JSON value, within the limits: nesting depth, integer size, valid Unicode."""
    try:
        obj = json.loads(line)
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply") from None
    except json.JSONDecodeError:
        raise _NotJson from None
    except ValueError as exc:  # e.g. an integer over Python's 4300-digit conversion limit
        raise InputError(f"{where}: JSON value out of range ({str(exc).split(';')[0]})") from None
    if _SURROGATE_ESCAPE.search(line) and _has_lone_surrogate(obj):
        raise InputError(f"{where}: a JSON string holds a lone surrogate (e.g. \\ud800), which is not text")
    return obj


def _has_lone_surrogate(obj: Any) -> bool:
    """json.loads pairs escaped surrogates into one character, so any surrogate left is alone."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, str):
            if _SURROGATE.search(o):
                return True
        elif isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return False


def iter_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for each line, split as `text_lines` does, without a list of them all."""
    start, n = 0, 1
    while start <= len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        line = text[start:end]
        yield n, line[:-1] if line.endswith("\r") else line
        start, n = end + 1, n + 1


_STARTS_WITH_BRACE = re.compile(r"\s*\{")
_BLANK_LINE = re.compile(r"^[^\S\n]*$", re.MULTILINE)


def _too_many(path: str) -> InputError:
    return InputError(f"{path}: more than {MAX_RECORDS:,} records (WM_MAX_RECORDS); split the file")


def _check_record_count(path: str, text: str) -> None:
    """Refuse a file of more than MAX_RECORDS non-empty lines before building any record."""
    lines = text.count("\n") + 1
    if lines > MAX_RECORDS and lines - len(_BLANK_LINE.findall(text)) > MAX_RECORDS:
        raise _too_many(path)


def parse_jsonl(
    path: str, text: str, field_name: str = "text", sniffing: bool = False
) -> list[TextRecord] | None:
    """Records of a JSONL text. When `sniffing` (the name does not say JSONL), a line that is not
    a JSON object means the file is plain text: None is returned instead of an error."""
    records: list[TextRecord] = []
    field_error: InputError | None = None  # raised once every line is known to be JSON
    for n, line in iter_lines(text):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = _parse_line(where, line)
        except _NotJson:
            if sniffing:
                return None
            raise InputError(f"{where}: not valid JSON (expected one JSON object per line)") from None
        if not isinstance(obj, dict):
            if sniffing:
                return None
            raise InputError(f"{where}: expected a JSON object, got a JSON {type(obj).__name__}")
        if field_error is not None:
            continue
        prompt = obj.get("prompt")
        if not isinstance(obj.get(field_name), str):
            field_error = InputError(f"{where}: expected a JSON object with a string {field_name!r} field")
        elif prompt is not None and not isinstance(prompt, str):
            field_error = InputError(f"{where}: 'prompt' must be a string")
        elif len(records) >= MAX_RECORDS:
            raise _too_many(path)
        else:
            config = obj.get("config") if isinstance(obj.get("config"), dict) else None
            records.append(TextRecord(where, obj[field_name], prompt, config, obj))
    if field_error is not None:
        raise field_error
    if not records:
        raise InputError(f"{path}: holds no records")
    return records


def read_records(
    path: str, one_per_line: bool = False, field_name: str = "text", as_text: bool = False
) -> list[TextRecord]:
    """Texts in a file: JSONL records, or the whole file (or each non-empty line) as plain text.

    A file is JSONL when its name ends in .jsonl/.ndjson, or when every non-empty line is a JSON
    object; anything else (a .txt whose text starts with '{', say) is plain text. A file whose
    lines are mostly JSON objects but not all is refused (`MostlyJsonError`): it is JSONL with a
    broken line, and scoring its syntax as one text answers silently wrong. `as_text` reads any
    file as plain text. At most MAX_RECORDS records a file, so a file of millions of tiny
    records cannot exhaust memory."""
    text = decode_text(path, read_bytes(path))
    jsonl_name = path.lower().endswith(JSONL_SUFFIXES) and not as_text
    if jsonl_name or one_per_line:
        _check_record_count(path, text)
    if jsonl_name:
        return parse_jsonl(path, text, field_name)  # type: ignore[return-value]
    if not as_text and _STARTS_WITH_BRACE.match(text):
        records = parse_jsonl(path, text, field_name, sniffing=True)
        if records is not None:
            return records
        _refuse_mostly_json(path, text, field_name)
    if one_per_line:
        out: list[TextRecord] = []
        for n, ln in iter_lines(text):
            if ln.strip():
                if len(out) >= MAX_RECORDS:
                    raise _too_many(path)
                out.append(TextRecord(f"{path}:{n}", ln))
        return out
    return [TextRecord(path, text)]


class MostlyJsonError(InputError):
    """A file not named .jsonl whose lines are mostly JSON objects, but not all: the error of its
    first bad line, exactly as for a .jsonl file (commands may add how to read it as text)."""


MOSTLY_JSON_MIN_LINES = 2  # one JSON-looking line in a plain text is not "mostly JSON"


def _refuse_mostly_json(path: str, text: str, field_name: str) -> None:
    """Raise the first bad line's error when at least half of the non-empty lines (and at least
    MOSTLY_JSON_MIN_LINES) are JSON objects; return when the file is plain text."""
    objects = lines = 0
    for _, line in iter_lines(text):
        if not line.strip():
            continue
        lines += 1
        if line.lstrip().startswith("{") and _is_json_object(line):
            objects += 1
    if objects < MOSTLY_JSON_MIN_LINES or 2 * objects < lines:
        return
    try:
        parse_jsonl(path, text, field_name)
    except InputError as exc:
        raise MostlyJsonError(str(exc)) from None


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def read_prompts(path: str) -> list[str]:
    """Prompts: JSONL with a `prompt` field, or plain text with one prompt a line."""
    return [r.text for r in read_records(path, one_per_line=True, field_name="prompt")]


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records atomically (unique temp file, fsync, rename); returns how many were written."""
    return atomic.write_jsonl(path, records)

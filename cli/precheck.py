"""Answers to trivial bad input before a command imports its model stack.

`wm detect missing.txt` used to take 3-9 s to say "no such file", because importing the command
imports torch and transformers. The group runs these checks on the raw arguments first (see
`LazyGroup.early`): the --config file, the --key file, then each input file, with the same
functions and so the same one-line errors as the command itself. The arguments are parsed
conservatively: any option the parser does not know (a new flag, a short-option bundle), --help,
or a flag whose checks are not trivial (corpus mode, transformers' key flags) skips the early
checks, and the command then answers as it always did.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from wm_toolkit.watermark.config_resolve import ConfigSource
from wm_toolkit.watermark.keying.hfkeys import load_any_key_file
from wm_toolkit.watermark.text import textio
from wm_toolkit.watermark.text.textio import TextRecord

# `wm detect`'s options that take a value, and its flags; a test keeps both equal to the command's
DETECT_VALUE_OPTIONS = frozenset(
    [
        "--keyring",
        "--hint",
        "--hint-weight",
        "--timeout",
        "--vllm-config",
        "--scheme",
        "--config",
        "--gamma",
        "--delta",
        "--context-width",
        "--key-length",
        "--block-length",
        "--edit-gamma",
        "--edit-statistic",
        "--edit-insert-rate",
        "--edit-skip-rate",
        "--resamples",
        "--max-resamples",
        "--seeding",
        "--ngram-len",
        "--num-layers",
        "--synthid-score",
        "--synthid-candidates",
        "--payload-bits",
        "--entropy-model",
        "--entropy-method",
        "--entropy-threshold",
        "--llr-epsilon",
        "--llr-temperature",
        "--context-history-size",
        "--sampling-table-seed",
        "--sampling-table-size",
        "--model-vocab-size",
        "--hashing-key",
        "--synthid-keys",
        "--hf-config",
        "--key",
        "--model",
        "--alpha",
        "--html",
        "--calibration",
        "--text-field",
        "--workers",
        "-o",
        "--output",
        "--engine",
        "--address",
    ]
)
DETECT_FLAGS = frozenset(
    [
        "--follow",
        "--edit-free-end",
        "--edit-square-window",
        "--count-repeats",
        "--skip-first-ngram-calls",
        "--synthid-distortionary",
        "--llr",
        "--json",
        "--force",
        "--show-tokens",
        "--tokens",
        "--as-text",
        "--override-config",
        "--no-normalize",
        "--spans",
        "--stream",
        "--lines",
    ]
)
# given any of these, the command's own path is the only faithful answer
_SKIP = frozenset(
    [
        "-h",
        "--help",
        "--workers",
        "-o",
        "--output",
        "--stream",
        "--lines",
        "--engine",
        "--address",
        "--hashing-key",
        "--synthid-keys",
        "--hf-config",
    ]
)
# files this small are read in full (JSONL syntax included) twice; larger ones only byte-checked
FULL_CHECK_BYTES = 4 * 1024 * 1024


def parse_detect_args(args: list[str]) -> tuple[dict[str, str | bool], list[str]] | None:
    """(options, files) of a `wm detect` command line; None where the early checks must not run."""
    options: dict[str, str | bool] = {}
    files: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            files.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            files.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in _SKIP:
            return None
        if name in DETECT_FLAGS and not eq:
            options[name] = True
        elif name in DETECT_VALUE_OPTIONS:
            if not eq:
                if i >= len(args):
                    return None  # click says what is missing
                value, i = args[i], i + 1
            options[name] = value
        else:
            return None
    return options, files


def detect_precheck(args: list[str]) -> None:
    """Raise the error `wm detect` would give for a bad --config, --key or input file, if any."""
    parsed = parse_detect_args(args)
    if parsed is None:
        return
    options, files = parsed
    config, key = options.get("--config"), options.get("--key")
    if any(isinstance(p, str) and os.path.isdir(p) for p in (config, key)):
        return  # click's own "is a directory" usage error comes first
    if isinstance(config, str):
        ConfigSource.from_file(config)
    if isinstance(key, str) and key:
        load_any_key_file(key)
    field = options.get("--text-field", "text")
    for path in files:
        _check_input(path, str(field), bool(options.get("--as-text")))


def read_texts(files: Iterable[str], field_name: str, as_text: bool) -> list[TextRecord]:
    """Every record of every file (`textio.read_records`); a file of mostly JSON lines with a
    broken one is refused with the first bad line, and the error says how to read it as text."""
    try:
        return [r for f in files for r in textio.read_records(f, field_name=field_name, as_text=as_text)]
    except textio.MostlyJsonError as exc:
        raise textio.MostlyJsonError(f"{exc}; --as-text reads the file as plain text") from None


def _check_input(path: str, field_name: str, as_text: bool) -> None:
    """Missing, a directory, empty, binary, not UTF-8 (and, when small, malformed JSONL)."""
    if path == "-" or path.lower().endswith(".parquet"):
        return
    try:
        st = os.stat(path)
    except OSError:
        textio.read_bytes(path)  # raises the command's own error for a missing or unreadable file
        return
    if stat.S_ISDIR(st.st_mode):
        textio.read_bytes(path)
    if not stat.S_ISREG(st.st_mode) or st.st_size > textio.MAX_INPUT_BYTES:
        return  # a pipe is read once, by the command; a large JSONL file is streamed
    if st.st_size <= FULL_CHECK_BYTES:
        read_texts([path], field_name, as_text)
    else:
        textio.decode_text(path, textio.read_bytes(path))

"""`wm detect` in corpus mode: records streamed in, one JSON row out per record, in input order.

`cli.detect` hands over here (see `wants_stream`) when the user asks for a corpus run (--workers,
-o, --stream, --lines, --engine) or when an input only a stream can read is given (Parquet, or a
JSONL file over the in-memory cap). The rows are those of `wm detect --json`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import click

from wm_toolkit.watermark.errors import InputError
from wm_toolkit.watermark.runtime import corpus
from wm_toolkit.watermark.text import textio

from .common import err_console


def corpus_options(func):
    """The corpus-mode flags of `wm detect`."""
    opts = [
        click.option(
            "--text-field",
            default="text",
            show_default=True,
            help="The field (JSONL) or column (Parquet) that holds each text.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 512),
            default=None,
            help="Corpus mode: test in N worker processes (the key reaches them in memory only).",
        ),
        click.option(
            "-o",
            "--output",
            "output_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="Corpus mode: write the JSON rows to this file (Parquet when it ends in .parquet), atomically.",
        ),
        click.option(
            "--stream",
            is_flag=True,
            help="Corpus mode: stream the inputs and write one JSON row per record as results come.",
        ),
        click.option(
            "--lines",
            is_flag=True,
            help="Corpus mode: a plain-text input holds one text a line.",
        ),
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="Corpus mode: local processes, or Ray Data (pip install 'wm-toolkit[ray]').",
        ),
        click.option(
            "--address",
            default=None,
            help="With --engine ray: the Ray cluster to join (default: a local Ray on this machine).",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def wants_stream(files: tuple[str, ...], opts: dict[str, Any]) -> bool:
    """Corpus mode when asked for, or when an input cannot be read in memory (Parquet, or a JSONL
    file larger than the in-memory cap, which the in-memory path would refuse)."""
    if opts["workers"] or opts["output_path"] or opts["stream"] or opts["lines"] or opts["engine"] != "local":
        return True
    for f in files:
        name = f.lower()
        if name.endswith(".parquet"):
            return True
        if name.endswith(textio.JSONL_SUFFIXES):
            try:
                if os.stat(f).st_size > textio.MAX_INPUT_BYTES:
                    return True
            except OSError:
                pass
    return False


def check_stream_flags(
    opts: dict[str, Any], show_tokens, with_tokens, html_path, calibration_path, find_spans=False
) -> None:
    """The per-text views need the whole run in memory: refused in corpus mode."""
    for flag, given in (
        ("--spans", find_spans),
        ("--show-tokens", show_tokens),
        ("--tokens", with_tokens),
        ("--html", html_path),
        ("--calibration", calibration_path),
    ):
        if given:
            raise click.UsageError(
                f"{flag} is not available in corpus mode (--workers, -o, --stream, Parquet)"
            )
    if opts.get("address") and opts["engine"] != "ray":
        raise click.UsageError("--address is for --engine ray")


def run_stream(
    files: tuple[str, ...],
    key: Any,
    resolver: Any,
    model: str | None,
    alpha: float,
    normalize: bool,
    opts: dict[str, Any],
    load_tokenizer: Any,
) -> None:
    """Detect every record of `files` and write the rows as they come; exit 2 (one error line) at the
    end when some records could not be tested."""
    plan = corpus.ConfigPlan(
        file=resolver.file,
        flags=resolver.flags,
        model=model,
        default_scheme=resolver.default_scheme,
        load_tokenizer=load_tokenizer,
        warn=lambda m: err_console.print(f"warning: {m}", markup=False, highlight=False),
        other_scheme_ok=getattr(resolver, "override", True),
    )
    counts = [0, 0]  # rows, failures
    with corpus.RowSink(opts["output_path"]) as sink:
        if opts["engine"] == "ray":
            from wm_toolkit.watermark.runtime.engines.ray_engine import detect_files

            rows: Iterator[dict] = detect_files(
                files,
                key,
                plan,
                alpha,
                normalize,
                opts["text_field"],
                opts["lines"],
                opts["address"],
                workers=opts["workers"] or 2,
            )
        else:
            rows = _local_rows(files, key, plan, alpha, normalize, opts)
        for row in rows:
            counts[0] += 1
            counts[1] += "error" in row
            sink.write(row)
            if counts[0] % corpus.BATCH == 0:
                sink.flush()
        sink.flush()
    if opts["output_path"]:
        err_console.print(f"wrote {counts[0]} row(s) to {opts['output_path']}", markup=False, highlight=False)
    if counts[1]:
        raise InputError(f"{counts[1]} of {counts[0]} text(s) could not be tested (see their rows)")


def _local_rows(files, key, plan, alpha, normalize, opts) -> Iterator[dict]:
    records = (r for f in files for r in corpus.iter_corpus(f, opts["text_field"], opts["lines"]))
    # this process is one of the workers, with the tokenizers the plan loaded
    detector = corpus.Detector(key, alpha, normalize, tokenizers=plan._tokenizers)
    for results in corpus.ordered_map(
        corpus.batched(records, plan), key, alpha, normalize, opts["workers"] or 1, detector=detector
    ):
        yield from results

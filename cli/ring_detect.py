"""`wm detect --keyring RING` (every entry, one family-wise verdict) and `wm detect --follow`
(a verdict that updates while the text grows). `cli.detect` hands over here."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from wm_toolkit.watermark.errors import InputError
from wm_toolkit.watermark.runtime import corpus
from wm_toolkit.watermark.runtime.keyring import load_keyring, parse_hint
from wm_toolkit.watermark.runtime.keyring_detect import RingDetector, keyring_row
from wm_toolkit.watermark.text import textio

from .common import console, fmt_p, print_json
from .terminal import visible

OPTIONS = ("keyring_path", "hints", "hint_weight", "follow", "follow_timeout")


def keyring_options(func: Callable) -> Callable:
    opts = [
        click.option("--keyring", "keyring_path", type=click.Path(dir_okay=False), default=None,
                     help="Test against every entry of this keyring (`wm keyring`): per-entry and family-wise p-values."),
        click.option("--hint", "hints", multiple=True, metavar="KEY=VALUE",
                     help="With --keyring: entries named (name=...) or labelled (tenant=...) so get --hint-weight of alpha."),
        click.option("--hint-weight", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5, show_default=True,
                     help="Share of alpha the hinted entries get (1: test only them)."),
        click.option("--follow", is_flag=True,
                     help="Follow a growing file (or stdin) and print an anytime-valid verdict at each update."),
        click.option("--timeout", "follow_timeout", type=click.FloatRange(0.0, min_open=True), default=None,
                     help="With --follow on a file: stop after this many seconds without new text."),
    ]  # fmt: skip
    for opt in reversed(opts):
        func = opt(func)
    return func


def pop_keyring_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in OPTIONS}


def ring_detector(opts: dict[str, Any], alpha: float, normalize: bool) -> RingDetector:
    return RingDetector(load_keyring(opts["keyring_path"]), alpha, normalize)


def run_keyring(
    files, opts, alpha: float, as_json: bool, normalize: bool, field_name: str, streaming: bool
) -> None:
    """Every text against every entry; JSON rows or a table; exit 2 when a text failed."""
    det = ring_detector(opts, alpha, normalize)
    hints = tuple(parse_hint(h) for h in opts["hints"])
    publics = {n: {k: v for k, v in p.items() if k != "config"} for n, p in det.publics().items()}
    if streaming:
        records = (r for f in files for r in corpus.iter_corpus(f, field_name))
        rows = corpus.keyring_rows(records, det, hints, opts["hint_weight"])
    else:
        recs = [r for f in files for r in textio.read_records(f, field_name=field_name)]
        results = det.detect_texts([r.text for r in recs], hints, opts["hint_weight"])
        rows = (
            keyring_row(r.source, res, norm, publics) for r, (res, norm) in zip(recs, results, strict=True)
        )
    failures = 0
    table = _table() if not as_json else None
    for row in rows:
        failures += "error" in row
        if as_json:
            print_json(row)
        else:
            _add_row(table, row)
    if table is not None:
        console.print(table)
    if failures:
        raise InputError(f"{failures} text(s) could not be tested (see above)")


def _table() -> Table:
    table = Table(title="Keyring detection")
    table.add_column("input", overflow="fold", ratio=1)
    table.add_column("match", overflow="fold")
    table.add_column("entry p", justify="right", no_wrap=True)
    table.add_column("family p", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    return table


def _add_row(table: Table, row: dict[str, Any]) -> None:
    source = escape(visible(row["source"], one_line=True))
    if "error" in row:
        table.add_row(source, "-", "-", "-", f"[yellow]error: {escape(visible(row['error'], one_line=True))}")
        return
    best = min(row["entries"], key=lambda e: e["log10_p_value"])
    verdict = "[bold green]watermarked" if row["keyring_match"] else row["verdict"]
    table.add_row(source, escape(visible(row["keyring_match"] or best["name"] + " (best)", one_line=True)),
                  fmt_p(best["p_value"], best["log10_p_value"]),
                  fmt_p(row["family_p_value"], row["family_log10_p_value"]), verdict)  # fmt: skip


# ---- --follow ---------------------------------------------------------------------------------------


def run_follow(files, monitor, as_json: bool, timeout: float | None, poll: float = 0.5) -> None:
    """Print a verdict line per update of a growing file (or stdin) until EOF (stdin), --timeout
    seconds without new text (file), or Ctrl-C; the last line is the final verdict."""
    if len(files) != 1:
        raise click.UsageError("--follow follows one file (or -)")
    path = files[0]
    text, last = "", None
    try:
        for chunk in _chunks(path, timeout, poll):
            text += chunk
            last = monitor.update(text)
            _print_state(last, as_json)
    except KeyboardInterrupt:
        pass
    _print_state(monitor.update(text, final=True), as_json)


def _chunks(path: str, timeout: float | None, poll: float):
    """New text as it arrives: stdin line by line to EOF; a file polled until `timeout` idle."""
    if path == "-":
        yield from sys.stdin
        return
    try:
        fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        idle = 0.0
        while True:
            chunk = fh.read(1 << 16)
            if chunk:
                idle = 0.0
                yield chunk
                continue
            if timeout is not None and idle >= timeout:
                return
            time.sleep(poll)
            idle += poll


def _print_state(state: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(state)
        return
    match = f" ({escape(visible(state['keyring_match'], one_line=True))})" if state["keyring_match"] else ""
    console.print(
        f"{state['tokens']} tokens: {state['verdict']}{match}, anytime p {fmt_p(state['anytime_p_value'])}"
        + (" [final]" if state["final"] else ""),
        highlight=False,
    )


def ring_monitor(opts: dict[str, Any], alpha: float, normalize: bool):
    """A stream monitor over every keyring entry (hint weights as for whole texts)."""
    from wm_toolkit.watermark.runtime.follow import monitor_for

    det = ring_detector(opts, alpha, normalize)
    w = det.weights(tuple(parse_hint(h) for h in opts["hints"]), opts["hint_weight"])
    members = [(m.entry.name, m.scheme, m.tokenizer) for m in det.members]
    return monitor_for(members, det.tokenizers, alpha, w, normalize)


def single_monitor(key: Any, resolver: Any, model: str | None, alpha: float, normalize: bool):
    """A stream monitor for one key and the config the flags and --config give."""
    from wm_toolkit.watermark.config_resolve import bind_tokenizer
    from wm_toolkit.watermark.modeling.models import canonical_name, load_tokenizer
    from wm_toolkit.watermark.runtime.follow import monitor_for
    from wm_toolkit.watermark.schemes import build_scheme

    from .common import with_model_vocab_size

    config = resolver(None, None).config
    name = canonical_name(model or config.tokenizer)
    tok = load_tokenizer(name)
    config = with_model_vocab_size(bind_tokenizer(config, len(tok), name), name)
    return monitor_for([("key", build_scheme(config, key), name)], {name: tok}, alpha, None, normalize)


def run_ring_or_follow(files, ring: dict[str, Any], kwargs: dict[str, Any], key_path, scheme, config_path,
                       model, alpha: float, as_json: bool, normalize: bool, stream_opts, streaming: bool) -> None:  # fmt: skip
    """`wm detect --keyring` / `--follow`: the branch `cli.detect` hands over to."""
    from .common import ConfigResolver, pop_hf_key_options, pop_scheme_flags, resolve_key

    if ring["keyring_path"] and (key_path or config_path or scheme):
        raise click.UsageError(
            "--keyring brings its own keys and configs: not with --key, --config or --scheme"
        )
    if ring["hints"] and not ring["keyring_path"]:
        raise click.UsageError("--hint names keyring entries: give --keyring too")
    if ring["follow"]:
        if streaming:
            raise click.UsageError("--follow reads one growing text: not with the corpus-mode flags")
        if ring["keyring_path"]:
            monitor = ring_monitor(ring, alpha, normalize)
        else:
            flags = pop_scheme_flags(kwargs)
            scheme, flags, secret = pop_hf_key_options(kwargs, scheme, flags)
            resolver = ConfigResolver(scheme, config_path, flags)
            monitor = single_monitor(resolve_key(key_path, secret), resolver, model, alpha, normalize)
        return run_follow(files, monitor, as_json, ring["follow_timeout"])
    return run_keyring(files, ring, alpha, as_json, normalize, stream_opts["text_field"], streaming)

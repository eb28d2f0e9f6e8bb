"""`wm detect`: test texts for a watermark with only the key, the config and the tokenizer."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from watermark.errors import ConfigError, InputError
from watermark.generation import encode_texts
from watermark.models import canonical_name, load_tokenizer
from watermark.schemes import build_scheme
from watermark.textio import read_records

from .common import (
    console,
    fmt_p,
    hf_key_options,
    json_option,
    key_option,
    model_option,
    pop_hf_key_options,
    pop_scheme_flags,
    print_json,
    resolve_config,
    resolve_key,
    scheme_options,
    with_model_vocab_size,
    with_status,
)


def _render_tokens(tok, ids, mask) -> Text:
    text = Text()
    for t, m in zip(ids, mask, strict=False):
        piece = tok.decode([t])
        style = {1: "bold green", 0: "red"}.get(m, "dim")
        text.append(piece, style=style)
    return text


@click.command()
@click.argument("files", nargs=-1, required=True)
@scheme_options
@hf_key_options
@key_option
@model_option(
    "Tokenizer to use (default: the one named in the config, else smollm2-135m). The model is never loaded."
)
@click.option(
    "--alpha",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Significance level for the verdict.",
)
@json_option
@click.option("--show-tokens", is_flag=True, help="Print each text with green/red tokens coloured.")
def detect(files, key_path, model, alpha, as_json, show_tokens, scheme, config_path, **kwargs):
    """Test FILES (plain text, `wm generate` JSONL, or - for stdin) for the watermark."""
    flags = pop_scheme_flags(kwargs)
    scheme, flags, secret = pop_hf_key_options(kwargs, scheme, flags)
    key = resolve_key(key_path, secret)
    records = [r for f in files for r in read_records(f)]
    tokenizers: dict[str, object] = {}
    schemes: dict[str, object] = {}
    rows = []
    failures = 0
    for rec in records:
        try:
            config = resolve_config(scheme, config_path, flags, rec.config)
            tok_name = canonical_name(model or config.tokenizer)
            if tok_name not in tokenizers:
                with with_status(f"Loading tokenizer {tok_name}"):
                    tokenizers[tok_name] = load_tokenizer(tok_name)
            tok = tokenizers[tok_name]
            if config.vocab_size is not None and config.vocab_size != len(tok):
                raise ConfigError(
                    f"tokenizer {tok_name!r} has {len(tok)} tokens but the config was made for {config.vocab_size}: "
                    "pass --model with the generating model's tokenizer"
                )
            config = config.replace(vocab_size=len(tok), tokenizer=config.tokenizer or tok_name)
            config = with_model_vocab_size(config, tok_name)
            ck = config.to_json()
            if ck not in schemes:
                schemes[ck] = build_scheme(config, key)
            ids = encode_texts(tok, [rec.text])[0]
            det = schemes[ck].detect(ids, alpha=alpha)
        except InputError as exc:  # too short, bad text: reported per record, exit 2 at the end
            failures += 1
            rows.append({"source": rec.source, "error": str(exc)})
            continue
        row = {"source": rec.source, **det.to_dict(alpha)}
        rows.append(row)
        if show_tokens and not as_json:
            mask = getattr(det, "token_mask", ()) or [-1] * len(ids)
            console.rule(rec.source)
            console.print(_render_tokens(tok, ids, mask))
    if as_json:
        for row in rows:
            print_json(row)
    else:
        _print_table(rows)
    if failures:
        raise InputError(f"{failures} of {len(rows)} text(s) could not be tested (see above)")


def _print_table(rows: list[dict]) -> None:
    table = Table(title="Watermark detection")
    table.add_column("input", overflow="fold", ratio=1)
    table.add_column("scheme", no_wrap=True)
    for col in ("tokens", "green", "z", "p-value"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True, min_width=11)
    for r in rows:
        if "error" in r:
            table.add_row(r["source"], "-", "-", "-", "-", "-", f"[yellow]error: {r['error']}")
            continue
        gf = r.get("green_fraction")
        z = r.get("z_score")
        verdict = {
            "watermarked": "[bold green]watermarked",
            "inconclusive": f"[yellow]inconclusive: {r.get('inconclusive_reason', '')}",
        }.get(r["verdict"], r["verdict"])
        table.add_row(
            r["source"],
            r["scheme"],
            str(r["num_tokens_scored"]),
            "-" if gf is None else f"{gf:.3f}",
            "-" if z is None else f"{z:.2f}",
            fmt_p(r["p_value"], r.get("log10_p_value")),
            verdict,
        )
    console.print(table)

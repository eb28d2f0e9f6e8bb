"""`wm detect`: test texts for a watermark with only the key, the config and the tokenizer."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from wm_toolkit.watermark.config_resolve import bind_tokenizer
from wm_toolkit.watermark.errors import InputError
from wm_toolkit.watermark.modeling.models import canonical_name, load_tokenizer
from wm_toolkit.watermark.runtime.report import detection_row, span_fields
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.spans import spans_in_text
from wm_toolkit.watermark.statistics.calibration import Calibration
from wm_toolkit.watermark.text.encoding import encode_array
from wm_toolkit.watermark.text.normalize import NormalizationReport, canonicalize

from .common import (
    ConfigResolver,
    check_outputs,
    conflicts_json,
    console,
    err_console,
    fmt_p,
    force_option,
    hf_key_options,
    json_option,
    key_option,
    model_option,
    override_config_option,
    pop_hf_key_options,
    pop_scheme_flags,
    print_json,
    resolve_key,
    scheme_options,
    with_model_vocab_size,
    with_status,
)
from .corpus import check_stream_flags, corpus_options, run_stream, wants_stream
from .entropy import EntropyWeigher, check_entropy_flags, entropy_options, pop_entropy_options
from .llr import LLRScorer, check_llr_flags, llr_options, pop_llr_options
from .precheck import read_texts
from .report import TokenViews, span_ranges
from .ring_detect import keyring_options, pop_keyring_options, run_ring_or_follow
from .terminal import visible
from .vllm import pop_vllm_options, vllm_options


@click.command()
@click.argument("files", nargs=-1, required=True)
@scheme_options
@hf_key_options
@vllm_options
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
@force_option
@click.option(
    "--show-tokens",
    is_flag=True,
    help="Print each text with green/red tokens and a legend (colours on a terminal, [+tok]/[-tok] markers in pipes).",
)
@click.option(
    "--tokens",
    "with_tokens",
    is_flag=True,
    help="With --json: add token_mask and the tokens (text, offsets).",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a self-contained HTML report with the tokens coloured (it shows green lists: share with care).",
)
@click.option(
    "--as-text",
    is_flag=True,
    help="Read every FILE as plain text, even one whose lines look like JSON (a file of mostly "
    "JSON lines with a broken one is otherwise refused).",
)
@override_config_option
@click.option(
    "--no-normalize",
    is_flag=True,
    help="Score the raw text: no canonical form (invisible characters, look-alikes, odd spaces kept).",
)
@click.option(
    "--spans",
    "find_spans",
    is_flag=True,
    help="Also find where the watermark is: per text, `spans` (character and token ranges) and a "
    "span test p-value valid over every window scanned; spans are marked in the table, --show-tokens and --html.",
)
@click.option(
    "--calibration",
    "calibration_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Calibration from `wm calibrate` (same key and config): adds calibrated_p_value and decides with it.",
)
@entropy_options
@llr_options
@corpus_options
@keyring_options
def detect(
    files, key_path, model, alpha, as_json, show_tokens, with_tokens, html_path, scheme, config_path, **kwargs
):
    """Test FILES (plain text, `wm generate` JSONL, or - for stdin) for the watermark."""
    no_normalize, calibration_path = kwargs.pop("no_normalize"), kwargs.pop("calibration_path")
    find_spans = kwargs.pop("find_spans")
    as_text = kwargs.pop("as_text")
    entropy = pop_entropy_options(kwargs)  # cli/entropy.py
    llr = pop_llr_options(kwargs)  # cli/llr.py
    stream_opts = {
        k: kwargs.pop(k)
        for k in ("text_field", "workers", "output_path", "stream", "lines", "engine", "address")
    }
    streaming = wants_stream(files, stream_opts)  # corpus mode: cli/corpus.py
    check_entropy_flags(entropy, {"corpus mode": streaming, "--spans": find_spans, "--calibration": calibration_path, "--keyring": kwargs.get("keyring_path"), "--follow": kwargs.get("follow")})  # fmt: skip
    check_llr_flags(llr, {"corpus mode": streaming, "--spans": find_spans, "--calibration": calibration_path, "--keyring": kwargs.get("keyring_path"), "--follow": kwargs.get("follow"), "--entropy-model": entropy})  # fmt: skip
    if (ring := pop_keyring_options(kwargs))["keyring_path"] or ring["follow"]:  # cli/ring_detect.py
        return run_ring_or_follow(files, ring, kwargs, key_path, scheme, config_path, model, alpha, as_json, not no_normalize, stream_opts, streaming)  # fmt: skip
    if streaming and as_text:
        raise click.UsageError("--as-text reads whole files in memory: not with the corpus-mode flags")
    if streaming:
        check_stream_flags(stream_opts, show_tokens, with_tokens, html_path, calibration_path, find_spans)
    if with_tokens and not as_json:
        raise click.UsageError("--tokens adds the per-token view to --json output: give --json too")
    flags = pop_scheme_flags(kwargs)
    scheme, flags, secret = pop_hf_key_options(kwargs, scheme, flags)
    scheme, flags, vllm_secret = pop_vllm_options(kwargs, scheme, flags, key_path)
    secret = secret if vllm_secret is None else vllm_secret
    resolver = ConfigResolver(scheme, config_path, flags)
    views = TokenViews(console, show_tokens and not as_json, html_path)
    check_outputs([html_path, stream_opts["output_path"]], files, key_path)
    key = resolve_key(key_path, secret)
    if streaming:
        return run_stream(files, key, resolver, model, alpha, not no_normalize, stream_opts, load_tokenizer)
    calib = Calibration.load(calibration_path) if calibration_path else None
    records = read_texts(files, stream_opts["text_field"], as_text)
    _detect_records(
        records,
        resolver,
        key,
        views,
        calib,
        model=model,
        alpha=alpha,
        normalize=not no_normalize,
        find_spans=find_spans,
        with_tokens=with_tokens,
        html_path=html_path,
        as_json=as_json,
        entropy=entropy and EntropyWeigher(entropy),
        llr=llr and LLRScorer(llr, model),
    )


def _detect_records(
    records,
    resolver,
    key,
    views,
    calib,
    *,
    model,
    alpha,
    normalize,
    find_spans,
    with_tokens,
    html_path,
    as_json,
    entropy=None,
    llr=None,
) -> None:
    """Detect each record in memory and report them all (table, --json lines, --html page); a
    record that cannot be tested is reported in its row and makes the exit status 2 at the end."""
    tokenizers: dict[str, object] = {}
    schemes: dict[str, object] = {}
    rows = []
    calibrated: list[tuple[dict, object]] = []  # (row, ids) of each calibrated detection
    failures = 0
    for rec in records:
        try:
            resolved, tok, ck = _record_scheme(rec, resolver, model, key, tokenizers, schemes)
            # the canonical text is what gets tokenised, scored and shown (token offsets refer to it)
            text, norm = (
                canonicalize(rec.text, offsets=find_spans) if normalize else (rec.text, NormalizationReport())
            )
            ids = encode_array(tok, text)
            if calib is not None:
                calib.check(schemes[ck], normalize=normalize)
            # calibrated: the same full test the natural texts got (their p-values did not depend on alpha)
            if llr is not None:  # cli/llr.py: its row holds the model-free test too
                det = llr.detect(schemes[ck], tok, ids, rec.prompt)
            else:
                det = schemes[ck].detect(ids, alpha=None if calib is not None else alpha) if entropy is None else entropy.detect(schemes[ck], tok, ids)  # fmt: skip
            found = spans_in_text(schemes[ck], tok, text, ids, alpha) if find_spans else None
        except InputError as exc:  # too short, bad text: reported per record, exit 2 at the end
            failures += 1
            rows.append({"source": rec.source, "error": str(exc)})
            views.add(rows[-1], rec.text)
            continue
        pieces = views.pieces(tok, text, ids, det) if (with_tokens or views.show or html_path) else None
        row = detection_row(
            rec.source,
            det,
            alpha,
            pieces if with_tokens else None,
            config=schemes[ck].config.to_dict(),
            config_conflicts=conflicts_json(resolved),
        )
        _add_fields(row, det, alpha, calib, norm if normalize else None, (found,) if find_spans else None)
        if normalize and norm.tampered and not as_json:
            err_console.print(
                f"[yellow]warning: {escape(visible(rec.source, one_line=True))}: {norm.warning()}"
            )
        rows.append(row)
        calibrated += [(row, ids)] if calib is not None else []
        views.add(row, text, pieces, det, schemes[ck].config.key_fingerprint, span_ranges(found))
    if calib is not None:
        _check_calibration(calib, calibrated, alpha)
    if html_path:
        err_console.print(f"wrote {visible(str(views.write(alpha)), one_line=True)}")
    if as_json:
        for row in rows:
            print_json(row)
    else:
        _print_table(rows, find_spans)
    if failures:
        raise InputError(f"{failures} of {len(rows)} text(s) could not be tested (see above)")


def _record_scheme(rec, resolver, model, key, tokenizers: dict, schemes: dict):
    """A record's resolved config, its tokenizer and the key of its scheme in `schemes`; each
    tokenizer and scheme is built once per run. -> (resolved, tokenizer, scheme key)"""
    resolved = resolver(rec.config, rec.source)
    config = resolved.config
    tok_name = canonical_name(model or config.tokenizer)
    if tok_name not in tokenizers:
        with with_status(f"Loading tokenizer {tok_name}"):
            tokenizers[tok_name] = load_tokenizer(tok_name)
    tok = tokenizers[tok_name]
    config = with_model_vocab_size(bind_tokenizer(config, len(tok), tok_name), tok_name)
    ck = config.to_json()
    if ck not in schemes:
        schemes[ck] = build_scheme(config, key)
    return resolved, tok, ck


def _add_fields(row: dict, det, alpha: float, calib, norm: NormalizationReport | None, spans) -> None:
    """The optional parts of a detection row: the calibrated p-value, what canonicalisation
    changed (`norm`, None without it) and the spans (`spans`: (found,) with --spans, else None)."""
    if spans is not None:  # JSON offsets index the input text; the views show the canonical one
        (found,) = spans
        offsets = norm.offsets if norm is not None else None  # None: identity
        row.update(span_fields(found and found.mapped_to(offsets), alpha, det.scheme))
    if calib is not None:
        row.pop("inconclusive_reason", None)
        row.update(calib.fields(det, alpha))
    if norm is not None:
        row.update(norm.to_dict())


def _check_calibration(calib: Calibration, calibrated: list, alpha: float) -> None:
    """Does each tested text look like the calibration texts (length, repetition; the batch by a
    KS test)? Sets each row's `calibration_mismatch` and warns in one line per kind of problem."""
    batch = calib.batch_mismatch([ids for _, ids in calibrated])
    bad = []
    for row, ids in calibrated:
        row["calibration_mismatch"] = calib.mismatch(ids) or batch
        if row["calibration_mismatch"]:
            bad.append(row)
    warnings = []
    if calib.text_stats is None:
        warnings.append("the calibration file (format version 1) has no text statistics, so whether the "
                        "texts match it is not checked: run `wm calibrate` again")  # fmt: skip
    if bad:
        first = f"{visible(bad[0]['source'], one_line=True)}: {bad[0]['calibration_mismatch']}"
        warnings.append(f"{len(bad)} of {len(calibrated)} text(s) do not look like the calibration texts, "
                        f"so their calibrated p-values may not hold ({first})")  # fmt: skip
    if calibrated and (size := calib.size_warning(alpha)):
        warnings.append(size)
    for w in warnings:
        err_console.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)


def _print_table(rows: list[dict], with_spans: bool = False) -> None:
    table = Table(title="Watermark detection")
    table.add_column("input", overflow="fold", ratio=1)
    table.add_column("scheme", no_wrap=True)
    numbers = ("tokens", "p-value") if with_spans else ("tokens", "green", "z", "p-value")
    for col in numbers:  # with spans, green and z (in --json) leave room for the spans
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True, min_width=11)
    if with_spans:
        table.add_column("span p", justify="right", no_wrap=True)
        table.add_column("spans (chars)", min_width=9, overflow="fold")
    for r in rows:
        source = escape(visible(r["source"], one_line=True))
        if "error" in r:
            table.add_row(
                source,
                "-",
                *["-"] * len(numbers),
                f"[yellow]error: {escape(visible(r['error'], one_line=True))}",
                *(("-", "-") if with_spans else ()),
            )
            continue
        gf = r.get("green_fraction")
        z = r.get("z_score")
        verdict = {
            "watermarked": "[bold green]watermarked",
            "inconclusive": f"[yellow]inconclusive: {r.get('inconclusive_reason', '')}",
        }.get(r["verdict"], r["verdict"])
        verdict += _notes(r)
        table.add_row(
            source,
            r["scheme"],
            str(r["num_tokens_scored"]),
            *(() if with_spans else ("-" if gf is None else f"{gf:.3f}", "-" if z is None else f"{z:.2f}")),
            fmt_p(r["p_value"], r.get("log10_p_value")),
            verdict,
            *(_span_cells(r) if with_spans else ()),
        )
    console.print(table)


def _notes(r: dict) -> str:
    """Calibrated p-value and signs of tampering, as a note after the verdict."""
    notes = []
    if "llr_log10_p_value" in r:  # --llr: the p-value shown is the LLR's
        notes.append(f"LLR; model-free p {fmt_p(r['model_free_p_value'], r['model_free_log10_p_value'])}")
    if "calibrated_p_value" in r:
        notes.append(f"calibrated p {fmt_p(r['calibrated_p_value'])}")
    if r.get("calibration_mismatch"):
        notes.append("unlike the calibration texts")
    tampering = {k: n for k, n in (r.get("tampering") or {}).items() if n}
    if tampering:
        notes.append("tampering: " + ", ".join(f"{n} {k}" for k, n in tampering.items()))
    return f" [dim]({'; '.join(notes)})[/dim]" if notes else ""


def _span_cells(r: dict) -> tuple[str, str]:
    """The span test's p-value and the spans found (character ranges, end exclusive)."""
    if "span_p_value" not in r:
        return "-", r.get("spans_note", "-")
    p = fmt_p(r["span_p_value"], r.get("span_log10_p_value"))
    if r["span_verdict"] == "watermarked":
        p = f"[bold green]{p}"
    spans = [f"{s['start_char']}-{s['end_char']}" for s in r["spans"]]
    return p, ", ".join(spans) or "none"

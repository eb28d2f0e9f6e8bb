"""`wm calibrate NATURAL -o calib.json`: this key's null p-values on the user's own natural text."""

from __future__ import annotations

import click

from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.modeling.generation import encode_texts
from wm_toolkit.watermark.modeling.models import canonical_name, load_tokenizer
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.statistics.calibration import Calibration, calibrate
from wm_toolkit.watermark.text.textio import read_records

from .common import (
    check_outputs,
    err_console,
    force_option,
    json_option,
    key_option,
    load_key,
    model_option,
    pop_scheme_flags,
    print_json,
    progress,
    resolve_config,
    scheme_options,
    with_status,
)


@click.command("calibrate")
@click.argument("files", nargs=-1, required=True)
@scheme_options
@key_option
@model_option("Tokenizer (default: the one named in the config, else smollm2-135m).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), required=True, help="Write the calibration JSON here."
)
@click.option("--no-normalize", is_flag=True, help="Score raw text (then detect with --no-normalize too).")
@click.option(
    "--one-per-line",
    is_flag=True,
    help="Plain-text FILES hold one natural text per line (default: one per file).",
)
@force_option
@json_option
def calibrate_command(
    files, key_path, model, output, no_normalize, one_per_line, as_json, scheme, config_path, **kwargs
):
    """Measure this key's null on unwatermarked FILES (JSONL with `text`, or plain text).

    `wm detect --calibration FILE` then adds `calibrated_p_value` = (1 + #{natural p <= p}) / (N + 1)
    and decides the verdict with it: valid when the text is exchangeable with the natural texts
    (same source, similar length; detection warns when a text does not look like them). Use texts
    the key never watermarked, about 10/alpha of them.
    """
    flags = pop_scheme_flags(kwargs)
    check_outputs([output], [*files, config_path], key_path)
    key = load_key(key_path)
    records = [r for f in files for r in read_records(f, one_per_line=one_per_line)]
    config = resolve_config(scheme, config_path, flags, None)
    tok_name = canonical_name(model or config.tokenizer)
    with with_status(f"Loading tokenizer {tok_name}"):
        tok = load_tokenizer(tok_name)
    if config.vocab_size is not None and config.vocab_size != len(tok):
        raise ConfigError(
            f"tokenizer {tok_name!r} has {len(tok)} tokens but the config was made for {config.vocab_size}: "
            "pass --model with the generating model's tokenizer"
        )
    config = config.replace(vocab_size=len(tok), tokenizer=config.tokenizer or tok_name)
    sch = build_scheme(config, key)
    ids = encode_texts(tok, [r.text for r in records], normalize=not no_normalize)
    with progress() as bar:
        task = bar.add_task("Calibrating", total=len(ids))
        calib: Calibration = calibrate(sch, ids, not no_normalize, on_item=lambda n: bar.advance(task, n))
    calib.save(output)
    summary = {
        "output": output,
        "scheme": config.scheme,
        "key_fingerprint": calib.key_fingerprint,
        "num_texts": calib.num_texts,
        "skipped_too_short": calib.skipped,
        "floor": calib.floor,
        "share_p_below": {str(a): calib.share_below(a) for a in (0.05, 0.01, 0.001)},
    }
    if as_json:
        print_json(summary)
    else:
        shares = ", ".join(f"{calib.share_below(a):.3f} at p <= {a:g}" for a in (0.05, 0.01, 0.001))
        err_console.print(
            f"wrote {output}: {calib.num_texts} natural texts ({calib.skipped} too short, skipped), smallest "
            f"calibrated p-value {calib.floor:.3g}; this key's analytic false-positive share: {shares}"
        )

"""`wm attack KIND INPUT -o OUTPUT`: apply one attack to plain text or `wm generate` JSONL.

A click group with one subcommand per kind; every kind goes through `attacks.registry`, the same
dispatch `wm eval` uses. JSONL in gives JSONL out: each record keeps its fields (`config`
included) with `text` replaced and an `attack` field added (kind, strength, seed, options and
`fraction_changed`). Plain text in gives the attacked plain text out.

Kinds defined in other modules are listed in `ELSEWHERE` and imported when asked for (`scrub` and
`spoof` live in cli/steal.py); `attack_options()` is the shared INPUT / -o / --rate / --seed / --model
decorator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from wm_toolkit.attacks.registry import AttackContext, AttackSpec, apply_attack, check_strength, get_attack
from wm_toolkit.attacks.unicode import MODES as UNICODE_MODES
from wm_toolkit.watermark.config_resolve import resolve_record
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.modeling.models import DEFAULT_MODEL, canonical_name, load_model, load_tokenizer
from wm_toolkit.watermark.runtime.atomic import write_text
from wm_toolkit.watermark.text.textio import TextRecord, decode_text, read_bytes, read_records, write_jsonl

from .common import (
    SEED_RANGE,
    check_outputs,
    err_console,
    force_option,
    json_option,
    print_json,
    progress,
    with_status,
)
from .lazy import LazyGroup

# kind -> (module, attribute) of the commands defined elsewhere, imported on first use
ELSEWHERE: dict[str, tuple[str, str]] = {
    "scrub": (".steal", "scrub_command"),
    "spoof": (".steal", "spoof_command"),
}


class AttackGroup(LazyGroup):
    """The attack kinds, with `ELSEWHERE`'s loaded when named or listed (not only after some other
    import happened to register them)."""

    lazy = ELSEWHERE


@click.group("attack", cls=AttackGroup)
def attack() -> None:
    """Attack watermarked texts: random edits, word edits, neighbours, paraphrase, dilution, unicode.

    Strengths: token/word kinds take --rate (fraction of tokens/words edited), dilute and copy-paste
    the watermarked fraction, paraphrase a temperature. MarkMyWords / WaterPark text attacks: typo,
    misspelling, contraction, expansion, lowercase, swap, copy-paste, scramble, emoji (strip; its
    prompts with emoji-prompts). The output says what changed.
    """


def attack_options(rate_help: str | None = "Fraction of tokens to edit.", rate_default: float | None = None):
    """INPUT, -o/--output, --seed, --model, --json and (unless rate_help is None) --rate."""

    def wrap(func: Callable) -> Callable:
        opts = [
            click.argument("input_path", metavar="INPUT"),
            click.option(
                "-o",
                "--output",
                type=click.Path(dir_okay=False),
                required=True,
                help="Write the attacked texts here (same format as INPUT).",
            ),
            click.option(
                "--seed",
                type=SEED_RANGE,
                default=0,
                show_default=True,
                help="Seed: same seed, same output.",
            ),
            click.option(
                "--model",
                default=None,
                help="Model/tokenizer to use (default: the one in the input's config, else smollm2-135m).",
            ),
            json_option,
            force_option,
        ]
        if rate_help is not None:
            opts.insert(
                2,
                click.option(
                    "--rate",
                    type=click.FloatRange(0.0, 1.0),
                    default=rate_default,
                    show_default=rate_default is not None,
                    help=rate_help,
                ),
            )
        for opt in reversed(opts):
            func = opt(func)
        return func

    return wrap


def _read(input_path: str) -> tuple[list[TextRecord], bool, bool]:
    """(records, is_jsonl, plain text ended with a newline)."""
    records = read_records(input_path)
    is_jsonl = bool(records[0].record)
    trailing = False
    if not is_jsonl:
        trailing = decode_text(input_path, read_bytes(input_path)).endswith("\n")
        if input_path == "-":
            raise click.UsageError("plain text from stdin cannot be re-read; pass a file")
    return records, is_jsonl, trailing


def _tokenizer_name(records: list[TextRecord], model: str | None) -> str:
    """--model, else the tokenizer the first record's (checked) config names, else the default."""
    cfg = records[0].config
    if model or not cfg:
        return canonical_name(model or DEFAULT_MODEL)
    config = resolve_record(cfg, records[0].source)
    return canonical_name(config.config.tokenizer or DEFAULT_MODEL)


def run_attack_command(
    kind_name: str,
    input_path: str,
    output: str,
    seed: int,
    model: str | None,
    as_json: bool,
    strength: float | None = None,
    mode: str | None = None,
    options: dict[str, Any] | None = None,
    donor_path: str | None = None,
    detector_tokenizer: bool = True,
    other_inputs: tuple[str | None, ...] = (),
) -> None:
    """Read, attack, write. `detector_tokenizer`: measure changes with the input's tokenizer
    (not the attack model's), as for paraphrasing with another model."""
    kind = get_attack(kind_name)
    check_outputs([output], [input_path, donor_path, *other_inputs])
    strength = kind.default_strength if strength is None else strength
    if strength is not None:
        check_strength(kind, strength)
    records, is_jsonl, trailing = _read(input_path)
    donors = None
    if kind.needs_donors and not donor_path:
        raise click.UsageError(f"{kind_name} needs --donor FILE with unwatermarked text")
    if donor_path:
        donors = [r.text for r in read_records(donor_path, one_per_line=False)]
    tok_name = _tokenizer_name(records, None if detector_tokenizer else model)
    model_name = canonical_name(model or tok_name)
    loaded: dict[str, Any] = {}

    def loader():
        if "m" not in loaded:
            with with_status(f"Loading {model_name}"):
                loaded["m"] = load_model(model_name)
        return loaded["m"]

    with with_status(f"Loading tokenizer {tok_name}"):
        tok = load_tokenizer(tok_name)
    if kind.needs_model and not detector_tokenizer:
        tok = loader()[1]
    opts = dict(options or {})
    spec = AttackSpec(
        kind.name, strength, mode if mode is not None else (kind.modes[0] if kind.modes else None)
    )
    base = AttackContext(
        tokenizer=tok,
        seed=seed,
        model_loader=loader if kind.needs_model else None,
        donors=donors,
        prompts=[r.prompt for r in records],
        options=opts,
    )
    results = _attack_with_progress(spec, [r.text for r in records], base)
    _write_attacked(output, records, results, is_jsonl, trailing)
    mean_changed = sum(r.fraction_changed for r in results) / len(results)
    summary = {
        "output": output,
        "records": len(results),
        "attack": spec.label,
        "params": results[0].params,
        "mean_fraction_changed": mean_changed,
    }
    if as_json:
        print_json(summary)
    else:
        err_console.print(
            f"wrote {len(results)} record(s) to {output} ({spec.label}, mean fraction of tokens changed "
            f"{mean_changed:.3f})"
        )


def _attack_with_progress(spec: AttackSpec, texts: list[str], base: AttackContext) -> list[Any]:
    """`apply_attack` with a bar over the texts and, for a long text, one over its inner steps."""
    with progress() as bar:
        task = bar.add_task(f"Attacking ({spec.label})", total=len(texts))
        inner: list[Any] = []  # one task for the steps inside a long text, made when one reports

        def on_progress(stage: str, done: int, total: int) -> None:
            if not inner:
                inner.append(bar.add_task(stage, total=total))
            bar.update(inner[0], description=stage, completed=done, total=total)

        ctx = dataclasses.replace(base, on_item=lambda n: bar.advance(task, n), on_progress=on_progress)
        return apply_attack(spec, texts, ctx)


def _write_attacked(output: str, records, results, is_jsonl: bool, trailing: bool) -> None:
    """JSONL input: each record with its attacked text and what the attack did; plain text: the
    one attacked text, keeping the input's final newline."""
    if is_jsonl:
        write_jsonl(
            output,
            (
                {
                    **rec.record,
                    "text": res.text,
                    "num_tokens": len(res.token_ids),
                    "attack": {**res.params, "fraction_changed": round(res.fraction_changed, 6)},
                }
                for rec, res in zip(records, results, strict=True)
            ),
        )
    else:
        text = results[0].text + ("\n" if trailing and not results[0].text.endswith("\n") else "")
        write_text(output, text)


def _edit_command(name: str, help_text: str, rate_help: str) -> click.Command:
    @attack_options(rate_help, rate_default=None)
    def command(input_path, output, rate, seed, model, as_json):
        run_attack_command(name, input_path, output, seed, model, as_json, strength=rate)

    command.__doc__ = help_text
    return click.command(name)(command)


for _name, _doc, _rate in (
    (
        "substitute",
        "Replace a fraction of tokens by uniformly random tokens.",
        "Fraction of tokens (default 0.1).",
    ),
    (
        "insert",
        "Insert uniformly random tokens (rate x length of them).",
        "Insertions per token (default 0.1).",
    ),
    ("delete", "Delete a fraction of tokens.", "Fraction of tokens (default 0.1)."),
    (
        "word-substitute",
        "Replace a fraction of words by a synonym or a common word (stays readable).",
        "Fraction of words (default 0.1).",
    ),
    ("word-delete", "Delete a fraction of words.", "Fraction of words (default 0.1)."),
):
    attack.add_command(_edit_command(_name, _doc, _rate))


@attack.command("neighbour")
@attack_options("Fraction of word tokens to replace (default 0.2).")
@click.option("--k", type=click.IntRange(1), default=1, show_default=True, help="Draw among the k nearest.")
def neighbour_command(input_path, output, rate, seed, model, as_json, k):
    """Replace word tokens by their nearest neighbours in the model's input-embedding space."""
    run_attack_command(
        "neighbour",
        input_path,
        output,
        seed,
        model,
        as_json,
        strength=rate,
        options={"k": k},
        detector_tokenizer=False,
    )


@attack.command("dilute")
@attack_options("Fraction of the result that stays watermarked (default 0.25).")
@click.option(
    "--donor",
    "donor_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Unwatermarked text (plain or JSONL); record i uses donor i mod #donors.",
)
@click.option("--spans", type=click.IntRange(1), default=1, show_default=True, help="Watermarked pieces.")
def dilute_command(input_path, output, rate, seed, model, as_json, donor_path, spans):
    """Embed each watermarked text in unwatermarked donor text (copy-paste attack)."""
    if rate == 0.0:
        raise ConfigError("dilute: the watermarked fraction must be above 0")
    run_attack_command(
        "dilute",
        input_path,
        output,
        seed,
        model,
        as_json,
        strength=rate,
        options={"spans": spans},
        donor_path=donor_path,
    )


@attack.command("paraphrase")
@attack_options(rate_help=None)
@click.option("--temperature", type=click.FloatRange(0.0, 5.0), default=0.7, show_default=True)
@click.option("--mode", type=click.Choice(["sentence", "whole"]), default="sentence", show_default=True)
@click.option("--prompt", "prompt_text", default=None, help="Prompt template with a {text} slot.")
@click.option("--prompt-file", type=click.Path(dir_okay=False), default=None, help="Read the template here.")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True)
def paraphrase_command(
    input_path, output, seed, model, as_json, temperature, mode, prompt_text, prompt_file, batch_size
):
    """Rewrite with an instruction model run without a watermark (--model: default model or an HF id)."""
    if prompt_text and prompt_file:
        raise click.UsageError("give --prompt or --prompt-file, not both")
    if prompt_file:
        prompt_text = decode_text(prompt_file, read_bytes(prompt_file))
    options: dict[str, Any] = {"batch_size": batch_size}
    if prompt_text:
        from wm_toolkit.attacks.paraphrase import check_prompt

        options["prompt"] = check_prompt(prompt_text)
    if model:
        options["paraphrase_model"] = canonical_name(model)
    run_attack_command(
        "paraphrase",
        input_path,
        output,
        seed,
        model,
        as_json,
        strength=temperature,
        mode=mode,
        options=options,
        other_inputs=(prompt_file,),
    )


@attack.command("unicode")
@attack_options("Fraction of the mode's sites to edit (default 1.0: all).")
@click.option(
    "--mode",
    type=click.Choice(list(UNICODE_MODES)),
    default="zwsp",
    show_default=True,
    help="zwsp: zero-width space after each space; zwsp-chars, zwj, zwnj, wordjoiner, softhyphen, bidi: "
    "between characters; bom: after each word; homoglyph(-greek): Cyrillic (Greek) look-alikes; "
    "fullwidth, mathfont: other code points for ASCII; nbsp, thinspace, ideographic, doublespace, tab: "
    "for the spaces between words.",
)
def unicode_command(input_path, output, rate, seed, model, as_json, mode):
    """Invisible characters, look-alikes or odd spaces: the text looks the same, its tokens do not.

    `wm detect` undoes all of these (see watermark/text/normalize.py) and reports them as tampering.
    """
    run_attack_command("unicode", input_path, output, seed, model, as_json, strength=rate, mode=mode)


# MarkMyWords / WaterPark text attacks (attacks/text_kinds.py): --rate is the fraction of sites
for _name, _doc, _rate in (
    (
        "misspelling",
        "Misspell words from a list of common misspellings (data/misspellings.tsv).",
        "Fraction of the words the list knows (default 0.5).",
    ),
    (
        "contraction",
        "Contract expanded forms: do not -> don't (case kept).",
        "Fraction of the sites (default 1.0).",
    ),
    (
        "expansion",
        "Expand contractions: don't -> do not (case kept).",
        "Fraction of the sites (default 1.0).",
    ),
    (
        "lowercase",
        "Lowercase the whole text, or a fraction of its capitalised words.",
        "Fraction of the capitalised words (default 1.0: the whole text).",
    ),
    (
        "swap",
        "Swap adjacent words (the multiset of words is kept).",
        "Fraction of words moved (default 0.1).",
    ),
    ("scramble", "Shuffle the order of the sentences.", "Fraction of the sentences shuffled (default 1.0)."),
    (
        "emoji",
        "Strip emojis put between words (the emoji attack's text side; see emoji-prompts).",
        "Fraction of the emoji runs removed (default 1.0).",
    ),
):
    attack.add_command(_edit_command(_name, _doc, _rate))


@attack.command("typo")
@attack_options("Fraction of words given one slip (word) or of letters replaced (char); default 0.1.")
@click.option(
    "--mode",
    type=click.Choice(["word", "char"]),
    default="word",
    show_default=True,
    help="word: one substitution, insertion, deletion or transposition per chosen word; "
    "char: HELM's QWERTY-neighbour substitution of letters.",
)
def typo_command(input_path, output, rate, seed, model, as_json, mode):
    """Keyboard slips inside words (QWERTY neighbours), as MarkMyWords and WaterPark define them."""
    run_attack_command("typo", input_path, output, seed, model, as_json, strength=rate, mode=mode)


@attack.command("copy-paste")
@attack_options("Fraction of the result's words that are watermarked (default 0.25).")
@click.option(
    "--donor",
    "donor_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Human text (plain or JSONL); record i uses donor i mod #donors. Default: data/human_text.txt.",
)
@click.option(
    "--spans", type=click.IntRange(1, 1000), default=3, show_default=True, help="Watermarked spans."
)
def copy_paste_command(input_path, output, rate, seed, model, as_json, donor_path, spans):
    """Paste watermarked spans into human text at an exact fraction of the words (CP-n-m%)."""
    if rate == 0.0:
        raise ConfigError("copy-paste: the watermarked fraction must be above 0")
    run_attack_command(
        "copy-paste",
        input_path,
        output,
        seed,
        model,
        as_json,
        strength=rate,
        options={"copy_paste_spans": spans},
        donor_path=donor_path,
    )


@attack.command("emoji-prompts")
@click.argument("input_path", metavar="PROMPTS")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), required=True, help="Wrapped prompts (JSONL)."
)
@force_option
def emoji_prompts_command(input_path, output):
    """Wrap prompts with the emoji attack's instruction (generate with them, then `wm attack emoji`)."""
    from wm_toolkit.attacks.emoji import emoji_prompt
    from wm_toolkit.watermark.text.textio import read_prompts

    check_outputs([output], [input_path])
    prompts = read_prompts(input_path)
    write_jsonl(output, ({"prompt": emoji_prompt(p)} for p in prompts))
    err_console.print(f"wrote {len(prompts)} prompt(s) to {output}")

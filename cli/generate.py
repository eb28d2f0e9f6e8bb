"""`wm generate`: watermarked (or plain) text from a model, printed or written as JSONL."""

from __future__ import annotations

import click

from wm_toolkit.watermark.config import save_config_file
from wm_toolkit.watermark.errors import InputError
from wm_toolkit.watermark.modeling.generation import ENGINES
from wm_toolkit.watermark.modeling.generation import generate as generate_texts
from wm_toolkit.watermark.modeling.models import canonical_name, load_model, load_tokenizer
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.text.textio import check_text, read_prompts, write_jsonl

from .common import (
    SEED_RANGE,
    check_outputs,
    console,
    err_console,
    force_option,
    hf_key_options,
    key_option,
    model_option,
    pop_hf_key_options,
    pop_scheme_flags,
    progress,
    resolve_config,
    resolve_key,
    scheme_options,
    with_model_vocab_size,
    with_status,
)
from .terminal import visible


@click.command()
@click.argument("prompt", required=False)
@click.option(
    "--prompt-file",
    type=click.Path(),
    default=None,
    help="Prompts: one per line, or JSONL with a 'prompt' field.",
)
@click.option(
    "--limit", type=click.IntRange(1), default=None, help="Use only the first N prompts of --prompt-file."
)
@scheme_options
@click.option(
    "--payload",
    default=None,
    metavar="HEX",
    help="Embed this multi-bit payload, 8-64 bits as hex (e.g. 0x1234ABCD: 32 bits; implies --scheme mpac); "
    "`wm detect` decodes it.",
)
@hf_key_options
@key_option
@model_option()
@click.option("--max-new-tokens", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option(
    "--temperature", type=click.FloatRange(0.0), default=1.0, show_default=True, help="0 = greedy decoding."
)
@click.option("--top-p", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True)
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True)
@click.option("--num-beams", type=click.IntRange(1), default=1, show_default=True)
@click.option("--seed", type=SEED_RANGE, default=None, help="Seed for sampling (reproducible runs).")
@click.option("--no-watermark", is_flag=True, help="Generate plain text (for baselines).")
@click.option("--no-chat", is_flag=True, help="Do not wrap prompts in the model's chat template.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="hf",
    show_default=True,
    help="hf: transformers; vllm: wm's vLLM plugin (needs vLLM: `make vllm`, then .venv-vllm/bin/wm).",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write JSONL records here."
)
@click.option(
    "--config-out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the scheme config (no key) here.",
)
@force_option
def generate(
    prompt,
    prompt_file,
    limit,
    key_path,
    model,
    max_new_tokens,
    batch_size,
    temperature,
    top_p,
    top_k,
    num_beams,
    seed,
    no_watermark,
    no_chat,
    device,
    engine,
    output,
    config_out,
    scheme,
    config_path,
    **kwargs,
):
    """Generate text for PROMPT (or every prompt in --prompt-file) with a watermark."""
    flags = pop_scheme_flags(kwargs)
    scheme, flags, secret = pop_hf_key_options(kwargs, scheme, flags)
    scheme, flags = payload_flags(scheme, config_path, flags)
    if prompt is None and prompt_file is None:
        raise click.UsageError("give a PROMPT or --prompt-file")
    if prompt is not None and prompt_file is not None:
        raise click.UsageError("give either a PROMPT or --prompt-file, not both")
    check_outputs([output, config_out], [prompt_file, config_path], key_path or None)
    if engine == "vllm":  # before any key is created or model loaded
        from wm_toolkit.watermark.runtime.engines.vllm_plugin import require_vllm

        require_vllm()
    prompts = [prompt] if prompt is not None else read_prompts(prompt_file)[:limit]
    if prompt is not None and not prompt.strip():
        raise InputError("the prompt is empty")
    if prompt is not None:
        check_text(prompt, "the prompt")
    model_name = canonical_name(model)
    config = resolve_config(scheme, config_path, flags)
    key = None if no_watermark else resolve_key(key_path, secret, create_default=True)
    lm, tok, scheme_obj, config = load_engine(engine, model_name, device, config, key)
    with progress() as bar:
        task = bar.add_task("Generating", total=len(prompts))
        results = generate_texts(
            lm,
            tok,
            prompts,
            scheme=scheme_obj,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            num_beams=num_beams,
            seed=seed,
            chat=not no_chat,
            on_batch=lambda n: bar.advance(task, n),
            engine=engine,
        )
    if config_out and scheme_obj is not None:
        save_config_file(config, config_out)
    if output:
        _write_records(output, results, None if scheme_obj is None else config, model_name)
        return
    for i, g in enumerate(results):
        if len(results) > 1:
            console.rule(f"[bold]{i + 1}/{len(results)}")
        click.echo(visible(g.text))


def payload_flags(scheme: str | None, config_path: str | None, flags: dict) -> tuple[str | None, dict]:
    """--payload implies the mpac scheme and, without --payload-bits or a --config, its width
    (4 bits per hex digit, leading zeros included)."""
    if flags.get("payload") is None:
        return scheme, flags
    from wm_toolkit.watermark.schemes.mpac import payload_width

    width = payload_width(flags["payload"])  # ConfigError on bad hex
    if "payload_bits" not in flags and config_path is None:
        flags = {**flags, "payload_bits": width}
    return scheme or (None if config_path else "mpac"), flags


def _write_records(output: str, results, config, model_name: str) -> None:
    """One JSONL record per generation, with the config that detects it (`config` None: no watermark)."""
    scheme_name = "none" if config is None else config.scheme
    cfg = None if config is None else config.to_dict()
    n = write_jsonl(
        output,
        (
            {
                "prompt": g.prompt,
                "text": g.text,
                "scheme": scheme_name,
                "config": cfg,
                "num_tokens": g.num_tokens,
                "model": model_name,
            }
            for g in results
        ),
    )
    err_console.print(f"wrote {n} record(s) to {output}")


def load_engine(engine: str, model_name: str, device: str | None, config, key):
    """(model or vLLM engine, tokenizer, scheme, bound config). vLLM needs the scheme before it
    starts (its engine process reads the key once), so the config is bound to the tokenizer first."""
    if engine == "vllm":
        if device is not None:
            raise InputError("--device is not used with --engine vllm (vLLM runs on its own platform)")
        lm, tok = None, load_tokenizer(model_name)
    else:
        with with_status(f"Loading {model_name}"):
            lm, tok = load_model(model_name, device=device)
    scheme_obj = None
    if key is not None:
        config = config.replace(vocab_size=len(tok), tokenizer=model_name)
        config = with_model_vocab_size(config, model_name, lm)
        scheme_obj = build_scheme(config, key)
        config = scheme_obj.config
    if engine == "vllm":
        from wm_toolkit.watermark.runtime.engines.vllm_plugin import open_llm

        with with_status(f"Starting vLLM on {model_name}"):
            lm = open_llm(model_name, scheme_obj)
    return lm, tok, scheme_obj, config

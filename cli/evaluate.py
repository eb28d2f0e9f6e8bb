"""`wm eval`: detection power and text quality of a scheme, with and without attacks.

Generates watermarked and unwatermarked texts for the same prompts (cached in -o DIR), applies
every attack of --attacks to both, detects, and reports per attack: TPR at empirical FPR 1% and
0.1%, TPR at nominal p <= 0.001, AUROC, median p-value, perplexity (generating model or --oracle),
mean length and fraction of tokens changed. Writes DIR/results.json and PNG plots.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from wm_toolkit.attacks.grid import GridSetup, load_p_values, run_grid
from wm_toolkit.attacks.registry import parse_attacks
from wm_toolkit.attacks.resources import data_path
from wm_toolkit.watermark.config_resolve import bind_tokenizer
from wm_toolkit.watermark.measure.evaluation import GenerationSettings, plot_roc, plot_strength
from wm_toolkit.watermark.modeling.generation import ENGINES
from wm_toolkit.watermark.modeling.models import canonical_name, load_model
from wm_toolkit.watermark.runtime.atomic import check_output_folder
from wm_toolkit.watermark.schemes import build_scheme

from .common import (
    SEED_RANGE,
    AliasedOption,
    ConfigResolver,
    conflicts_json,
    console,
    cycled_prompts,
    err_console,
    fmt_p,
    json_option,
    key_option,
    load_key,
    pop_scheme_flags,
    print_json,
    progress,
    scheme_options,
    with_model_vocab_size,
    with_status,
)

DEFAULT_PROMPTS = data_path("prompts.jsonl")  # this checkout's, else the installed copy
DEFAULT_ATTACKS = "none,substitute:0.1,substitute:0.3,word-delete:0.2,neighbour:0.2,dilute:0.25,paraphrase"


@click.command("eval")
@scheme_options
@key_option
@click.option(
    "--attacks",
    default=DEFAULT_ATTACKS,
    show_default=True,
    help="Comma-separated KIND[:MODE][:STRENGTH], e.g. none,substitute:0.2,paraphrase:whole.",
)
@click.option(
    "--limit",
    "--n",
    "n",
    cls=AliasedOption,
    hidden_aliases=("--n",),
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="Prompts (texts per side).",
)
@click.option("--max-new-tokens", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option(
    "--prompt-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Prompts, one per line or JSONL with 'prompt' (default data/prompts.jsonl; cycled if --limit is larger).",
)
@click.option(
    "--model", default=None, help="Generating model: name, HF id or local folder (default smollm2-135m)."
)
@click.option("--oracle", default=None, help="Model that scores perplexity (default: the generating model).")
@click.option(
    "-o",
    "--output",
    "--output-dir",
    "output_dir",
    cls=AliasedOption,
    hidden_aliases=("--output-dir",),
    type=click.Path(file_okay=False),
    default="wm-eval",
    show_default=True,
    help="Folder for results.json, the plots and the cached generations.",
)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0), default=1.0, show_default=True)
@click.option("--top-p", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True)
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--seed", type=SEED_RANGE, default=0, show_default=True, help="Sampling seed (per batch: seed + offset)."
)
@click.option("--attack-seed", type=SEED_RANGE, default=0, show_default=True)
@click.option("--paraphrase-prompt", default=None, help="Paraphrase prompt template with a {text} slot.")
@click.option(
    "--paraphrase-model",
    default=None,
    help="Model that paraphrases: name, HF id or local folder (default: the generating model).",
)
@click.option("--no-chat", is_flag=True, help="Do not wrap prompts in the chat template.")
@click.option("--no-perplexity", is_flag=True, help="Skip perplexity (faster).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--device", default=None, help="cpu, cuda, ... (default: cuda if available).")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="hf",
    show_default=True,
    help="What writes the texts. hf: transformers; vllm: wm's vLLM plugin (needs vLLM: `make vllm`, "
    "then .venv-vllm/bin/wm). Perplexity and model attacks still use the transformers model.",
)
@json_option
def eval_command(
    key_path,
    attacks,
    n,
    max_new_tokens,
    prompt_file,
    model,
    oracle,
    output_dir,
    batch_size,
    temperature,
    top_p,
    top_k,
    seed,
    attack_seed,
    paraphrase_prompt,
    paraphrase_model,
    no_chat,
    no_perplexity,
    no_plots,
    device,
    engine,
    as_json,
    scheme,
    config_path,
    **kwargs,
):
    """Evaluate a watermark: TPR at fixed FPR, AUROC and perplexity under each attack."""
    flags = pop_scheme_flags(kwargs)
    check_output_folder(output_dir)
    _check_engine(engine)
    specs = parse_attacks(attacks)
    if paraphrase_prompt is not None:
        from wm_toolkit.attacks.paraphrase import check_prompt

        check_prompt(paraphrase_prompt)
    _, prompts = cycled_prompts(prompt_file, DEFAULT_PROMPTS, n, "--prompt-file")
    model_name = canonical_name(model)
    resolved = ConfigResolver(scheme, config_path, flags)()  # no records: --config, then flags
    config = resolved.config
    key = load_key(key_path, create_default=True)
    with with_status(f"Loading {model_name}"):
        lm, tok = load_model(model_name, device=device)
    oracle_pair = None
    if oracle and canonical_name(oracle) != model_name:
        with with_status(f"Loading oracle {oracle}"):
            oracle_pair = load_model(canonical_name(oracle), device=device)
    scheme_obj = build_scheme(
        with_model_vocab_size(bind_tokenizer(config, len(tok), model_name), model_name, lm), key
    )
    generator = _vllm_engine(model_name, scheme_obj) if engine == "vllm" else None
    options: dict[str, Any] = {"prompt": paraphrase_prompt} if paraphrase_prompt else {}
    paraphraser = _paraphraser(paraphrase_model, specs, model_name, device, options)
    setup = GridSetup(
        model=lm,
        tokenizer=tok,
        settings=GenerationSettings(
            model_name, max_new_tokens, temperature, top_p, top_k, batch_size, seed, not no_chat, engine
        ),
        generator=generator,
        prompts=prompts,
        out_dir=Path(output_dir),
        oracle=oracle_pair,
        oracle_name=canonical_name(oracle) if oracle_pair else None,
        attack_seed=attack_seed,
        attack_options=options,
        paraphraser=paraphraser,
        compute_perplexity=not no_perplexity,
        row_extra={"config_conflicts": conflicts_json(resolved)},
    )
    rows = _run_with_progress(setup, scheme_obj, specs)
    plots = [] if no_plots else _plots(setup, rows)
    if as_json:
        print_json(rows)
        return
    _print_table(rows)
    err_console.print(f"results: {Path(output_dir) / 'results.json'}" + "".join(f", {p}" for p in plots))


def _check_engine(engine: str) -> None:
    """--engine vllm without vLLM: one error line before any key is created or model loaded."""
    if engine == "vllm":
        from wm_toolkit.watermark.runtime.engines.vllm_plugin import require_vllm

        require_vllm()


def _vllm_engine(model_name: str, scheme_obj) -> Any:
    """One vLLM engine with wm's plugin for this scheme: it writes the watermarked texts and,
    with the watermark turned off per request, the unwatermarked ones."""
    from wm_toolkit.watermark.runtime.engines.vllm_plugin import open_llm

    with with_status(f"Starting vLLM on {model_name}"):
        return open_llm(model_name, scheme_obj)


def _paraphraser(paraphrase_model, specs, model_name: str, device, options: dict[str, Any]):
    """The separate paraphrase model, loaded only when a paraphrase attack runs and it differs
    from the generating model; its name goes into `options` (the cache key and each record)."""
    if not (paraphrase_model and any(s.kind == "paraphrase" for s in specs)):
        return None
    paraphrase_name = canonical_name(paraphrase_model)
    if paraphrase_name == model_name:
        return None
    with with_status(f"Loading paraphraser {paraphrase_name}"):
        paraphraser = load_model(paraphrase_name, device=device)
    options["paraphrase_model"] = paraphrase_name
    return paraphraser


def _run_with_progress(setup: GridSetup, scheme_obj, specs) -> list[dict]:
    """`run_grid` with one progress bar per step; on Ctrl-C, say where the finished rows are."""
    rows: list[dict] = []
    try:
        with progress() as bar:

            def factory(description: str, total: int):
                task = bar.add_task(description, total=total)
                return lambda k: bar.advance(task, k)

            run_grid(setup, [scheme_obj], specs, progress=factory, on_row=rows.append)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: {len(rows)} finished row(s) kept in {setup.out_dir / 'results.json'}"
        )
        raise
    return rows


def _plots(setup: GridSetup, rows: list[dict]) -> list[Path]:
    """ROC curves, and strength curves where an attack has a strength."""
    plots = plot_roc(load_p_values(setup.out_dir, rows), setup.out_dir)
    if any(r["strength"] is not None for r in rows):
        plots += plot_strength(rows, setup.out_dir)
    return plots


def _f(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def _print_table(rows: list[dict]) -> None:
    if not rows:
        return
    r0 = rows[0]
    table = Table(
        title=f"Robustness of {r0['scheme']} (n = {r0['n']} per side, {r0['max_new_tokens']} new tokens)"
    )
    table.add_column("attack", overflow="fold", min_width=10)
    for col in ("TPR@1%FPR", "TPR@.1%FPR", "TPR@p<.001", "AUROC", "median p", "PPL", "length", "changed"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["attack"],
            _f(r["tpr_at_fpr_1pct"]),
            _f(r["tpr_at_fpr_0_1pct"]),
            _f(r["tpr_at_p_0_001"]),
            _f(r["auroc"]),
            fmt_p(r["median_p_value"]),
            _f(r["perplexity"], 1 if (r["perplexity"] or 0) < 1000 else 0),
            _f(r["mean_length"], 0),
            _f(r["fraction_changed"], 2),
        )
    # piped or captured output is not cut to 80 columns
    (console if console.is_terminal else Console(width=130, file=sys.stdout)).print(table)
    for warning in r0.get("warnings", []):  # the same lines are in every row of --json and results.json
        console.print(f"[dim]{warning}.[/dim]")

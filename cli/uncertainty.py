"""`wm uncertainty`: score how unsure a model is of its answer (SAR and baselines), or evaluate on a QA set.

`wm uncertainty "QUESTION"` and `wm uncertainty eval FILE` share one name: a first argument
that is not a subcommand is taken as the question (`wm uncertainty ask "QUESTION"` is the same).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from wm_toolkit.watermark.errors import InputError
from wm_toolkit.watermark.modeling.models import (
    DEFAULT_SIMILARITY_MODEL,
    canonical_name,
    load_model,
    load_tokenizer,
)
from wm_toolkit.watermark.runtime.atomic import check_output_folder, write_json
from wm_toolkit.watermark.text.textio import check_text
from wm_toolkit.watermark.uncertainty import (
    Estimator,
    SamplingConfig,
    load_nli,
    load_similarity,
    parse_methods,
)
from wm_toolkit.watermark.uncertainty.estimate import DEFAULT_CLUSTER_THRESHOLD, METHOD_LABELS, METHODS
from wm_toolkit.watermark.uncertainty.evaluate import (
    DEFAULT_CORRECT_THRESHOLD,
    evaluate,
    generate_cached,
    load_qa,
    plot_roc,
)
from wm_toolkit.watermark.uncertainty.sampling import DEFAULT_INSTRUCTION, sample_answers
from wm_toolkit.watermark.uncertainty.scores import SENTENCE_TEMPERATURE

from .common import (
    SEED_RANGE,
    AliasedOption,
    console,
    err_console,
    json_option,
    model_option,
    print_json,
    progress,
    with_status,
)
from .terminal import visible


class _QuestionGroup(click.Group):
    """A group whose first argument, when it names no subcommand, is a question for `ask`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["ask", *args]
        return super().parse_args(ctx, args)


def _common_options(func: Callable) -> Callable:
    opts = [
        model_option(),
        click.option(
            "--k", "k", type=click.IntRange(2, 100), default=5, show_default=True, help="Sampled answers."
        ),
        click.option(
            "--temperature",
            type=click.FloatRange(0, min_open=True),
            default=0.5,
            show_default=True,
            help="Sampling temperature.",
        ),
        click.option("--max-new-tokens", type=click.IntRange(1, 512), default=32, show_default=True),
        click.option(
            "--num-beams",
            type=click.IntRange(1, 16),
            default=1,
            show_default=True,
            help="Beams for the most likely answer (1 = greedy; the paper used 5).",
        ),
        click.option(
            "--instruction",
            default=DEFAULT_INSTRUCTION,
            show_default=True,
            help="System instruction that asks for short answers.",
        ),
        click.option(
            "--no-examples", is_flag=True, help="Leave out the three few-shot question/answer turns."
        ),
        click.option("--seed", type=SEED_RANGE, default=0, show_default=True),
        click.option(
            "--similarity-model",
            default=None,
            help=f"Bi- or cross-encoder folder or id (default {DEFAULT_SIMILARITY_MODEL}, a bi-encoder; the paper "
            "used cross-encoder/stsb-roberta-large).",
        ),
        click.option(
            "--nli-model",
            default=None,
            help="NLI model for semantic-entropy clusters (e.g. microsoft/deberta-large-mnli); default: "
            "similarity threshold.",
        ),
        click.option(
            "--cluster-threshold",
            type=click.FloatRange(0, 1),
            default=DEFAULT_CLUSTER_THRESHOLD,
            show_default=True,
            help="Similarity at or above which two answers share a meaning (semantic entropy without --nli-model).",
        ),
        click.option(
            "--sentence-temperature",
            "t",
            type=click.FloatRange(0, min_open=True),
            default=SENTENCE_TEMPERATURE,
            show_default=True,
            help="t in SentSAR/SAR.",
        ),
        click.option(
            "--methods",
            default=",".join(METHODS),
            show_default=True,
            help="Comma-separated scores to compute.",
        ),
        click.option("--device", default=None, help="cpu or cuda (default: cuda if present)."),
        json_option,
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _sampling_config(opts: dict[str, Any]) -> SamplingConfig:
    from wm_toolkit.watermark.uncertainty.sampling import DEFAULT_EXAMPLES

    return SamplingConfig(
        k=opts["k"],
        temperature=opts["temperature"],
        max_new_tokens=opts["max_new_tokens"],
        num_beams=opts["num_beams"],
        instruction=opts["instruction"],
        examples=() if opts["no_examples"] else DEFAULT_EXAMPLES,
        seed=opts["seed"],
    )


def _estimator(tok: Any, methods: tuple[str, ...], opts: dict[str, Any]) -> Estimator:
    need_sim = {"sar", "token-sar", "sent-sar"} & set(methods) or (
        "semantic" in methods and not opts["nli_model"]
    )
    sim = nli = None
    if need_sim:
        with with_status("Loading similarity model"):
            sim = load_similarity(opts["similarity_model"], device=opts["device"])
    if opts["nli_model"] and "semantic" in methods:
        with with_status(f"Loading NLI model {opts['nli_model']}"):
            nli = load_nli(opts["nli_model"], device=opts["device"])
    return Estimator(tok, sim, methods, nli=nli, t=opts["t"], cluster_threshold=opts["cluster_threshold"])


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


@click.group(cls=_QuestionGroup, invoke_without_command=True)
@click.pass_context
def uncertainty(ctx: click.Context) -> None:
    """How sure is the model of its answer? SAR and baselines; `eval` measures them on a QA set.

    \b
    wm uncertainty "QUESTION" [--model M] [--k 5] [--similarity-model S] [--json]
    wm uncertainty eval QA.jsonl [--methods sar,pe,...] [--limit N] [-o DIR] [--json]
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@uncertainty.command("ask")
@click.argument("question")
@_common_options
def ask(question: str, model: str | None, as_json: bool, methods: str, **opts: Any) -> None:
    """Answer QUESTION and print every uncertainty score (higher = less sure)."""
    if not question.strip():
        raise InputError("the question is empty")
    check_text(question, "the question")
    method_list = parse_methods(methods)
    model_name = canonical_name(model)
    config = _sampling_config(opts)
    with with_status(f"Loading {model_name}"):
        lm, tok = load_model(model_name, device=opts["device"])
    est = _estimator(tok, method_list, opts)
    with with_status(f"Sampling {config.k} answers"):
        qs = sample_answers(lm, tok, [question], config)[0]
    scored = est.score(qs)
    result = {
        "question": question,
        "answer": qs.most_likely.text,
        "answer_nll": qs.most_likely.nll,
        "samples": [
            {"text": a.text, "nll": a.nll, **({"token_sar": scored.token_sar[i]} if scored.token_sar else {})}
            for i, a in enumerate(qs.samples)
        ],
        "scores": scored.scores,
        "clusters": scored.clusters,
        "model": model_name,
        "similarity_model": est.similarity.name if est.similarity else None,
    }
    if as_json:
        print_json(result)
        return
    console.print(f"[bold]Answer:[/bold] {escape(visible(qs.most_likely.text))}")
    samples = Table(title=f"{config.k} sampled answers (T={config.temperature})")
    samples.add_column("#", justify="right")
    samples.add_column("answer")
    samples.add_column("-log p", justify="right")
    if scored.token_sar:
        samples.add_column("TokenSAR", justify="right")
    if scored.clusters:
        samples.add_column("cluster", justify="right")
    for i, a in enumerate(qs.samples):
        row = [str(i + 1), escape(visible(a.text)), _fmt(a.nll, 2)]
        if scored.token_sar:
            row.append(_fmt(scored.token_sar[i], 2))
        if scored.clusters:
            row.append(str(scored.clusters[i]))
        samples.add_row(*row)
    console.print(samples)
    table = Table(title="Uncertainty (higher = less sure)")
    table.add_column("method")
    table.add_column("score", justify="right")
    for m, v in scored.scores.items():
        table.add_row(METHOD_LABELS[m], _fmt(v))
    console.print(table)


@contextlib.contextmanager
def _stages():
    with progress() as bar:

        def stage(description: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(description, total=total)
            return lambda n: bar.advance(task, n)

        yield stage


@uncertainty.command("eval")
@click.argument("qa_file", type=click.Path(dir_okay=False))
@_common_options
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N questions.")
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False),
    default="uncertainty-eval",
    show_default=True,
    help="Folder for results.json, roc.png and the cached generations.",
)
@click.option(
    "--correct-threshold",
    type=click.FloatRange(0, 1),
    default=DEFAULT_CORRECT_THRESHOLD,
    show_default=True,
    help="An answer is correct when its Rouge-L F1 against the best reference exceeds this.",
)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option(
    "--no-plots",
    "--no-plot",
    "no_plot",
    cls=AliasedOption,
    hidden_aliases=("--no-plot",),
    is_flag=True,
    help="Skip roc.png (needs matplotlib).",
)
def eval_qa(
    qa_file: str,
    model: str | None,
    as_json: bool,
    methods: str,
    limit: int | None,
    out_dir: str,
    correct_threshold: float,
    batch_size: int,
    no_plot: bool,
    **opts: Any,
) -> None:
    """Accuracy on QA_FILE (JSONL: question, answer, aliases) and each method's AUROC for wrong answers."""
    method_list = parse_methods(methods)
    items = load_qa(qa_file)[:limit]
    out = check_output_folder(out_dir)
    model_name = canonical_name(model)
    config = _sampling_config(opts)
    lm_box: dict[str, Any] = {}

    def load_lm() -> tuple[Any, Any]:
        with with_status(f"Loading {model_name}"):
            lm_box["lm"] = load_model(model_name, device=opts["device"])
        return lm_box["lm"]

    with _stages() as stage:
        samples, generated, gen_seconds = generate_cached(
            items, load_lm, model_name, config, out, batch_size=batch_size, stage=stage
        )
        tok = lm_box["lm"][1] if lm_box else load_tokenizer(model_name)
        est = _estimator(tok, method_list, opts)
        results = evaluate(items, samples, est, correct_threshold, stage=stage)
    results.update(
        model=model_name,
        similarity_model=est.similarity.name if est.similarity else None,
        nli_model=opts["nli_model"],
        sampling=config.to_dict(),
        sentence_temperature=opts["t"],
        cluster_threshold=opts["cluster_threshold"],
        generated=generated,
        generation_seconds=gen_seconds,
        seconds_per_question=(gen_seconds / generated if generated else 0.0)
        + results["scoring_seconds"] / len(items),
    )
    write_json(out / "results.json", results)
    plot = None if no_plot else plot_roc(results, out / "roc.png")
    summary = {k: results[k] for k in ("n", "accuracy", "auroc", "seconds_per_question", "generated")}
    summary.update(results_file=str(out / "results.json"), roc_plot=str(plot) if plot else None)
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"Predicting wrong answers: n={results['n']}, accuracy {results['accuracy']:.3f}")
    table.add_column("method")
    table.add_column("AUROC", justify="right")
    for m in method_list:
        table.add_row(METHOD_LABELS[m], _fmt(results["auroc"][m]))
    console.print(table)
    if any(v is None for v in results["auroc"].values()):
        err_console.print("AUROC is undefined when every answer is right or every answer is wrong")
    console.print(f"results: {out / 'results.json'}" + (f", ROC plot: {plot}" if plot else ""))

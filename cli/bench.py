"""`wm bench`: the field's test suites (MarkMyWords size and tamper resistance, quality, Singh & Zou's
embedding classifier) on many schemes, side by side, offline.

One command writes DIR/bench.md (the leaderboard), DIR/bench.json (one object per scheme) and
DIR/size-curves.png; the texts, attacks and p-values are cached in DIR as `wm eval` caches them,
so a rerun resumes where it stopped. `--quick`: 8 prompts, 100 tokens, 3 schemes, 6 attacks.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from wm_toolkit.watermark.errors import InputError, WmError
from wm_toolkit.watermark.runtime.atomic import check_output_folder

from .common import (
    SEED_RANGE,
    ConfigResolver,
    cycled_prompts,
    err_console,
    json_option,
    key_option,
    load_key,
    print_json,
    progress,
    with_model_vocab_size,
    with_status,
)

DEFAULT_SCHEMES = "kgw,unigram,exp-edit,gumbel,synthid"
DEFAULT_ATTACKS = (
    "none,typo:0.05,typo:0.2,misspelling:0.5,contraction,expansion,lowercase,swap:0.1,swap:0.3,"
    "copy-paste:0.5,scramble"
)
QUICK = {
    "schemes": "kgw,unigram,gumbel",
    "attacks": "none,typo:0.05,misspelling:0.5,contraction,lowercase,swap:0.1",
    "limit": 8,
    "max_new_tokens": 100,
}
FULL = {"schemes": DEFAULT_SCHEMES, "attacks": DEFAULT_ATTACKS, "limit": 300, "max_new_tokens": 200}


def parse_schemes(text: str) -> list[str]:
    """Comma-separated scheme names, each known and named once."""
    from wm_toolkit.watermark.schemes import available_schemes

    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise InputError("--schemes: no scheme named")
    known = available_schemes()
    for name in names:
        if name not in known:
            raise InputError(f"--schemes: unknown scheme {name!r} (known: {', '.join(known)})")
    if len(set(names)) != len(names):
        raise InputError("--schemes: a scheme is named twice")
    return names


@click.command("bench")
@click.option("--schemes", default=None, help=f"Comma-separated schemes (default {DEFAULT_SCHEMES}).")
@click.option(
    "--attacks",
    default=None,
    help="Comma-separated KIND[:MODE][:STRENGTH] (default: MarkMyWords' text attacks).",
)
@click.option(
    "--model", default=None, help="Generating model: name, HF id or local folder (default smollm2-135m)."
)
@click.option(
    "--prompts",
    "prompt_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Prompts (default data/bench_prompts.jsonl).",
)
@click.option(
    "-o",
    "--output",
    "output_dir",
    type=click.Path(file_okay=False),
    default="runs/bench",
    show_default=True,
    help="Folder for bench.md, bench.json, the plots and the caches.",
)
@click.option(
    "--quick", is_flag=True, help="8 prompts x 100 tokens x kgw,unigram,gumbel x 6 attacks (minutes)."
)
@click.option("--limit", type=click.IntRange(1), default=None, help="Prompts (default 300; --quick 8).")
@click.option(
    "--max-new-tokens",
    type=click.IntRange(1, 100_000),
    default=None,
    help="Tokens per text (default 200; --quick 100).",
)
@key_option
@click.option(
    "--size-step",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Test prefixes every this many tokens for size.",
)
@click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True)
@click.option(
    "--seed", type=SEED_RANGE, default=0, show_default=True, help="Sampling seed (per batch: seed + offset)."
)
@click.option(
    "--embedding-model",
    default=None,
    help="Sentence-embedding model for the classifier AUROC (default: the embedded MiniLM).",
)
@click.option("--no-embedding", is_flag=True, help="Skip the embedding classifier.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--device", default=None, help="cpu, cuda, ... (default: cuda if available).")
@json_option
def bench_command(**opts: Any) -> None:
    """Benchmark schemes side by side: MarkMyWords size, tamper resistance, quality, distinguishability."""
    plan = _plan(opts)
    _quiet_numba_threads()  # after the input checks: bad input leaves the process as it was
    started, load_before = time.monotonic(), _load()
    from wm_toolkit.attacks.bench import run_bench

    bench, schemes = _setup(plan, opts)
    results = _run_with_progress(run_bench, bench, schemes)
    plan["meta"]["wall_seconds"] = round(time.monotonic() - started, 1)
    plan["meta"]["load_average"] = {"start": load_before, "end": _load()}
    paths = _write(results, plan, opts["no_plots"])
    if opts["as_json"]:
        print_json(results)
        return
    from wm_toolkit.watermark.measure.bench_report import leaderboard

    click.echo("\n".join(leaderboard(results)))
    err_console.print("bench: " + ", ".join(str(p) for p in paths))


def _load() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the OS has none): a shared machine's timings need them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _quiet_numba_threads() -> None:
    """numba's default (OpenMP) threading layer keeps its workers busy after a parallel kernel (the
    PRF's vocabulary loop: unigram's list, kgw's batched bias) and slowed torch in the same process
    6x on the shared 2-core machine (10 unigram tokens of SmolLM2: 21.6 s, 3.5 s with workqueue);
    the workqueue layer computes the same bits. A user's NUMBA_THREADING_LAYER is kept."""
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
    numba = sys.modules.get("numba")
    if numba is not None:  # imported already, no parallel kernel launched yet: still in time
        numba.config.THREADING_LAYER = "workqueue"


def _plan(opts: dict[str, Any]) -> dict[str, Any]:
    """Every check of the input, before a model is loaded: one `error:` line for bad input."""
    from wm_toolkit.attacks.registry import parse_attacks
    from wm_toolkit.attacks.resources import data_path
    from wm_toolkit.watermark.measure.bench_size import SIZE_ALPHA
    from wm_toolkit.watermark.modeling.models import canonical_name

    base = QUICK if opts["quick"] else FULL
    names = parse_schemes(opts["schemes"] or base["schemes"])
    specs = parse_attacks(opts["attacks"] or base["attacks"])
    out = check_output_folder(opts["output_dir"])
    limit = opts["limit"] or base["limit"]
    source, prompts = cycled_prompts(
        opts["prompt_file"], data_path("bench_prompts.jsonl"), limit, "--prompts"
    )
    model_name = canonical_name(opts["model"])
    tokens = opts["max_new_tokens"] or base["max_new_tokens"]
    meta = {
        "model": model_name,
        "prompts": source,
        "n": len(prompts),
        "max_new_tokens": tokens,
        "seed": opts["seed"],
        "size_alpha": SIZE_ALPHA,
        "size_step": opts["size_step"],
        "quick": bool(opts["quick"]),
        "schemes": names,
        "attacks": [s.label for s in specs],
        "notes": [],
        "quality_measure": f"median perplexity of the unattacked watermarked texts / of the attacked ones "
        f"under {model_name} (no embedding model; MarkMyWords asks an LLM judge)",
    }
    return {"names": names, "specs": specs, "out": out, "prompts": prompts, "meta": meta}


def _schemes(names: list[str], key: Any, tok: Any, lm: Any, model_name: str) -> list[Any]:
    """Each scheme at its default config, bound to this model's tokenizer."""
    from wm_toolkit.watermark.config_resolve import bind_tokenizer
    from wm_toolkit.watermark.schemes import build_scheme

    out = []
    for name in names:
        config = ConfigResolver(name, None, {})().config
        config = with_model_vocab_size(bind_tokenizer(config, len(tok), model_name), model_name, lm)
        out.append(build_scheme(config, key))
    return out


def _embedder(opts: dict[str, Any], meta: dict[str, Any]) -> tuple[Any, str | None]:
    """The embedding function, or None and why it is skipped (a missing model is no error)."""
    if opts["no_embedding"]:
        return None, "--no-embedding"
    from wm_toolkit.watermark.uncertainty.similarity import load_similarity

    try:
        with with_status("Loading the embedding model"):
            model = load_similarity(opts["embedding_model"], device=opts["device"])
    except WmError as exc:
        meta["notes"].append(f"embedding classifier skipped: {exc}")
        return None, str(exc)
    embed = getattr(model, "embed", None)
    if embed is None:
        return None, f"{model.name} is not a bi-encoder (no embeddings)"
    meta["embedding_model"] = model.name
    meta["quality_measure"] = (
        f"mean cosine similarity of the attacked texts to their unattacked originals under {model.name} "
        "(MarkMyWords asks an LLM judge)"
    )
    return embed, None


def _setup(plan: dict[str, Any], opts: dict[str, Any]) -> tuple[Any, list[Any]]:
    from wm_toolkit.attacks.bench import BenchSetup
    from wm_toolkit.attacks.grid import GridSetup
    from wm_toolkit.watermark.measure.evaluation import GenerationSettings
    from wm_toolkit.watermark.modeling.models import load_model

    meta = plan["meta"]
    key = load_key(opts["key_path"], create_default=True)
    with with_status(f"Loading {meta['model']}"):
        lm, tok = load_model(meta["model"], device=opts["device"])
    schemes = _schemes(plan["names"], key, tok, lm, meta["model"])
    embed, skipped = _embedder(opts, meta)
    settings = GenerationSettings(
        model=meta["model"],
        max_new_tokens=meta["max_new_tokens"],
        batch_size=opts["batch_size"],
        seed=opts["seed"],
    )
    grid = GridSetup(model=lm, tokenizer=tok, settings=settings, prompts=plan["prompts"], out_dir=plan["out"])
    bench = BenchSetup(grid, plan["specs"], size_step=opts["size_step"], embed=embed, embed_skipped=skipped)
    return bench, schemes


def _run_with_progress(run: Any, bench: Any, schemes: list[Any]) -> list[dict]:
    """`run_bench` with one progress bar per step (stderr)."""
    with progress() as bar:

        def factory(description: str, total: int):
            task = bar.add_task(description, total=total)
            return lambda k: bar.advance(task, k)

        return run(bench, schemes, progress=factory)


def _write(results: list[dict], plan: dict[str, Any], no_plots: bool) -> list[Path]:
    """bench.json, bench.md and the size curves, each written atomically."""
    from wm_toolkit.watermark.measure.bench_report import bench_markdown, plot_sizes
    from wm_toolkit.watermark.runtime.atomic import write_json, write_text

    out, meta = Path(plan["out"]), plan["meta"]
    load = meta["load_average"]
    meta["notes"].append(
        f"wall time {meta['wall_seconds']} s; load average (1/5/15 min) {load['start']} at the start, "
        f"{load['end']} at the end"
    )
    if "minilm" in str(meta.get("embedding_model", "")).lower():
        meta["notes"].append("MiniLM's tokenizer is uncased: lowercasing keeps a similarity of 1.0.")
    paths = [out / "bench.md", out / "bench.json"]
    write_json(paths[1], results)
    write_text(paths[0], bench_markdown(results, meta))
    if not no_plots:
        paths += plot_sizes(results, out, meta["size_alpha"])
    return paths

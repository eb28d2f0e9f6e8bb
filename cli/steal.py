"""`wm steal` (green-list stealing as a MIP) and the `wm attack scrub` / `wm attack spoof` commands.

The evaluator who holds the key can pass it (with --config or scheme flags) to score the stolen
list against the truth; the Oracle threat model needs it for the exact green counts.
"""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from attacks.stealing import (
    THREATS,
    WEIGHTS,
    StolenList,
    frequency_baseline,
    lexical_token_weights,
    score_list,
)
from attacks.stealing import steal as steal_list
from attacks.stealing_data import StealingConfigError, build_corpus
from watermark.errors import ConfigError, InputError
from watermark.generation import encode_texts
from watermark.models import canonical_name, load_model, load_tokenizer
from watermark.schemes import build_scheme
from watermark.textio import read_prompts, read_records, write_jsonl

from .common import (
    console,
    err_console,
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


def _read_texts(paths: tuple[str, ...], one_per_file: bool) -> list[str]:
    return [r.text for p in paths for r in read_records(p, one_per_line=not one_per_file)]


def _truth(key_path, scheme, config_path, flags, tok, tok_name):
    """The true scheme, when the evaluator gave a key or a config; else None."""
    if not (key_path or config_path):
        return None
    if scheme is None and config_path is None:
        scheme = "unigram" if flags.get("context_width", 0) == 0 else "kgw"
    config = resolve_config(scheme, config_path, flags)
    if config.vocab_size is not None and config.vocab_size != len(tok):
        raise ConfigError(
            f"the config is for {config.vocab_size} tokens, tokenizer {tok_name!r} has {len(tok)}"
        )
    config = config.replace(vocab_size=len(tok), tokenizer=config.tokenizer or tok_name)
    if config.scheme not in ("kgw", "unigram"):  # hf-kgw has a gamma too, but not wm's green lists
        raise ConfigError(f"scheme {config.scheme!r} has no green list to steal")
    return build_scheme(config, load_key(key_path))


def _evaluate(stolen: StolenList, truth, wm_ids, nat_ids, h: int, repeats: bool) -> dict[str, Any]:
    corpus = build_corpus(wm_ids, nat_ids, h, repeats)
    observed = [tuple(int(x) for x in r) for r in corpus.items]
    if h == 0:
        true = truth.green_token_ids().tolist()
        return score_list(stolen.green_token_ids, true, observed=[o[0] for o in observed]).to_dict()
    # h >= 1: the true list is a function of every context; score on the pairs that occurred
    import numpy as np
    import torch

    seeds = torch.from_numpy(truth.seeds_for(corpus.items[:, :h]))
    green = truth.is_green(seeds, torch.from_numpy(np.ascontiguousarray(corpus.items[:, h]))).numpy()
    true_obs = [o for o, g in zip(observed, green, strict=True) if g]
    out = score_list(stolen.green_pairs, true_obs).to_dict()
    out["scored_on"] = "observed (context, token) pairs"
    return out


@click.command("steal")
@click.option(
    "--watermarked", "-w", "wm_paths", multiple=True, required=True, help="Texts labelled watermarked."
)
@click.option("--natural", "-n", "nat_paths", multiple=True, required=True, help="Texts labelled natural.")
@click.option("--threat", type=click.Choice(THREATS), default="vanilla", show_default=True)
@click.option("--z", "z_threshold", type=float, default=4.0, show_default=True, help="Detector z threshold.")
@click.option("--time-limit", type=click.FloatRange(0, min_open=True), default=60.0, show_default=True)
@click.option("--solver", default="cbc", show_default=True, help="PuLP solver: cbc, highs, glpk, gurobi, ...")
@click.option(
    "--weights",
    type=click.Choice(WEIGHTS),
    default="ratio",
    show_default=True,
    help="Minimum-weight stage: ratio = freq_natural/freq_watermarked, lexical = the paper's "
    "word weights (stop words 2, one-character tokens 5, two-character 4), uniform = list size.",
)
@click.option(
    "--binary", is_flag=True, help="Binary token variables instead of the LP relaxation + rounding."
)
@click.option(
    "--one-per-file", is_flag=True, help="Plain-text inputs hold one text per file (default: per line)."
)
@model_option(
    "Tokenizer of the model that wrote the texts (default smollm2-135m). The model is never loaded."
)
@scheme_options
@key_option
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), required=True, help="Write the stolen list here."
)
@json_option
def steal_command(
    wm_paths,
    nat_paths,
    threat,
    z_threshold,
    time_limit,
    solver,
    weights,
    binary,
    one_per_file,
    model,
    key_path,
    output,
    as_json,
    scheme,
    config_path,
    **kwargs,
):
    """Steal a green list from texts labelled watermarked and natural (Zhang et al. 2024).

    --gamma is the green fraction the attacker knows (vanilla/oracle/pro; ignored by blind). Give
    --key with --config or scheme flags to score the result against the true list.
    """
    flags = pop_scheme_flags(kwargs)
    tok_name = canonical_name(model)
    with with_status(f"Loading tokenizer {tok_name}"):
        tok = load_tokenizer(tok_name)
    wm_ids = encode_texts(tok, _read_texts(wm_paths, one_per_file))
    nat_ids = encode_texts(tok, _read_texts(nat_paths, one_per_file))
    truth = _truth(key_path, scheme, config_path, flags, tok, tok_name)
    h = flags.get("context_width", truth.config.context_width if truth else 0)
    repeats = bool(flags.get("count_repeats", truth.config.count_repeats if truth else False))
    gamma = flags.get("gamma", truth.config.gamma if truth else None)
    counts = None
    if threat == "oracle":
        if truth is None:
            raise StealingConfigError(
                "--threat oracle needs the exact green counts: pass --key and the scheme config"
            )
        counts = [truth.detect(ids).green_count if len(ids) > h else 0 for ids in wm_ids + nat_ids]
    with with_status(f"Solving the {threat} program ({solver})"):
        stolen = steal_list(
            wm_ids,
            nat_ids,
            threat,
            gamma=gamma,
            z=z_threshold,
            vocab_size=len(tok),
            exact_counts=counts,
            context_width=h,
            count_repeats=repeats,
            relax=not binary,
            solver=solver,
            time_limit=time_limit,
            weights=weights,
            token_weights=lexical_token_weights(tok) if weights == "lexical" else None,
        )
    stolen.tokenizer = tok_name
    stolen.save(output)
    summary: dict[str, Any] = {
        "output": output,
        "threat": threat,
        "tokenizer": tok_name,
        "stolen": len(stolen),
        "watermarked_texts": stolen.num_watermarked,
        "natural_texts": stolen.num_natural,
        "candidates": stolen.num_candidates,
        "solver": {k: v for k, v in stolen.solver.items() if k != "stages"},
    }
    if truth is not None:
        summary["evaluation"] = _evaluate(stolen, truth, wm_ids, nat_ids, h, repeats)
        base = frequency_baseline(wm_ids, nat_ids, gamma=gamma, vocab_size=len(tok), context_width=h)
        summary["baseline"] = _evaluate(base, truth, wm_ids, nat_ids, h, repeats)
        summary["baseline"]["stolen"] = len(base)
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(s: dict[str, Any]) -> None:
    st = s["solver"]
    table = Table(title=f"Green-list stealing ({s['threat']})")
    table.add_column("field")
    table.add_column("value", justify="right")
    rows = [
        ("texts (watermarked / natural)", f"{s['watermarked_texts']} / {s['natural_texts']}"),
        ("candidate items", str(s["candidates"])),
        ("stolen (green)", str(s["stolen"])),
        ("status", str(st.get("status"))),
        ("objective", f"{st['objective']:.4g}" if st.get("objective") is not None else "-"),
        ("variables / constraints", f"{st.get('variables')} / {st.get('constraints')}"),
        ("build / solve (s)", f"{st.get('build_s')} / {st.get('solve_s')}"),
    ]
    if st.get("elastic"):
        rows.append(("elastic (labels inconsistent)", f"slack {st.get('slack'):.3g}"))
    for name in ("evaluation", "baseline"):
        if name in s:
            e = s[name]
            label = "vs true list" if name == "evaluation" else f"frequency baseline ({e['stolen']} stolen)"
            rows.append(
                (
                    f"{label}: precision / recall / F1",
                    f"{e['precision']:.3f} / {e['recall']:.3f} / {e['f1']:.3f}",
                )
            )
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    err_console.print(f"wrote the stolen list to {s['output']}")


# ---- wm attack scrub / spoof ------------------------------------------------------------------------
def _load_stolen(path: str, tok) -> StolenList:
    stolen = StolenList.load(path)
    if stolen.vocab_size is not None and stolen.vocab_size != len(tok):
        raise ConfigError(
            f"{path} was stolen with a {stolen.vocab_size}-token tokenizer, this one has {len(tok)}"
        )
    return stolen


def _truth_for_eval(key_path, scheme, config_path, flags, tok, tok_name):
    return _truth(key_path, scheme, config_path, flags, tok, tok_name)


@click.command("scrub")
@click.argument("input_path", metavar="INPUT")
@click.option(
    "--stolen", "stolen_path", required=True, type=click.Path(dir_okay=False), help="From `wm steal`."
)
@click.option(
    "--top-k", type=click.IntRange(1), default=10, show_default=True, help="Candidates per position."
)
@click.option("--beam", type=click.IntRange(1), default=1, show_default=True, help="1 = greedy.")
@click.option("--candidates", type=click.Choice(["model", "embedding"]), default="model", show_default=True)
@click.option("--max-edit-rate", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True)
@model_option("Model for candidates and perplexity (default: the stolen list's tokenizer).")
@scheme_options
@key_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Write JSONL here.")
@json_option
def scrub_command(
    input_path,
    stolen_path,
    top_k,
    beam,
    candidates,
    max_edit_rate,
    alpha,
    model,
    key_path,
    output,
    as_json,
    scheme,
    config_path,
    **kwargs,
):
    """Rewrite watermarked INPUT texts, replacing tokens the stolen list calls green."""
    from attacks.scrub import scrub_texts, success_rate

    flags = pop_scheme_flags(kwargs)
    records = read_records(input_path)
    name = canonical_name(model or StolenList.load(stolen_path).tokenizer)
    with with_status(f"Loading {name}"):
        lm, tok = load_model(name)
    stolen = _load_stolen(stolen_path, tok)
    truth = _truth_for_eval(key_path, scheme, config_path, flags, tok, name)
    out, p_before, p_after = [], [], []
    with progress() as bar:
        task = bar.add_task("Scrubbing", total=len(records))
        for rec in records:
            ((text, ids, res),) = scrub_texts(
                lm,
                tok,
                [rec.text],
                stolen,
                prompts=[rec.prompt],
                top_k=top_k,
                beam=beam,
                candidates=candidates,
                max_edit_rate=max_edit_rate,
            )
            row = (
                {**rec.record, "text": text, "scrub": res.to_dict()}
                if rec.record
                else {"text": text, "scrub": res.to_dict()}
            )
            if truth is not None:
                before = truth.detect(encode_texts(tok, [rec.text])[0]).p_value
                after = truth.detect(ids).p_value if len(ids) >= truth.min_tokens else 1.0
                row["scrub"].update(p_before=before, p_after=after)
                p_before.append(before)
                p_after.append(after)
            out.append(row)
            bar.advance(task)
    write_jsonl(output, out)
    summary: dict[str, Any] = {"output": output, "texts": len(out), "stolen": len(stolen)}
    summary["mean_edit_rate"] = sum(r["scrub"]["edit_rate"] for r in out) / max(len(out), 1)
    summary["mean_ppl_before"] = sum(r["scrub"]["ppl_before"] for r in out) / max(len(out), 1)
    summary["mean_ppl_after"] = sum(r["scrub"]["ppl_after"] for r in out) / max(len(out), 1)
    if truth is not None:
        summary["flagged_before"] = 1.0 - success_rate(p_before, alpha)
        summary["success_rate"] = success_rate(p_after, alpha)
    if as_json:
        print_json(summary)
        return
    _kv_table("Scrubbing with a stolen list", summary)


@click.command("spoof")
@click.option(
    "--stolen", "stolen_path", required=True, type=click.Path(dir_okay=False), help="From `wm steal`."
)
@click.option("--prompt-file", required=True, type=click.Path(), help="Prompts: one a line, or JSONL.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N prompts.")
@click.option(
    "--bias",
    "delta_bias",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="Logit bias on stolen ids.",
)
@click.option("--max-new-tokens", type=click.IntRange(1), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0), default=1.0, show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True)
@model_option("Unwatermarked model to generate with (default: the stolen list's tokenizer).")
@scheme_options
@key_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Write JSONL here.")
@json_option
def spoof_command(
    stolen_path,
    prompt_file,
    limit,
    delta_bias,
    max_new_tokens,
    batch_size,
    temperature,
    seed,
    alpha,
    model,
    key_path,
    output,
    as_json,
    scheme,
    config_path,
    **kwargs,
):
    """Generate text biased toward the stolen list; with --key, measure how often it is flagged."""
    from attacks.spoof import flagged_rate, spoof_generate

    flags = pop_scheme_flags(kwargs)
    prompts = read_prompts(prompt_file)[:limit]
    name = canonical_name(model or StolenList.load(stolen_path).tokenizer)
    with with_status(f"Loading {name}"):
        lm, tok = load_model(name)
    stolen = _load_stolen(stolen_path, tok)
    truth = _truth_for_eval(key_path, scheme, config_path, flags, tok, name)
    with progress() as bar:
        task = bar.add_task("Generating", total=len(prompts))
        gens = spoof_generate(
            lm,
            tok,
            prompts,
            stolen,
            delta=delta_bias,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            temperature=temperature,
            seed=seed,
            on_batch=lambda n: bar.advance(task, n),
        )
    rows, pv = [], []
    for g in gens:
        row = {
            "prompt": g.prompt,
            "text": g.text,
            "scheme": "none",
            "num_tokens": g.num_tokens,
            "model": name,
        }
        row["spoof"] = {"stolen": stolen_path, "bias": delta_bias}
        if truth is not None and g.num_tokens >= truth.min_tokens:
            p = truth.detect(encode_texts(tok, [g.text])[0]).p_value
            row["spoof"]["p_value"] = p
            pv.append(p)
        rows.append(row)
    write_jsonl(output, rows)
    summary: dict[str, Any] = {
        "output": output,
        "texts": len(rows),
        "stolen": len(stolen),
        "bias": delta_bias,
    }
    if truth is not None:
        summary["flagged_rate"] = flagged_rate(pv, alpha)
    if as_json:
        print_json(summary)
        return
    _kv_table("Spoofing with a stolen list", summary)


def _kv_table(title: str, d: dict[str, Any]) -> None:
    table = Table(title=title)
    table.add_column("field")
    table.add_column("value", justify="right")
    for k, v in d.items():
        table.add_row(k.replace("_", " "), f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)


steal = steal_command  # the name cli/main.py registers

try:  # register under `wm attack` when that group exists (cli/attack.py is owned elsewhere)
    from .attack import attack as _attack_group

    _attack_group.add_command(scrub_command)
    _attack_group.add_command(spoof_command)
except (ImportError, AttributeError):  # no attack group yet: `wm steal` only
    pass

__all__ = ["InputError", "scrub_command", "spoof_command", "steal"]

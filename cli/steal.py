"""`wm steal` (green-list stealing: the MIP of Zhang et al. or the frequency-ratio attacker of
Jovanovic et al.) and the `wm attack scrub` / `wm attack spoof` commands.

The evaluator who holds the key can pass it (with --config or scheme flags) to score the stolen
list against the truth; the Oracle threat model needs it for the exact green counts. With the key
the detector-access threat models (vanilla, oracle, pro) relabel every text by the detector
first, as Zhang et al. do; without it the labels are taken as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
from rich.table import Table

from wm_toolkit.attacks.stealing import (
    GREEN_AT,
    METHODS,
    THREATS,
    WEIGHTS,
    RatioParams,
    StolenList,
    frequency_baseline,
    lexical_token_weights,
    relabel,
    score_list,
    steal_ratio,
)
from wm_toolkit.attacks.stealing import steal as steal_list
from wm_toolkit.attacks.stealing_data import StealingConfigError, build_corpus
from wm_toolkit.attacks.stealing_ratio import default_params
from wm_toolkit.watermark.config import SchemeConfig
from wm_toolkit.watermark.config_resolve import ResolvedConfig, bind_tokenizer
from wm_toolkit.watermark.errors import ConfigError, InputError
from wm_toolkit.watermark.modeling.generation import encode_texts
from wm_toolkit.watermark.modeling.models import canonical_name, load_model, load_tokenizer
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.text.textio import TextRecord, read_records, write_jsonl

from .common import (
    SEED_RANGE,
    ConfigResolver,
    check_outputs,
    conflicts_json,
    console,
    err_console,
    force_option,
    json_option,
    key_option,
    load_key,
    model_option,
    override_config_option,
    pop_scheme_flags,
    print_json,
    progress,
    scheme_options,
    with_status,
)


def _read(paths: tuple[str, ...], one_per_file: bool) -> list[TextRecord]:
    return [r for p in paths for r in read_records(p, one_per_line=not one_per_file)]


def _default_scheme(flags: dict[str, Any]) -> str:
    """Texts that carry no config: a green list of the flags' context width (default unigram)."""
    return "unigram" if flags.get("context_width", 0) == 0 else "kgw"


def _records_config(resolver: ConfigResolver, records: list[TextRecord]) -> ResolvedConfig:
    """The one config the texts were made with, resolved as `wm detect` resolves it: each record's
    own config (records without one are left out when others have one), then --config, then flags."""
    found: dict[str, ResolvedConfig] = {}
    for rec in [r for r in records if r.config] or [None]:
        res = resolver(rec.config, rec.source) if rec else resolver()
        found.setdefault(res.config.to_json(), res)
    if len(found) > 1:
        raise ConfigError(
            f"the watermarked texts carry {len(found)} different scheme configs: steal one watermark at a time"
        )
    return next(iter(found.values()))


def _truth(config: SchemeConfig, key_path, tok, tok_name):
    """The true scheme (the evaluator's key and the resolved config)."""
    if config.scheme not in ("kgw", "unigram"):  # hf-kgw has a gamma too, but not wm's green lists
        raise ConfigError(f"scheme {config.scheme!r} has no green list to steal")
    return build_scheme(bind_tokenizer(config, len(tok), tok_name), load_key(key_path))


def _evaluate(stolen: StolenList, truth, wm_ids, nat_ids, h: int, repeats: bool) -> dict[str, Any]:
    corpus = build_corpus(wm_ids, nat_ids, h, repeats)
    observed = [tuple(int(x) for x in r) for r in corpus.items]
    if h == 0:
        true = truth.green_token_ids().tolist()
        return score_list(stolen.green_token_ids, true, observed=[o[0] for o in observed]).to_dict()
    # h >= 1: the true list is a function of every context; score on the pairs that occurred
    import numpy as np
    import torch

    seeds = torch.from_numpy(truth.token_seeds(np.ascontiguousarray(corpus.items)))
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
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="mip",
    show_default=True,
    help="mip = Zhang et al.'s program (--threat), ratio = Jovanovic et al.'s frequency-ratio scores.",
)
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
    "--green-at",
    type=click.FloatRange(0, 1, min_open=True),
    default=GREEN_AT,
    show_default=True,
    help="ratio: list an item as green when its boost (0..1) is at least this.",
)
@click.option(
    "--context-weights",
    default=None,
    metavar="FULL,PARTIAL,EMPTY",
    help="ratio: weights of the whole context, the strongest single context token and the empty "
    "context (default: the authors', 0,0,1 for h = 0, 2,0,0 LeftHash, 2,1,0.5 SelfHash).",
)
@click.option(
    "--one-per-file", is_flag=True, help="Plain-text inputs hold one text per file (default: per line)."
)
@model_option(
    "Tokenizer of the model that wrote the texts (default smollm2-135m). The model is never loaded."
)
@scheme_options
@override_config_option
@key_option
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), required=True, help="Write the stolen list here."
)
@force_option
@json_option
def steal_command(
    wm_paths,
    nat_paths,
    method,
    threat,
    z_threshold,
    time_limit,
    solver,
    weights,
    binary,
    green_at,
    context_weights,
    one_per_file,
    model,
    key_path,
    output,
    as_json,
    scheme,
    config_path,
    **kwargs,
):
    """Steal a green list from texts labelled watermarked and natural.

    --method mip (default) solves Zhang et al.'s program for --threat; --gamma is the green
    fraction the attacker knows (vanilla/oracle/pro; ignored by blind). --method ratio fits
    Jovanovic et al.'s frequency-ratio scores (no detector, no parameters; --context-width and
    --seeding name the scheme's context). Either way every observed token (or (context, token)
    pair) gets a score in the output. Give --key with --config or scheme flags to score the
    result against the true list.
    """
    flags = pop_scheme_flags(kwargs)
    resolver = ConfigResolver(scheme, config_path, flags, default_scheme=_default_scheme(flags))
    check_outputs([output], [*wm_paths, *nat_paths, config_path], key_path)
    tok_name = canonical_name(model)
    with with_status(f"Loading tokenizer {tok_name}"):
        tok = load_tokenizer(tok_name)
    wm_records = _read(wm_paths, one_per_file)
    wm_ids = encode_texts(tok, [r.text for r in wm_records])
    nat_ids = encode_texts(tok, [r.text for r in _read(nat_paths, one_per_file)])
    known = _known(resolver, wm_records, flags, scheme, config_path, key_path, tok, tok_name)
    relabelled = None
    if method == "ratio":
        params = _ratio_params(context_weights, known.h, known.seeding)
        with with_status("Counting (context, token) frequencies"):
            stolen = steal_ratio(
                wm_ids, nat_ids, known.h, params, green_at=green_at, vocab_size=len(tok), gamma=known.gamma
            )
    else:
        if known.truth is not None and threat in ("vanilla", "oracle", "pro"):
            # the detector-access attacker relabels every text by the detector (Zhang et al.)
            relabelled = (len(wm_ids), len(nat_ids))
            wm_ids, nat_ids = _relabel_by_detector(known, wm_ids, nat_ids, z_threshold)
        mip = dict(z=z_threshold, relax=not binary, solver=solver, time_limit=time_limit, weights=weights)
        stolen = _steal_mip(known, tok, wm_ids, nat_ids, threat, mip)
    stolen.tokenizer = tok_name
    stolen.save(output)
    summary = _steal_summary(stolen, output, method, tok_name, known, relabelled, wm_ids, nat_ids, len(tok))
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


@dataclass
class _Known:
    """What the public config (the records', --config, flags) tells the attacker, and the true
    scheme when the evaluator holds the key."""

    public: ResolvedConfig | None
    truth: Any  # the true scheme, or None
    h: int  # previous ids that decide a token's list
    repeats: bool
    gamma: float | None  # known only from the data or an explicit --gamma
    seeding: str


def _known(resolver, wm_records, flags, scheme, config_path, key_path, tok, tok_name) -> _Known:
    """The public config tells the attacker h, gamma and the count mode; with flags alone, gamma
    is known only when --gamma is given."""
    from_data = config_path or key_path or any(r.config for r in wm_records)
    public = _records_config(resolver, wm_records) if (from_data or flags or scheme) else None
    if public and not hasattr(public.config, "gamma"):
        raise ConfigError(f"scheme {public.config.scheme!r} has no green list to steal")
    truth = _truth(public.config, key_path, tok, tok_name) if public and (key_path or config_path) else None
    return _Known(
        public=public,
        truth=truth,
        h=public.config.prefix_length if public else 0,
        repeats=public.config.count_repeats if public else False,
        gamma=public.config.gamma if public and (from_data or "gamma" in flags) else None,
        seeding=getattr(public.config, "seeding", "lefthash") if public else "lefthash",
    )


def _relabel_by_detector(known: _Known, wm_ids, nat_ids, z_threshold: float):
    """(watermarked, natural) as the true detector labels every text."""
    h, truth = known.h, known.truth
    return relabel(wm_ids + nat_ids, lambda ids: len(ids) > h and truth.detect(ids).z_score > z_threshold)


def _steal_mip(known: _Known, tok, wm_ids, nat_ids, threat: str, mip: dict[str, Any]) -> StolenList:
    """Zhang et al.'s program for `threat`; the oracle gets the exact green counts from the key.
    `mip`: z, relax, solver, time_limit, weights."""
    h, truth = known.h, known.truth
    counts = None
    if threat == "oracle":
        if truth is None:
            raise StealingConfigError(
                "--threat oracle needs the exact green counts: pass --key and the scheme config"
            )
        counts = [truth.detect(ids).green_count if len(ids) > h else 0 for ids in wm_ids + nat_ids]
    weights = mip["weights"]
    with with_status(f"Solving the {threat} program ({mip['solver']})"):
        return steal_list(
            wm_ids,
            nat_ids,
            threat,
            gamma=known.gamma,
            z=mip["z"],
            vocab_size=len(tok),
            exact_counts=counts,
            context_width=h,
            count_repeats=known.repeats,
            relax=mip["relax"],
            solver=mip["solver"],
            time_limit=mip["time_limit"],
            weights=weights,
            token_weights=lexical_token_weights(tok) if weights in ("lexical", "mixed") else None,
            null_fraction=_null_fraction(truth, len(tok)),
        )


def _steal_summary(
    stolen: StolenList, output, method, tok_name, known: _Known, relabelled, wm_ids, nat_ids, vocab: int
) -> dict[str, Any]:
    """What `wm steal` reports: the list's size and solver, and with the key its precision and
    recall against the truth and the frequency baseline's."""
    summary: dict[str, Any] = {
        "output": output,
        "method": method,
        "threat": stolen.threat,
        "tokenizer": tok_name,
        "stolen": len(stolen),
        "watermarked_texts": stolen.num_watermarked,
        "natural_texts": stolen.num_natural,
        "candidates": stolen.num_candidates,
        "solver": {k: v for k, v in stolen.solver.items() if k != "stages"},
        "scored_items": len(stolen.scores),
    }
    if known.public is not None:
        summary["config"] = known.public.config.to_dict()
        summary["config_conflicts"] = conflicts_json(known.public)
    if relabelled is not None:
        summary["relabelled"] = {
            "given": {"watermarked": relabelled[0], "natural": relabelled[1]},
            "by_detector": {"watermarked": len(wm_ids), "natural": len(nat_ids)},
        }
    truth, h, repeats = known.truth, known.h, known.repeats
    if truth is not None:
        summary["evaluation"] = _evaluate(stolen, truth, wm_ids, nat_ids, h, repeats)
        base = frequency_baseline(wm_ids, nat_ids, gamma=known.gamma, vocab_size=vocab, context_width=h)
        summary["baseline"] = _evaluate(base, truth, wm_ids, nat_ids, h, repeats)
        summary["baseline"]["stolen"] = len(base)
    return summary


def _null_fraction(truth, vocab: int) -> float | None:
    """The detector's green probability when the evaluator holds the key: K/N for one fixed list
    (h = 0, K drawn around gamma N by the PRF), else None (gamma)."""
    if truth is None or truth.config.context_width != 0:
        return None
    return int(truth.fixed_green_mask(vocab).sum()) / vocab


def _ratio_params(spec: str | None, h: int, seeding: str) -> RatioParams:
    base = default_params(h, seeding)
    if spec is None:
        return base
    try:
        full, partial, empty = (float(x) for x in spec.split(","))
    except ValueError:
        raise StealingConfigError(
            f"--context-weights takes three numbers FULL,PARTIAL,EMPTY, got {spec!r}"
        ) from None
    params = RatioParams(
        min_count_nonempty=base.min_count_nonempty,
        min_mass_empty=base.min_mass_empty,
        clip_at=base.clip_at,
        w_full=full,
        w_partials=partial,
        w_empty=empty,
    )
    params.validate()
    return params


def _print_summary(s: dict[str, Any]) -> None:
    st = s["solver"]
    title = "frequency ratio" if s["method"] == "ratio" else s["threat"]
    table = Table(title=f"Green-list stealing ({title})")
    table.add_column("field")
    table.add_column("value", justify="right")
    rows = [
        ("texts (watermarked / natural)", f"{s['watermarked_texts']} / {s['natural_texts']}"),
        ("candidate items (scored)", str(s["candidates"])),
        ("stolen (green)", str(s["stolen"])),
    ]
    if s["method"] == "mip":
        rows += [
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


class _Judge:
    """The real detector each record is judged by, its config resolved exactly as `wm detect`
    resolves it (the record's config, then --config, then flags); None without --key/--config."""

    def __init__(self, key_path, scheme, config_path, flags, tok, tok_name):
        self.on = bool(key_path or config_path)
        self.resolver = ConfigResolver(scheme, config_path, flags, default_scheme=_default_scheme(flags))
        self.key = load_key(key_path) if self.on else None
        self.tok, self.tok_name = tok, tok_name
        self._schemes: dict[str, Any] = {}

    def __call__(self, record_config=None, where: str | None = None) -> tuple[Any, list[dict[str, Any]]]:
        if not self.on:
            return None, []
        resolved = self.resolver(record_config, where)
        config = bind_tokenizer(resolved.config, len(self.tok), self.tok_name)
        ck = config.to_json()
        if ck not in self._schemes:
            self._schemes[ck] = build_scheme(config, self.key)
        return self._schemes[ck], conflicts_json(resolved)


@click.command("scrub")
@click.argument("input_path", metavar="INPUT")
@click.option(
    "--stolen", "stolen_path", required=True, type=click.Path(dir_okay=False), help="From `wm steal`."
)
@click.option(
    "--top-k", type=click.IntRange(1), default=10, show_default=True, help="Candidates per position."
)
@click.option("--beam", type=click.IntRange(1), default=1, show_default=True, help="1 = greedy.")
@click.option(
    "--target-z",
    type=float,
    default=None,
    help="Plan the edits from the stolen scores: edit the cheapest believed-green units until the "
    "attacker's estimated z falls to this (default: edit every believed-green token).",
)
@click.option(
    "--penalty",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Rank replacements by log-probability minus this x their stolen boost.",
)
@click.option("--whole-words", is_flag=True, help="Edit whole words only, replacing them by whole words.")
@click.option(
    "--paraphrase",
    "para",
    is_flag=True,
    help="Jovanovic et al.'s scrubber: paraphrase sentence by sentence with the model while "
    "subtracting the stolen boosts (see --strength) instead of replacing tokens.",
)
@click.option(
    "--strength",
    type=click.FloatRange(max=0),
    default=None,
    help="--paraphrase: boost weight, <= 0 (default: the authors' -2 for h = 0, -2.5 LeftHash, -10 SelfHash).",
)
@click.option(
    "--rewrites",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="--paraphrase: rewrite each text this many ways (greedy at --strength, greedy at twice it, then "
    "sampled) and keep, within --max-ppl-ratio, the most fluent rewrite whose z-estimate is at most "
    "--target-z, else the lowest estimate, judged by the attacker's model and stolen scores only "
    "(with --mix, a mix of the rewrites and the original sentence by sentence is a candidate too; "
    "`scrub.rewrite` is -2 for it); believed-green items left above --target-z are then replaced within "
    "the budget (in the kept rewrite, the most fluent one, or the original itself; -1 for the original).",
)
@click.option(
    "--mix/--no-mix",
    default=True,
    show_default=True,
    help="--rewrites: also mix the rewrites and the original sentence by sentence: per sentence the "
    "version that leaves the fewest believed-green items for its perplexity, within the budget.",
)
@click.option(
    "--max-ppl-ratio",
    type=click.FloatRange(0, min_open=True),
    default=2.0,
    show_default=True,
    help="--rewrites: a rewrite's perplexity budget, as a multiple of the original's.",
)
@click.option(
    "--copied-rate",
    type=click.FloatRange(0, 1),
    default=None,
    help="--rewrites: count every (context, token) item a rewrite copies from the watermarked original "
    "as green at least this often in the attacker's estimate (default: 0.5 for h >= 1, off for h = 0).",
)
@click.option(
    "--lookahead",
    type=click.IntRange(0),
    default=None,
    help="--rewrites: price this many candidate replacements (the cheapest by their own token) on the "
    "whole text, as the real perplexity check will, and plan only those (default: 48; 0 prices each by "
    "its own token).",
)
@click.option("--candidates", type=click.Choice(["model", "embedding"]), default="model", show_default=True)
@click.option("--max-edit-rate", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True)
@model_option("Model for candidates and perplexity (default: the stolen list's tokenizer).")
@scheme_options
@override_config_option
@key_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Write JSONL here.")
@json_option
@force_option
def scrub_command(
    input_path,
    stolen_path,
    top_k,
    beam,
    target_z,
    penalty,
    whole_words,
    para,
    strength,
    rewrites,
    mix,
    max_ppl_ratio,
    copied_rate,
    lookahead,
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
    """Rewrite watermarked INPUT texts, replacing tokens the stolen list calls green (or, with
    --paraphrase, rewriting them away from the list)."""
    from wm_toolkit.attacks.scrub import success_rate

    flags = pop_scheme_flags(kwargs)
    check_outputs([output], [input_path, stolen_path, config_path], key_path)
    records = read_records(input_path)
    name = canonical_name(model or StolenList.load(stolen_path).tokenizer)
    with with_status(f"Loading {name}"):
        lm, tok = load_model(name)
    stolen = _load_stolen(stolen_path, tok)
    judge = _Judge(key_path, scheme, config_path, flags, tok, name)
    truths = [judge(rec.config, rec.source) for rec in records]  # config errors before any work
    if para:
        selection = (rewrites, max_ppl_ratio, target_z, copied_rate, lookahead, mix) if rewrites > 1 else None
        _paraphrase_scrub(
            records, lm, tok, stolen, strength, truths, judge.on, alpha, output, as_json, selection
        )
        return
    options = dict(
        top_k=top_k,
        beam=beam,
        candidates=candidates,
        max_edit_rate=max_edit_rate,
        target_z=target_z,
        penalty=penalty,
        words_only=whole_words,
    )
    out, p_before, p_after = _token_scrub(records, lm, tok, stolen, truths, options)
    write_jsonl(output, out)
    summary: dict[str, Any] = {"output": output, "texts": len(out), "stolen": len(stolen)}
    summary["mean_edit_rate"] = sum(r["scrub"]["edit_rate"] for r in out) / max(len(out), 1)
    summary["mean_ppl_before"] = sum(r["scrub"]["ppl_before"] for r in out) / max(len(out), 1)
    summary["mean_ppl_after"] = sum(r["scrub"]["ppl_after"] for r in out) / max(len(out), 1)
    if judge.on:
        summary["flagged_before"] = 1.0 - success_rate(p_before, alpha)
        summary["success_rate"] = success_rate(p_after, alpha)
    if as_json:
        print_json(summary)
        return
    _kv_table("Scrubbing with a stolen list", summary)


def _token_scrub(records, lm, tok, stolen, truths, options: dict[str, Any]):
    """Each record scrubbed token by token (`scrub_texts` with `options`), judged by its true
    detector where there is one. -> (rows, p-values before, p-values after)"""
    from wm_toolkit.attacks.scrub import scrub_texts

    out, p_before, p_after = [], [], []
    with progress() as bar:
        task = bar.add_task("Scrubbing", total=len(records))
        for rec, (truth, conflicts) in zip(records, truths, strict=True):
            ((text, ids, res),) = scrub_texts(
                lm,
                tok,
                [rec.text],
                stolen,
                prompts=[rec.prompt],
                **options,
            )
            row = (
                {**rec.record, "text": text, "scrub": res.to_dict()}
                if rec.record
                else {"text": text, "scrub": res.to_dict()}
            )
            if truth is not None:
                before = truth.detect(encode_texts(tok, [rec.text])[0]).p_value
                after = truth.detect(ids).p_value if len(ids) >= truth.min_tokens else 1.0
                row["scrub"].update(p_before=before, p_after=after, config_conflicts=conflicts)
                p_before.append(before)
                p_after.append(after)
            out.append(row)
            bar.advance(task)
    return out, p_before, p_after


def _paraphrase_scrub(
    records, lm, tok, stolen, strength, truths, judged, alpha, output, as_json, selection=None
) -> None:
    """`truths`: per record, (the real detector or None, config conflicts), resolved as wm detect does.
    `selection`: (rewrites, max perplexity ratio, target z, copied rate, lookahead, mix) for `rewrite_scrub`,
    else one rewrite."""
    from wm_toolkit.attacks.scrub import (
        default_scrub_strength,
        paraphrase_scrub,
        rewrite_scrub,
        rewrite_settings,
        success_rate,
    )
    from wm_toolkit.watermark.measure.evaluation import text_perplexities

    s = default_scrub_strength(stolen) if strength is None else strength
    prompts = [r.prompt for r in records]
    choices = None
    if selection is not None:
        count, ratio, target, copied_rate, lookahead, mix = selection
        extra = {} if lookahead is None else {"lookahead": lookahead}
        with with_status(f"Rewriting {len(records)} texts {count} ways"):
            choices = rewrite_scrub(lm, tok, [r.text for r in records], stolen, prompts,
                                    settings=rewrite_settings(s, count), max_ppl_ratio=ratio,
                                    target_z=target, copied_rate=copied_rate, mix=mix, **extra)  # fmt: skip
        texts = [c.text for c in choices]
    else:
        with progress() as bar:
            task = bar.add_task("Paraphrasing", total=len(records))
            texts = paraphrase_scrub(
                lm, tok, [r.text for r in records], stolen, s, on_item=lambda n: bar.advance(task, n)
            )
    if choices is not None:  # rewrite_scrub scored them already, with the same function
        before, after = [c.ppl_before for c in choices], [c.ppl_after for c in choices]
    else:
        before = text_perplexities(lm, tok, [r.text for r in records], prompts)
        after = text_perplexities(lm, tok, texts, prompts)
    out, p_before, p_after = [], [], []
    for j, (rec, text, pb, pa, (truth, conflicts)) in enumerate(
        zip(records, texts, before, after, truths, strict=True)
    ):
        info: dict[str, Any] = {
            "mode": "paraphrase" if choices is None else "rewrite",
            "strength": s,
            "ppl_before": float(pb),
            "ppl_after": float(pa),
        }
        if choices is not None:
            info.update({k: v for k, v in choices[j].to_dict().items() if not k.startswith("ppl")})
        if truth is not None:
            ids = encode_texts(tok, [text])[0]
            info["p_before"] = truth.detect(encode_texts(tok, [rec.text])[0]).p_value
            info["p_after"] = truth.detect(ids).p_value if len(ids) >= truth.min_tokens else 1.0
            info["config_conflicts"] = conflicts
            p_before.append(info["p_before"])
            p_after.append(info["p_after"])
        out.append({**(rec.record or {}), "text": text, "scrub": info})
    write_jsonl(output, out)
    mode = "paraphrase" if choices is None else "rewrite"
    summary: dict[str, Any] = {"output": output, "texts": len(out), "mode": mode, "strength": s}
    summary["mean_ppl_before"] = float(sum(before) / max(len(out), 1))
    summary["mean_ppl_after"] = float(sum(after) / max(len(out), 1))
    if judged:
        summary["flagged_before"] = 1.0 - success_rate(p_before, alpha)
        summary["success_rate"] = success_rate(p_after, alpha)
    if as_json:
        print_json(summary)
        return
    _kv_table("Scrubbing by paraphrase, away from a stolen list", summary)


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
    default=None,
    help="Spoofer strength: logit bias x boost on believed-green tokens (default 2.0 for a MIP "
    "list; for a ratio list the authors' 3 for h = 0, 6.5 LeftHash, 7.5 SelfHash).",
)
@click.option(
    "--repetition-penalty",
    type=click.FloatRange(1.0),
    default=1.0,
    show_default=True,
    help="Divide the logit of a token that repeats an (h+1)-gram of the response (authors: 1.6 for h >= 1).",
)
@click.option(
    "--repetition-ngram",
    type=click.IntRange(1),
    default=None,
    help="n of the repetition penalty (default h + 1, the authors'; e.g. 3 for h = 0 breaks loops "
    "without penalising every repeated word).",
)
@click.option("--max-new-tokens", type=click.IntRange(1), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0), default=1.0, show_default=True)
@click.option("--seed", type=SEED_RANGE, default=None)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True)
@model_option("Unwatermarked model to generate with (default: the stolen list's tokenizer).")
@scheme_options
@override_config_option
@key_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Write JSONL here.")
@json_option
@force_option
def spoof_command(
    stolen_path,
    prompt_file,
    limit,
    delta_bias,
    repetition_penalty,
    repetition_ngram,
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
    from wm_toolkit.attacks.spoof import default_strength, flagged_rate, spoof_generate

    flags = pop_scheme_flags(kwargs)
    check_outputs([output], [prompt_file, stolen_path, config_path], key_path)
    prompt_records = read_records(prompt_file, one_per_line=True, field_name="prompt")[:limit]
    prompts = [r.text for r in prompt_records]
    name = canonical_name(model or StolenList.load(stolen_path).tokenizer)
    with with_status(f"Loading {name}"):
        lm, tok = load_model(name)
    stolen = _load_stolen(stolen_path, tok)
    judge = _Judge(key_path, scheme, config_path, flags, tok, name)
    truths = [judge(r.config, r.source) for r in prompt_records]  # config errors before any work
    if delta_bias is None:
        delta_bias = default_strength(stolen)
    with progress() as bar:
        task = bar.add_task("Generating", total=len(prompts))
        gens = spoof_generate(
            lm,
            tok,
            prompts,
            stolen,
            delta=delta_bias,
            repetition_penalty=repetition_penalty,
            repetition_ngram=repetition_ngram,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            temperature=temperature,
            seed=seed,
            on_batch=lambda n: bar.advance(task, n),
        )
    rows, pv = [], []
    for g, (truth, conflicts) in zip(gens, truths, strict=True):
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
            row["spoof"].update(p_value=p, config_conflicts=conflicts)
            pv.append(p)
        rows.append(row)
    write_jsonl(output, rows)
    summary: dict[str, Any] = {
        "output": output,
        "texts": len(rows),
        "stolen": len(stolen),
        "bias": delta_bias,
    }
    if judge.on:
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

__all__ = ["InputError", "scrub_command", "spoof_command", "steal"]

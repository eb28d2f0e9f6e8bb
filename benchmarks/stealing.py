"""Benchmark: green-list stealing (Zhang et al. 2024) per threat model vs the frequency baseline.

Three parts, each printed as a markdown table; the last line is one JSON object.
1. Synthetic Zipf LM (attacks/synthetic.py), Unigram-style list, 200-token texts, growing
   corpora: precision/recall/F1, solve time and solver memory per threat model.
2. The real default model (smollm2-135m) on cached corpora (benchmarks/stealing_corpus.py):
   Unigram at growing sizes and KGW h = 1 (pairs), the same table (plus the paper's lexical
   weights), then scrubbing (greedy, model top-k) and spoofing with the stolen lists of the
   corpora named by --scrub-corpora.
3. h = 1 on a synthetic Markov chain with the real PRF: the program over (context, token) pairs.

    python benchmarks/stealing.py --quick          # small sizes, minutes
    python benchmarks/stealing.py                  # synthetic + real; the real-model commands of
                                                   # benchmarks/results/stealing.md use --real-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wm_toolkit.attacks.stealing import (  # noqa: E402
    build_corpus,
    frequency_baseline,
    lexical_token_weights,
    ranked_items,
    relabel,
    score_list,
    steal,
    steal_ratio,
)
from wm_toolkit.attacks.synthetic import SyntheticLM  # noqa: E402

THREATS = ("vanilla", "oracle", "pro", "blind")
RESULTS = Path(__file__).resolve().parent / "results"


def run_threats(
    wm, nat, truth, gamma, vocab, counts_fn, label_fn, time_limit, threats=THREATS, h=0, token_weights=None
):
    """Steal with every threat model; labels for vanilla/oracle/pro come from the detector.

    With `token_weights` (the paper's lexical stage-2 weights) vanilla and pro run once more with
    them ("+lexical"), and the baseline once more with the authors' filter of stop words and
    tokens of at most two characters ("frequency+filter")."""
    texts = wm + nat
    flagged = np.array([label_fn(t) for t in texts])
    det_w = [t for t, f in zip(texts, flagged, strict=True) if f]
    det_h = [t for t, f in zip(texts, flagged, strict=True) if not f]
    corpus = build_corpus(wm, nat, h)
    observed = [tuple(r) if h else int(r[0]) for r in corpus.items]
    rows = []
    runs = [(t, {}) for t in threats]
    if token_weights is not None:
        runs += [(t, {"weights": "lexical", "token_weights": token_weights}) for t in ("vanilla", "pro")]
    for threat, extra in runs:
        t0 = time.perf_counter()
        if threat == "oracle":
            s = steal(wm, nat, "oracle", gamma=gamma, vocab_size=vocab, exact_counts=[counts_fn(t) for t in texts],
                      context_width=h, time_limit=time_limit)  # fmt: skip
        elif threat == "blind":
            s = steal(wm, nat, "blind", context_width=h, time_limit=time_limit)
        else:
            s = steal(
                det_w, det_h, threat, gamma=gamma, vocab_size=vocab, context_width=h, time_limit=time_limit,
                **extra,
            )  # fmt: skip
        wall = time.perf_counter() - t0
        items = s.green_pairs if h else s.green_token_ids
        sc = score_list(items, truth, observed=observed)
        row = _row(threat + ("+lexical" if extra else ""), sc, len(items), wall, s.solver)
        # the baseline's best `len(items)` items: precision at the program's list size
        same = frequency_baseline(wm, nat, gamma=gamma, vocab_size=vocab, context_width=h, size=len(items))
        same_items = same.green_pairs if h else same.green_token_ids
        row["freq_precision_same_size"] = round(score_list(same_items, truth).precision, 3)
        rows.append(row)
    t0 = time.perf_counter()
    b = frequency_baseline(wm, nat, gamma=gamma, vocab_size=vocab, context_width=h)
    items = b.green_pairs if h else b.green_token_ids
    rows.append(
        _row(
            "frequency", score_list(items, truth, observed=observed), len(items), time.perf_counter() - t0, {}
        )
    )
    if token_weights is not None:
        t0 = time.perf_counter()
        skip = np.flatnonzero(np.asarray(token_weights) > 1).tolist()
        b = frequency_baseline(wm, nat, gamma=gamma, vocab_size=vocab, skip_ids=skip)
        sc = score_list(b.green_token_ids, truth, observed=observed)
        rows.append(_row("frequency+filter", sc, len(b.green_token_ids), time.perf_counter() - t0, {}))
    return rows, int(flagged[: len(wm)].sum()), int(flagged[len(wm) :].sum())


def _row(name, sc, n, wall, solver):
    return {
        "method": name,
        "stolen": n,
        "precision": round(sc.precision, 3),
        "recall": round(sc.recall, 3),
        "recall_observed": round(sc.recall_observed or 0.0, 3),
        "f1": round(sc.f1, 3),
        "seconds": round(wall, 2),
        "status": solver.get("status", "closed form"),
        "vars": solver.get("variables", 0),
        "cons": solver.get("constraints", 0),
        "elastic": solver.get("elastic", False),
        "solver_rss_mb": solver.get("solver_peak_rss_mb"),
    }


def print_table(title, rows, extra=()):
    cols = ["method", "stolen", "precision", "freq_precision_same_size", "recall", "recall_observed", "f1",
            "seconds", "status", "vars", "cons", "elastic", "solver_rss_mb", *extra]  # fmt: skip
    print(f"\n### {title}\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |", flush=True)


def synthetic_part(sizes, settings, time_limit, vocab):
    out = []
    for gamma, delta in settings:
        lm = SyntheticLM(vocab_size=vocab, gamma=gamma, delta=delta, zipf_exponent=1.1, seed=0)
        for n in sizes:
            wm, nat = lm.sample(n, 200, True, 1), lm.sample(n, 200, False, 2)
            rows, fw, fh = run_threats(
                wm, nat, lm.green.tolist(), lm.green_fraction, vocab, lm.green_count,
                lambda t, lm=lm: lm.z(t) > 4, time_limit,
            )  # fmt: skip
            print_table(
                f"Synthetic Zipf LM, V={vocab}, gamma={gamma}, delta={delta}, {n}+{n} texts of 200 tokens "
                f"(detector flags {fw}/{n} watermarked, {fh}/{n} natural)",
                rows,
            )
            out.append({"gamma": gamma, "delta": delta, "n": n, "rows": rows})
    return out


UNIGRAM_CORPORA = ("unigram-g0.25-d2", "unigram-g0.5-d4")
CONTEXT_CORPUS = "kgw-h1-g0.25-d2"


def real_part(
    n_scrub, n_spoof, time_limit, sizes, scrub_threats=("vanilla", "pro"), corpora=UNIGRAM_CORPORA,
    scrub_corpora=("unigram-g0.25-d2",),
):  # fmt: skip
    from benchmarks.stealing_corpus import load_corpus, scheme_for
    from wm_toolkit.watermark.modeling.models import load_tokenizer

    nat_all = load_corpus("natural")
    tok = load_tokenizer()
    lexical = lexical_token_weights(tok)  # decodes the whole vocabulary: once, not per corpus
    results = []
    for name in [c for c in UNIGRAM_CORPORA if c in corpora]:
        wm_all = load_corpus(name)
        n_max = min(len(wm_all), len(nat_all))
        if n_max == 0:
            print(f"\n(no cached corpus for {name}: run benchmarks/stealing_corpus.py first)")
            continue
        scheme = scheme_for(name, len(tok))
        truth = scheme.green_token_ids().tolist()
        cfg = scheme.config
        for n in [s for s in sizes if s < n_max] + [n_max]:
            wm = [r["token_ids"] for r in wm_all[:n]]
            nat = [r["token_ids"] for r in nat_all[:n]]
            rows, fw, fh = run_threats(
                wm, nat, truth, cfg.gamma, len(tok), lambda t, s=scheme: s.detect(t).green_count,
                lambda t, s=scheme: s.detect(t).z_score > 4, time_limit, token_weights=lexical,
            )  # fmt: skip
            print_table(
                f"smollm2-135m, {name}, {n}+{n} texts (detector flags {fw}/{n} watermarked, {fh}/{n} natural)",
                rows,
            )
            results.append({"corpus": name, "n": n, "rows": rows})
        if name in scrub_corpora and (n_scrub or n_spoof):
            results.append(
                scrub_spoof(
                    wm_all[:n_max], nat_all[:n_max], scheme, n_scrub, n_spoof, time_limit, scrub_threats
                )
            )
    return results


def real_context_part(
    time_limit, name=CONTEXT_CORPUS, threats=("vanilla", "oracle", "pro", "blind"), n_scrub=0, n_spoof=0,
    scrub_threats=("vanilla", "pro"),
):  # fmt: skip
    """KGW h = 1 on the real model: the program over observed (previous token, token) pairs.

    The true list has gamma * V^2 pairs, most never seen, so recall is over the observed pairs
    (`truth` = the observed pairs the real PRF calls green); precision is exact."""
    import torch

    from benchmarks.stealing_corpus import load_corpus, scheme_for
    from wm_toolkit.watermark.modeling.models import load_tokenizer

    nat_all, wm_all = load_corpus("natural"), load_corpus(name)
    n = min(len(nat_all), len(wm_all))
    if n == 0:
        print(f"\n(no cached corpus for {name}: run benchmarks/stealing_corpus.py first)")
        return {}
    tok = load_tokenizer()
    scheme = scheme_for(name, len(tok))
    wm = [r["token_ids"] for r in wm_all[:n]]
    nat = [r["token_ids"] for r in nat_all[:n]]
    pairs = build_corpus(wm, nat, 1).items
    seeds = torch.from_numpy(scheme.seeds_for(pairs[:, :1]).reshape(-1))
    green = scheme.is_green(seeds, torch.from_numpy(pairs[:, 1].astype(np.int64))).numpy()
    truth = [tuple(int(x) for x in p) for p in pairs[green]]
    rows, fw, fh = run_threats(
        wm, nat, truth, scheme.config.gamma, len(tok), lambda t: scheme.detect(t).green_count,
        lambda t: scheme.detect(t).z_score > 4, time_limit, threats=threats, h=1,
    )  # fmt: skip
    print_table(
        f"smollm2-135m, {name} (KGW LeftHash h = 1), {n}+{n} texts (detector flags {fw}/{n} watermarked, "
        f"{fh}/{n} natural); {len(pairs)} observed pairs, {len(truth)} of them green; recall is over those",
        rows,
    )
    out = {
        "corpus": name,
        "n": n,
        "observed_pairs": int(len(pairs)),
        "observed_green": len(truth),
        "rows": rows,
    }
    if n_scrub or n_spoof:
        out["scrub_spoof"] = scrub_spoof(
            wm_all[:n], nat_all[:n], scheme, n_scrub, n_spoof, time_limit, scrub_threats
        )
    return out


def scrub_spoof(wm_recs, nat_recs, scheme, n_scrub, n_spoof, time_limit, threats=("vanilla", "pro")):
    """Steal from the detector-labelled corpus (tokens, or pairs for h >= 1), then scrub the first
    `n_scrub` watermarked texts with each list and spoof `n_spoof` prompts with the vanilla list."""
    from wm_toolkit.attacks.scrub import scrub_texts, success_rate
    from wm_toolkit.attacks.spoof import flagged_rate, spoof_generate
    from wm_toolkit.watermark.modeling.models import load_model

    model, tok = load_model()
    det_w, det_h = [], []
    for r in wm_recs + nat_recs:
        (det_w if scheme.detect(r["token_ids"]).z_score > 4 else det_h).append(r["token_ids"])
    cfg = scheme.config
    out = {
        "part": "scrub_spoof",
        "corpus": f"{cfg.scheme} h={cfg.context_width} gamma={cfg.gamma} delta={cfg.delta}",
    }
    for threat in threats:
        stolen = steal(
            det_w, det_h, threat, gamma=scheme.config.gamma, vocab_size=len(tok), time_limit=time_limit,
            context_width=scheme.config.context_width,
        )  # fmt: skip
        recs = wm_recs[:n_scrub]
        t0 = time.perf_counter()
        res = scrub_texts(model, tok, [r["text"] for r in recs], stolen, prompts=[r["prompt"] for r in recs],
                          top_k=10, beam=1, max_edit_rate=0.5)  # fmt: skip
        p_before = [scheme.detect(r["token_ids"]).p_value for r in recs]
        p_after = [scheme.detect(ids).p_value for _, ids, _ in res]
        out[f"scrub_{threat}"] = {
            "texts": len(recs),
            "stolen": len(stolen),
            "flagged_before": 1 - success_rate(p_before, 1e-3),
            "success_rate": success_rate(p_after, 1e-3),
            "median_p_after": float(np.median(p_after)),
            "ppl_before": float(np.median([r.ppl_before for _, _, r in res])),
            "ppl_after": float(np.median([r.ppl_after for _, _, r in res])),
            "edit_rate": float(np.mean([r.edit_rate for _, _, r in res])),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(f"\nscrub ({threat} list of {len(stolen)}): {json.dumps(out[f'scrub_{threat}'])}", flush=True)
        if threat == "vanilla" and n_spoof:
            t0 = time.perf_counter()
            gens = spoof_generate(model, tok, [r["prompt"] for r in nat_recs[:n_spoof]], stolen, delta=2.0,
                                  max_new_tokens=200, min_new_tokens=200, batch_size=n_spoof, temperature=0.7,
                                  seed=7)  # fmt: skip
            p = [scheme.detect(g.token_ids).p_value for g in gens]
            out["spoof_vanilla"] = {"texts": len(gens), "flagged_rate": flagged_rate(p, 1e-3),
                                    "median_p": float(np.median(p)), "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
            print(f"spoof (vanilla list, bias 2): {json.dumps(out['spoof_vanilla'])}", flush=True)
    return out


def context_part(n, vocab, time_limit):
    """h = 1: a Zipf Markov chain whose green bias follows the real PRF of the previous token."""
    import torch

    from wm_toolkit.watermark.keying.keys import Key
    from wm_toolkit.watermark.schemes.greenlist import GreenListConfig, GreenListScheme

    scheme = GreenListScheme(
        GreenListConfig(vocab_size=vocab, gamma=0.25, delta=2.0, context_width=1), Key.from_seed("bench-h1")
    )
    seeds = torch.from_numpy(scheme.seeds_for(np.arange(vocab).reshape(-1, 1)))
    table = scheme.vocab_green_mask(seeds, vocab).numpy()
    base = 1.0 / np.arange(1, vocab + 1) ** 1.1
    rng = np.random.default_rng(0)

    def chain(watermarked):
        probs = base * np.exp(2.0 * table) if watermarked else np.broadcast_to(base, table.shape)
        cdf = np.cumsum(probs / probs.sum(1, keepdims=True), axis=1)
        texts = []
        for _ in range(n):
            t = [int(rng.integers(vocab))]
            for u in rng.random(199):
                t.append(min(int(np.searchsorted(cdf[t[-1]], u)), vocab - 1))
            texts.append(t)
        return texts

    wm, nat = chain(True), chain(False)
    truth = [tuple(int(x) for x in p) for p in np.argwhere(table)]
    rows, fw, fh = run_threats(
        wm, nat, truth, 0.25, vocab, lambda t: scheme.detect(t).green_count,
        lambda t: scheme.detect(t).z_score > 4, time_limit, threats=("vanilla", "oracle"), h=1,
    )  # fmt: skip
    print_table(
        f"h = 1 (KGW LeftHash PRF), synthetic Zipf chain, V={vocab} ({vocab * vocab} pairs), {n}+{n} texts of "
        f"200 tokens (flags {fw}/{n}, {fh}/{n}); recall is over all {len(truth)} green pairs",
        rows,
    )
    return {"h": 1, "vocab": vocab, "n": n, "rows": rows}


# ---- precision against list size (issue 13) -------------------------------------------------------
def ranking_curves(wm, nat, truth, gamma, vocab, h, flagged, counts_fn, time_limit, null_fraction=None):
    """Precision of the k best-scored items for every method, k = 1..(list or ranking length).

    The ratio and frequency rankings run over every scored item; each MIP list is ranked by its
    own scores (LP value, ties by the frequency ratio) and drawn up to the list it returns.
    vanilla/pro/oracle see the detector's labels (`flagged`), blind and ratio the source labels."""
    truth_set = {x if not isinstance(x, (list, tuple)) else tuple(x) for x in truth}
    det_w, det_h = relabel(wm + nat, flagged)
    texts = wm + nat

    def curve(items):
        hits = np.cumsum([(tuple(x) if isinstance(x, tuple) else x) in truth_set for x in items])
        return (hits / np.arange(1, len(hits) + 1)).round(4).tolist()

    out = {}
    t0 = time.perf_counter()
    ratio = steal_ratio(wm, nat, h, vocab_size=vocab)
    out["ratio (Jovanovic et al.)"] = {"precision": curve(ranked_items(ratio)), "list": len(ratio),
                                       "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
    t0 = time.perf_counter()
    freq = frequency_baseline(wm, nat, context_width=h)
    out["frequency ratio (Zhang et al. baseline)"] = {
        "precision": curve(ranked_items(freq)), "list": None, "seconds": round(time.perf_counter() - t0, 2)
    }  # fmt: skip
    extra = {"null_fraction": null_fraction} if null_fraction else {}
    runs = [
        ("vanilla", det_w, det_h, {}),
        ("vanilla, no pruning", det_w, det_h, {"red_below": None}),
        ("pro", det_w, det_h, {}),
        ("oracle", wm, nat, {"exact_counts": [counts_fn(t) for t in texts]}),
        ("blind", wm, nat, {}),
    ]
    for name, w, n, kw in runs:
        threat = name.split(",")[0]
        t0 = time.perf_counter()
        g = None if threat == "blind" else gamma
        s = steal(w, n, threat, gamma=g, vocab_size=vocab, context_width=h, time_limit=time_limit,
                  **({} if threat == "blind" else extra), **kw)  # fmt: skip
        items = ranked_items(s, len(s))
        out[name] = {"precision": curve(items), "list": len(s), "seconds": round(time.perf_counter() - t0, 2)}
    return out


def plot_curves(curves, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, c in curves.items():
        y = c["precision"]
        if not y:
            continue
        x = np.arange(1, len(y) + 1)
        style = "-" if c["list"] is None or name.startswith("ratio") else "--"
        (line,) = ax.plot(x, y, style, label=f"{name} ({c['list'] or len(y)})", lw=1.6)
        if c["list"] and name.startswith("ratio") and c["list"] <= len(y):
            ax.plot([c["list"]], [y[c["list"] - 1]], "o", color=line.get_color())
        elif c["list"]:
            ax.plot([len(y)], [y[-1]], "o", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlim(left=10)
    ax.set_xlabel("list size (best-scored items kept)")
    ax.set_ylabel("precision (fraction truly green)")
    ax.set_ylim(0.2, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curve_table(curves, sizes=(50, 100, 200, 300, 400, 500, 1000, 2000, 5000)):
    """Markdown: precision at fixed list sizes (blank beyond a method's list)."""
    lines = [
        "| method | list | " + " | ".join(f"@{k}" for k in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for name, c in curves.items():
        y = c["precision"]
        cells = [f"{y[k - 1]:.3f}" if k <= len(y) else "" for k in sizes]
        lines.append(f"| {name} | {c['list'] or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def planted_curves(time_limit, out_png):
    """Issue 13's planted corpus: 2,000 tokens, 500 green, bias e^2, 300 + 300 texts of 150."""
    lm = SyntheticLM(vocab_size=2000, gamma=0.25, delta=2.0, seed=0)
    wm, nat = lm.sample(300, 150, True, 1), lm.sample(300, 150, False, 2)
    curves = ranking_curves(
        wm, nat, lm.green.tolist(), 0.25, 2000, 0, lambda t: lm.z(t) > 4, lm.green_count, time_limit
    )
    plot_curves(curves, out_png, "Planted list: 2,000 tokens, 500 green (e^2), 300 + 300 texts of 150")
    print("\n### Precision against list size, planted corpus\n")
    print(curve_table(curves), flush=True)
    return {k: {"list": v["list"], "seconds": v["seconds"]} for k, v in curves.items()}


# ---- issue 13 on the real model: ratio stealing, spoofing and scrubbing at strength ---------------
def _ppl(model, tok, texts, prompts):
    """The one perplexity of issue 13's tables: the default model's exp(mean NLL) of the text,
    re-tokenised as the detector sees it, given its prompt in the chat template
    (`watermark.evaluation.text_perplexities`); used alike for plain, watermarked, spoofed and
    scrubbed texts."""
    from wm_toolkit.watermark.measure.evaluation import text_perplexities

    return text_perplexities(model, tok, list(texts), list(prompts))


def real_issue13(
    name, n, n_eval, time_limit, strengths, target_z, penalty, rep_penalty, curves=True,
    scrubbers=("replace", "paraphrase"), scrub_strength=None, spoof=True, eos_ban_z=None, spoof_max_new=None,
    spoof_batch=16, scrub_temperature=0.7, scrub_mode="sentence", scrub_batch=16, rewrites=2, rep_ngram=None,
    copied_rate=None, lookahead=None, mix=True, eval_start=0,
):  # fmt: skip
    """Steal from `n` + `n` corpus texts, then spoof and scrub on `n_eval` held-out prompts.

    Spoof: the unwatermarked model + strength x ratio boost, 200 tokens, T = 0.7, the held-out
    prompt's seed; success = detector p < 1e-3; perplexity (default model, given the prompt)
    beside plain generation with the same seeds. Scrub: the held-out watermarked generations,
    planned score-guided replacements ("replace") and/or the authors' paraphrase with the boosts
    subtracted ("paraphrase", sentence by sentence, the default model as rewriter); success =
    p > 0.05 at <= 2x the original's perplexity. `eval_start` scrubs only held-out texts
    eval_start..n_eval-1, so that two processes can share the texts of one run (one core each)."""
    import torch

    from benchmarks.stealing_corpus import (
        HELDOUT_SEED,
        MAX_NEW_TOKENS,
        TEMPERATURE,
        heldout,
        load_corpus,
        scheme_for,
    )
    from wm_toolkit.attacks.scrub import (
        WordFilter,
        default_scrub_strength,
        paraphrase_scrub,
        rewrite_scrub,
        rewrite_settings,
        scrub_ids,
    )
    from wm_toolkit.attacks.spoof import default_strength, spoof_generate
    from wm_toolkit.watermark.measure.evaluation import prompt_prefix
    from wm_toolkit.watermark.modeling.models import load_model

    torch.set_num_threads(1)
    model, tok = load_model()
    scheme = scheme_for(name, len(tok))
    cfg = scheme.config
    h = cfg.context_width
    wm = [r["token_ids"] for r in load_corpus(name, n)]
    nat = [r["token_ids"] for r in load_corpus("natural", n)]
    n = min(len(wm), len(nat))
    wm, nat = wm[:n], nat[:n]
    if n == 0:
        print(f"(no cached corpus for {name}: run benchmarks/stealing_corpus.py first)")
        return {}
    out = {"corpus": name, "n": n, "seeding": cfg.seeding, "h": h}
    flagged = lambda t: len(t) > h and scheme.detect(t).z_score > 4  # noqa: E731
    out["flagged"] = [sum(map(flagged, wm)), sum(map(flagged, nat))]
    if curves and h == 0:
        k_over_n = int(scheme.fixed_green_mask(len(tok)).sum()) / len(tok)
        truth = scheme.green_token_ids().tolist()
        c = ranking_curves(wm, nat, truth, cfg.gamma, len(tok), 0, flagged,
                           lambda t: scheme.detect(t).green_count, time_limit, null_fraction=k_over_n)  # fmt: skip
        png = RESULTS / f"stealing_precision_vs_size_{name}.png"
        plot_curves(c, png, f"smollm2-135m, {name}, {n} + {n} texts (truth: the whole list)")
        print(f"\n### Precision against list size, {name}, {n} + {n} texts\n")
        print(curve_table(c), flush=True)
        out["curves"] = {k: {"list": v["list"], "seconds": v["seconds"]} for k, v in c.items()}
    t0 = time.perf_counter()
    stolen = steal_ratio(wm, nat, h, seeding=cfg.seeding, vocab_size=len(tok), gamma=cfg.gamma)
    out["ratio_fit_s"] = round(time.perf_counter() - t0, 1)
    out["ratio_items"] = len(stolen.scores)
    # spoofing on held-out prompts
    plain = heldout("natural", n_eval, model, tok)
    prompts = [r["prompt"] for r in plain]
    p_plain = [scheme.detect_text(r["text"], tok).p_value for r in plain]
    ppl_plain = _ppl(model, tok, [r["text"] for r in plain], prompts)
    out["plain"] = {"flagged": int(sum(p < 1e-3 for p in p_plain)), "median_ppl": float(np.median(ppl_plain))}
    print(f"\nplain generation, {n_eval} held-out prompts: {json.dumps(out['plain'])}", flush=True)
    out["spoof"] = []
    for strength in (strengths or [default_strength(stolen)]) if spoof else []:
        t0 = time.perf_counter()
        # fixed 200 tokens like the plain texts, or (eos_ban_z) up to spoof_max_new tokens with the
        # end banned while the attacker's own z-estimate is below eos_ban_z
        length = {"max_new_tokens": spoof_max_new or MAX_NEW_TOKENS, "min_new_tokens": None}
        if eos_ban_z is None:
            length = {"max_new_tokens": MAX_NEW_TOKENS, "min_new_tokens": MAX_NEW_TOKENS}
        gens = spoof_generate(model, tok, prompts, stolen, delta=strength, repetition_penalty=rep_penalty,
                              repetition_ngram=rep_ngram,
                              batch_size=spoof_batch, temperature=TEMPERATURE, seed=HELDOUT_SEED,
                              eos_ban_z=eos_ban_z, **length)  # fmt: skip
        p = [scheme.detect_text(g.text, tok).p_value for g in gens]
        ppl = _ppl(model, tok, [g.text for g in gens], prompts)
        row = {"strength": strength, "repetition_penalty": rep_penalty, "repetition_ngram": rep_ngram,
               "eos_ban_z": eos_ban_z, "texts": len(gens),
               "flagged": int(sum(x < 1e-3 for x in p)), "median_p": float(np.median(p)),
               "median_ppl": float(np.median(ppl)), "median_tokens": float(np.median([g.num_tokens for g in gens])),
               "seconds": round(time.perf_counter() - t0, 1),
               "per_text": [[float(f"{a:.3g}"), round(float(b), 3)] for a, b in zip(p, ppl, strict=True)]}  # fmt: skip
        out["spoof"].append(row)
        print(f"spoof: {json.dumps(row)}", flush=True)
    # scrubbing the held-out watermarked texts
    wm_eval = heldout(name, n_eval, model, tok)[eval_start:]
    out["eval_start"] = eval_start
    banned = sorted(set(tok.all_special_ids))
    words = WordFilter(tok) if "replace" in scrubbers else None
    out["scrub"] = []
    for scrubber in scrubbers:
        t0 = time.perf_counter()
        rows = []
        choices = None
        if scrubber.startswith("paraphrase") or scrubber == "rewrite":
            s = 0.0 if scrubber == "paraphrase0" else scrub_strength  # paraphrase0: no boost, the control
            if scrubber == "rewrite":  # several rewrites, the attacker keeps one (its own model and scores)
                st = scrub_strength if scrub_strength is not None else default_scrub_strength(stolen)
                choices = rewrite_scrub(model, tok, [r["text"] for r in wm_eval], stolen,
                                        [r["prompt"] for r in wm_eval], settings=rewrite_settings(st, rewrites),
                                        max_ppl_ratio=2.0, target_z=target_z, mode=scrub_mode,
                                        batch_size=scrub_batch, copied_rate=copied_rate, mix=mix,
                                        on_text=lambda j, c: print(json.dumps(
                                            {"text": eval_start + j, "p": scheme.detect_text(c.text, tok).p_value,
                                             **c.to_dict()}), file=sys.stderr, flush=True),
                                        **({} if lookahead is None else {"lookahead": lookahead}))  # fmt: skip
                texts = [c.text for c in choices]
            else:
                texts = paraphrase_scrub(model, tok, [r["text"] for r in wm_eval], stolen, strength=s,
                                         mode=scrub_mode, temperature=scrub_temperature, seed=0,
                                         batch_size=scrub_batch)  # fmt: skip
            if choices is not None:  # scored by rewrite_scrub with the same perplexity function
                ppl_after, ppl_before = [c.ppl_after for c in choices], [c.ppl_before for c in choices]
            else:
                ppl_after = _ppl(model, tok, texts, [r["prompt"] for r in wm_eval])
                ppl_before = _ppl(model, tok, [r["text"] for r in wm_eval], [r["prompt"] for r in wm_eval])
            for r, text, pa, pb in zip(wm_eval, texts, ppl_after, ppl_before, strict=True):
                ids = tok(text, add_special_tokens=False)["input_ids"]
                p_after = scheme.detect_text(text, tok).p_value if len(ids) > h else 1.0
                rows.append((scheme.detect_text(r["text"], tok).p_value, p_after, float(pb), float(pa), None))
        else:
            for r in wm_eval:
                prefix = prompt_prefix(tok, r["prompt"])
                res = scrub_ids(model, r["token_ids"], stolen, prefix, top_k=30, max_edit_rate=0.5,
                                banned_ids=banned, target_z=target_z, penalty=penalty, words=words)  # fmt: skip
                text = tok.decode(list(res.edited_ids), skip_special_tokens=True)
                pb, pa = _ppl(model, tok, [r["text"], text], [r["prompt"]] * 2)
                rows.append((scheme.detect_text(r["text"], tok).p_value, scheme.detect_text(text, tok).p_value,
                             float(pb), float(pa), res.edit_rate))  # fmt: skip
        ok = [pa > 0.05 and qa <= 2 * qb for _, pa, qb, qa, _ in rows]
        row = {
            "scrubber": scrubber, "texts": len(rows),
            **({"target_z": target_z, "penalty": penalty} if scrubber == "replace" else
               {"target_z": target_z, "max_ppl_ratio": 2.0, "mode": scrub_mode, "rewrites": rewrites,
                "copied_rate": copied_rate, "lookahead": lookahead, "mix": mix, "kept": [c.to_dict() for c in choices]} if scrubber == "rewrite" else
               {"temperature": scrub_temperature, "mode": scrub_mode,
                "strength": 0.0 if scrubber == "paraphrase0" else
                (scrub_strength if scrub_strength is not None else default_scrub_strength(stolen))}),
            "flagged_before": int(sum(pb < 1e-3 for pb, *_ in rows)),
            "p_above_0.05": int(sum(pa > 0.05 for _, pa, *_ in rows)),
            "success": int(sum(ok)),
            "median_p_after": float(np.median([r[1] for r in rows])),
            "median_ppl_before": float(np.median([r[2] for r in rows])),
            "median_ppl_after": float(np.median([r[3] for r in rows])),
            "median_ppl_ratio": float(np.median([r[3] / r[2] for r in rows])),
            "mean_edit_rate": float(np.mean([r[4] for r in rows])) if scrubber == "replace" else None,
            "seconds": round(time.perf_counter() - t0, 1),
            "per_text": [[float(f"{a:.3g}"), round(qa / qb, 3)] for _, a, qb, qa, _ in rows],
        }  # fmt: skip
        out["scrub"].append(row)
        print(f"scrub: {json.dumps(row)}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (minutes)")
    ap.add_argument(
        "--curves-only", action="store_true", help="only the precision-vs-size figure of the planted corpus"
    )
    ap.add_argument("--issue13", default=None, metavar="CORPUS", help="ratio steal + spoof + scrub on CORPUS")
    ap.add_argument("--n", type=int, default=300, help="--issue13: corpus texts of each kind")
    ap.add_argument("--eval", type=int, default=20, help="--issue13: held-out prompts to spoof and scrub")
    ap.add_argument(
        "--eval-start",
        type=int,
        default=0,
        help="--issue13: scrub held-out texts from this one on (split a run over processes)",
    )
    ap.add_argument("--strengths", default="", help="--issue13: spoofer strengths (default: the authors')")
    ap.add_argument("--target-z", type=float, default=0.0, help="--issue13: scrubber's estimated-z target")
    ap.add_argument("--penalty", type=float, default=1.0, help="--issue13: scrubber's boost penalty")
    ap.add_argument("--rep-penalty", type=float, default=1.0, help="--issue13: spoofer's n-gram penalty")
    ap.add_argument(
        "--rep-ngram", type=int, default=None, help="--issue13: n of that penalty (default h + 1)"
    )
    ap.add_argument("--no-curves", action="store_true", help="--issue13: skip the precision curves")
    ap.add_argument(
        "--scrubbers",
        default="replace,paraphrase",
        help="--issue13: replace, paraphrase, paraphrase0 (no boost)",
    )
    ap.add_argument("--scrub-strength", type=float, default=None, help="--issue13: paraphrase boost (< 0)")
    ap.add_argument("--skip-spoof", action="store_true", help="--issue13: scrubbing only")
    ap.add_argument("--eos-ban-z", type=float, default=None, help="--issue13: spoof until this z-estimate")
    ap.add_argument(
        "--spoof-max-new", type=int, default=None, help="--issue13: with --eos-ban-z, longest spoof"
    )
    ap.add_argument("--spoof-batch", type=int, default=16, help="--issue13: spoofed prompts per batch")
    ap.add_argument("--scrub-temperature", type=float, default=0.7, help="--issue13: paraphraser temperature")
    ap.add_argument("--scrub-mode", default="sentence", help="--issue13: paraphrase sentence or whole")
    ap.add_argument("--scrub-batch", type=int, default=16, help="--issue13: paraphrased units per batch")
    ap.add_argument(
        "--rewrites", type=int, default=2, help="--issue13: rewrites per text (scrubber 'rewrite')"
    )
    ap.add_argument("--copied-rate", type=float, default=None,
                    help="--issue13: rewrite scrubber's rate for items copied from the original "
                         "(default 0.5 for h >= 1, off for h = 0; 0 turns it off)")  # fmt: skip
    ap.add_argument("--lookahead", type=int, default=None,
                    help="--issue13: rewrite scrubber's edits priced on the whole text (default 48)")  # fmt: skip
    ap.add_argument("--no-mix", action="store_true",
                    help="--issue13: rewrite scrubber without the sentence-by-sentence mix of its rewrites")  # fmt: skip
    ap.add_argument("--skip-real", action="store_true", help="synthetic parts only")
    ap.add_argument("--time-limit", type=float, default=60.0, help="CBC seconds per stage")
    ap.add_argument("--sizes", default=None, help="synthetic corpus sizes, e.g. 100,300,1000 (full default)")
    ap.add_argument("--settings", default=None, help="synthetic gamma:delta pairs, e.g. 0.25:2,0.5:4")
    ap.add_argument("--h1-texts", type=int, default=None, help="texts of each kind for the h = 1 part")
    ap.add_argument("--real-only", action="store_true", help="the real-model part only")
    ap.add_argument("--scrub", type=int, default=None, help="real texts to scrub (default 3 quick, 20 full)")
    ap.add_argument("--spoof", type=int, default=None, help="real texts to spoof (default 3 quick, 10 full)")
    ap.add_argument("--scrub-threats", default="vanilla,pro", help="stolen lists to scrub with")
    ap.add_argument("--real-sizes", default="25", help="smaller real-model corpus sizes besides the largest")
    ap.add_argument(
        "--real-corpora",
        default=",".join([*UNIGRAM_CORPORA, CONTEXT_CORPUS]),
        help="real-model corpora to steal from (benchmarks/stealing_corpus.py names)",
    )
    ap.add_argument(
        "--scrub-corpora", default="unigram-g0.25-d2", help="corpora whose stolen lists scrub and spoof"
    )
    args = ap.parse_args()
    t0 = time.time()
    if args.issue13:
        strengths = [float(x) for x in args.strengths.split(",") if x]
        res = real_issue13(args.issue13, args.n, args.eval, args.time_limit, strengths, args.target_z,
                           args.penalty, args.rep_penalty, curves=not args.no_curves,
                           scrubbers=tuple(x for x in args.scrubbers.split(",") if x),
                           scrub_strength=args.scrub_strength, spoof=not args.skip_spoof,
                           eos_ban_z=args.eos_ban_z, spoof_max_new=args.spoof_max_new,
                           spoof_batch=args.spoof_batch, scrub_temperature=args.scrub_temperature,
                           scrub_mode=args.scrub_mode, scrub_batch=args.scrub_batch,
                           rewrites=args.rewrites, rep_ngram=args.rep_ngram,
                           copied_rate=args.copied_rate, lookahead=args.lookahead, mix=not args.no_mix,
                           eval_start=args.eval_start)  # fmt: skip
        print(json.dumps({"benchmark": "stealing", "part": "issue13", **res}))
        return
    if args.curves_only:
        res = planted_curves(args.time_limit, RESULTS / "stealing_precision_vs_size.png")
        print(json.dumps({"benchmark": "stealing", "part": "curves", "planted": res}))
        return
    n_scrub = args.scrub if args.scrub is not None else (3 if args.quick else 20)
    n_spoof = args.spoof if args.spoof is not None else (3 if args.quick else 10)
    threats = tuple(args.scrub_threats.split(","))
    syn, ctx, real = [], {}, []
    if args.quick:
        tl = min(args.time_limit, 20)
        if not args.real_only:
            syn = synthetic_part([100, 300], [(0.25, 2.0)], tl, vocab=2000)
            ctx = context_part(100, 100, tl)
        if not args.skip_real:
            real = real_part(n_scrub, n_spoof, tl, sizes=[25], scrub_threats=threats)
    else:
        if not args.real_only:
            sizes = [int(x) for x in (args.sizes or "100,300,1000").split(",")]
            settings = [tuple(map(float, p.split(":"))) for p in (args.settings or "0.25:2,0.5:4").split(",")]
            syn = synthetic_part(sizes, settings, args.time_limit, vocab=2000)
            ctx = context_part(args.h1_texts or 1000, 200, args.time_limit)
        if not args.skip_real:
            sizes = [int(x) for x in args.real_sizes.split(",")]
            corpora, scrub_corpora = args.real_corpora.split(","), args.scrub_corpora.split(",")
            real = real_part(
                n_scrub, n_spoof, args.time_limit, sizes=sizes, scrub_threats=threats, corpora=corpora,
                scrub_corpora=scrub_corpora,
            )  # fmt: skip
            if CONTEXT_CORPUS in corpora:
                scrub = CONTEXT_CORPUS in scrub_corpora
                real.append(
                    real_context_part(
                        args.time_limit, n_scrub=n_scrub if scrub else 0, n_spoof=n_spoof if scrub else 0,
                        scrub_threats=threats,
                    )
                )  # fmt: skip
    summary = {"benchmark": "stealing", "quick": args.quick, "seconds": round(time.time() - t0, 1)}
    summary["synthetic"] = syn
    summary["h1"] = ctx
    summary["real"] = real
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

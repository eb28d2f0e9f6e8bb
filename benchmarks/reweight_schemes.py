"""Detection of issue 28's new schemes on the default model: dipmark, gamma-reweight,
delta-reweight, pf, morphmark, each at its default config, multinomial sampling at temperature 1.

Each scheme generates --max-new-tokens for --n prompts (the last --n of data/prompts.jsonl) and
detects its own texts; plain (unwatermarked) generations of the same prompts give each detector's
false-positive rate. Counts at p < 1e-3, with Clopper-Pearson 95% intervals; TPR at p <= 0.01 (the
exact p-value's 1% FPR) after the first 50 / 100 / 200 tokens; median perplexity of each scheme's
texts and of the plain ones under the generating model, given their prompts. Generations are cached
per scheme in --cache (JSONL), so an interrupted run resumes. Writes --out (markdown) atomically;
the last line printed is one JSON object.

    OMP_NUM_THREADS=1 python benchmarks/reweight_schemes.py --n 16 --max-new-tokens 200
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

from _common import ROOT, emit

from wm_toolkit.watermark.errors import WmError
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.modeling.models import load_model
from wm_toolkit.watermark.runtime.atomic import write_jsonl, write_text
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.statistics.pvalues import clopper_pearson
from wm_toolkit.watermark.text.textio import read_prompts, text_lines

SCHEMES = ["dipmark", "gamma-reweight", "delta-reweight", "pf", "morphmark"]
ALPHA = 1e-3
PREFIXES = (50, 100, 200)


def prefix_tpr(scheme, texts: list[list[int]], n_tokens: int) -> float:
    """Share of texts detected at p <= 0.01 from their first `n_tokens` ids (too short: missed)."""
    hits = 0
    for ids in texts:
        with contextlib.suppress(WmError):
            hits += scheme.detect(ids[:n_tokens]).p_value <= 0.01
    return hits / len(texts)


def median_perplexity(model, tok, prompts: list[str], texts: list[list[int]]) -> float:
    from wm_toolkit.watermark.measure.evaluation import finite_median, perplexities, prompt_prefix

    prefixes = [prompt_prefix(tok, p) for p in prompts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return finite_median(perplexities(model, texts, prefixes, batch_size=8, pad_id=pad))


def generations(name: str, model, tok, prompts: list[str], args) -> tuple[list[list[int]], float]:
    """Token ids of each prompt's continuation (cached), and the seconds spent generating now."""
    path = Path(args.cache) / f"{name}.jsonl"
    if path.exists():
        rows = [json.loads(x) for x in text_lines(path.read_text(encoding="utf-8"))]
        if len(rows) == len(prompts):
            return [r["token_ids"] for r in rows], 0.0
    scheme = None if name == "plain" else build_scheme({"scheme": name, "vocab_size": len(tok)}, args.key)
    t0 = time.perf_counter()
    gens = generate(
        model,
        tok,
        prompts,
        scheme=scheme,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=0,
    )
    elapsed = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [{"prompt": p, "token_ids": g.token_ids} for p, g in zip(prompts, gens, strict=True)])
    return [g.token_ids for g in gens], elapsed


def rate(hits: int, n: int) -> str:
    lo, hi = clopper_pearson(hits, n)
    return f"{hits}/{n} [{lo:.2f}, {hi:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--cache", default=str(ROOT / "benchmarks" / "cache" / "reweight_schemes"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reweight_schemes.md"))
    args = ap.parse_args()
    args.key = Key.from_seed("benchmark reweight schemes")
    model, tok = load_model(device="cpu")
    prompts = read_prompts(str(ROOT / "data" / "prompts.jsonl"))[-args.n :]
    plain, _ = generations("plain", model, tok, prompts, args)
    plain_ppl = median_perplexity(model, tok, prompts, plain)
    rows, result = [], {}
    for name in SCHEMES:
        texts, seconds = generations(name, model, tok, prompts, args)
        scheme = build_scheme({"scheme": name, "vocab_size": len(tok)}, args.key)
        own = [scheme.detect(ids) for ids in texts]
        null = [scheme.detect(ids) for ids in plain]
        tpr = sum(d.watermarked(ALPHA) for d in own)
        fpr = sum(d.watermarked(ALPHA) for d in null)
        median_log10 = sorted(d.log10_p_value for d in own)[len(own) // 2]
        scored = sum(d.num_tokens_scored for d in own) / len(own)
        prefix = {k: prefix_tpr(scheme, texts, k) for k in PREFIXES}
        ppl = median_perplexity(model, tok, prompts, texts)
        rows.append(
            f"| {name} | {rate(tpr, len(own))} | {rate(fpr, len(null))} | {median_log10:.1f} | {scored:.0f} | "
            + " / ".join(f"{prefix[k]:.2f}" for k in PREFIXES)
            + f" | {ppl:.2f} ({ppl / plain_ppl:.3f}) | {seconds:.0f} |"
        )
        result[name] = {"tpr": tpr, "fpr": fpr, "n": len(own), "median_log10_p": median_log10,
                        "tpr_at_p01_by_prefix": prefix, "median_perplexity": ppl}  # fmt: skip
        print(rows[-1], flush=True)
    write_text(args.out, report(rows, args, plain_ppl))
    emit({"benchmark": "reweight_schemes", "alpha": ALPHA, "plain_median_perplexity": plain_ppl, **result})


def report(rows: list[str], args, plain_ppl: float) -> str:
    return "\n".join(
        [
            "# Issue 28's new schemes on the default model",
            "",
            f"`benchmarks/reweight_schemes.py --n {args.n} --max-new-tokens {args.max_new_tokens}`: SmolLM2-135M-Instruct "
            "(the default model, CPU), the last prompts of data/prompts.jsonl, multinomial sampling at temperature 1, "
            "each scheme at its default config. Detected = p < 1e-3 on the scheme's own texts; FPR = p < 1e-3 on plain "
            "generations of the same prompts under the same key. Brackets: Clopper-Pearson 95% intervals. "
            "Scored = mean tokens scored per text (first occurrences of each context for dipmark / gamma-reweight / "
            "delta-reweight, distinct (context, token) pairs for pf and morphmark). Seconds: generation wall time on a "
            "shared 2-core machine (0 = read from the cache). TPR at 1% FPR: p <= 0.01 on the first 50 / 100 / "
            "200 tokens. Perplexity: median under the generating model given the prompt (ratio to plain text's).",
            "",
            "| scheme | detected at 1e-3 | FPR at 1e-3 | median log10 p | scored | TPR at 1% FPR, 50 / 100 / 200 "
            "tokens | perplexity (/ plain) | seconds |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            f"| plain | | | | | | {plain_ppl:.2f} (1.000) | |",
            "",
        ]
    )


if __name__ == "__main__":
    main()

"""The model-using LLR score of dipmark / gamma-reweight / delta-reweight against their model-free
scores, on the default model (issue 28 item 1).

Each scheme generates --max-new-tokens for --n prompts (the last --n of data/prompts.jsonl,
multinomial sampling at temperature 1, the scheme's default config); plain generations of the same
prompts give the false-positive rate. Both scores read the same token ids; the LLR score runs
SmolLM2 over the text alone (no prompt, as `wm detect --llr` does), so its P is not exactly the
generating distribution (only power is lost). Reported per scheme and score: detected at p < 1e-3
(Clopper-Pearson 95% interval), median log10 p, and FPR at 1e-3 on the plain texts; the LLR at each
--epsilons value. Generations are cached in --cache (JSONL). The last line printed is one JSON object.

    OMP_NUM_THREADS=1 nice python benchmarks/reweight_llr.py --n 16 --max-new-tokens 200
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import ROOT, emit

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.modeling.models import load_model
from wm_toolkit.watermark.runtime.atomic import write_jsonl
from wm_toolkit.watermark.statistics.pvalues import clopper_pearson
from wm_toolkit.watermark.text.textio import read_prompts, text_lines

SCHEMES = ["dipmark", "gamma-reweight", "delta-reweight"]
ALPHA = 1e-3


def generations(name: str, model: Any, tok: Any, prompts: list[str], args: Any) -> list[list[int]]:
    """Token ids of each prompt's continuation, cached per scheme."""
    from wm_toolkit.watermark.schemes import build_scheme

    path = Path(args.cache) / f"{name}.jsonl"
    if path.exists():
        rows = [json.loads(x) for x in text_lines(path.read_text(encoding="utf-8")) if x]
        if len(rows) == len(prompts):
            return [r["token_ids"] for r in rows]
    scheme = None if name == "plain" else build_scheme({"scheme": name, "vocab_size": len(tok)}, args.key)
    t0 = time.perf_counter()
    gens = generate(model, tok, prompts, scheme=scheme, max_new_tokens=args.max_new_tokens, seed=0)
    print(f"generated {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        path, [{"prompt": p, "token_ids": list(g.token_ids)} for p, g in zip(prompts, gens, strict=True)]
    )
    return [list(g.token_ids) for g in gens]


def rate(hits: int, n: int) -> str:
    lo, hi = clopper_pearson(hits, n)
    return f"{hits}/{n} [{lo:.2f}, {hi:.2f}]"


def summary(own: list[float], null: list[float]) -> dict[str, Any]:
    """log10 p-values of the scheme's texts and of the plain ones -> the table's numbers."""
    return {
        "tpr": sum(x < math.log10(ALPHA) for x in own),
        "fpr": sum(x < math.log10(ALPHA) for x in null) if null else None,
        "n": len(own),
        "median_log10_p": statistics.median(own),
        "mean_log10_p": statistics.fmean(own),
    }


def log_ratios(
    scheme: Any, model: Any, texts: list[list[int]], start: int, prefixes=None
) -> list[np.ndarray]:
    """Per text, log Q_W(x_t) / Q(x_t) at the scored positions (the eps = 0 scores of the library's
    `position_scores`), from which S(eps) = sum_t log((1 - eps) exp(.) + eps) follows for every eps."""
    from wm_toolkit.watermark.schemes.reweight_llr import LLRSettings, position_scores

    arrays = [np.asarray(t, dtype=np.int64) for t in texts]
    return position_scores(scheme, model, arrays, start, LLRSettings(epsilon=0.0), prefixes=prefixes)


def log10_p(logr: np.ndarray, eps: float) -> float:
    """min(0, -S / ln 10) with S the eps-mixed score (the formula of `llr_scores`)."""
    s = logr if eps == 0.0 else np.logaddexp(logr + math.log1p(-eps), math.log(eps))
    total = float(s.sum())
    return 0.0 if total <= 0 else -total / math.log(10)


def plain_log_ratios(schemes: dict, model: Any, plain: list[list[int]], start: int, prefixes) -> dict:
    """The plain texts' log ratios under every scheme from one forward pass per text (the model's
    logits do not depend on the scheme; each scheme's scored positions and reweight do)."""
    from wm_toolkit.watermark.modeling.entropy import forward_logits
    from wm_toolkit.watermark.schemes.reweight_llr import LLRSettings, llr_scores, scored_positions

    arrays = [np.asarray(t, dtype=np.int64) for t in plain]
    out: dict[str, list[np.ndarray]] = {name: [] for name in schemes}
    rows = {i: logits for i, _, logits in forward_logits(model, arrays, start, prefixes=prefixes)}
    for name, scheme in schemes.items():
        for i, ids in enumerate(arrays):
            pos, ctx = scored_positions(scheme, ids)
            out[name].append(llr_scores(scheme, ctx, ids[pos], rows[i][pos], LLRSettings(epsilon=0.0)))
    return out


def score(name: str, free: tuple, own: list[np.ndarray], null: list[np.ndarray] | None, eps_grid) -> dict:
    """The table's numbers for one scheme and one way of reading the texts, every eps."""
    free_own, free_null = free
    out: dict[str, Any] = {}
    for eps in eps_grid:
        if eps == 0.0 and name == "delta-reweight":
            continue  # a point mass: one disagreeing token gives p = 1 (see the docs)
        llr_own = [log10_p(r, eps) for r in own]
        row = summary(llr_own, [log10_p(r, eps) for r in null] if null is not None else [])
        row["wins_vs_model_free"] = sum(a < b for a, b in zip(llr_own, free_own, strict=True))
        out[f"eps={eps:g}"] = row
    out["impossible_positions_eps0"] = int(sum(np.isneginf(r).sum() for r in own))
    out["scored_positions"] = int(sum(len(r) for r in own))
    return out


def main() -> None:
    from wm_toolkit.watermark.measure.evaluation import prompt_prefix
    from wm_toolkit.watermark.modeling.entropy import start_token
    from wm_toolkit.watermark.schemes import build_scheme
    from wm_toolkit.watermark.schemes.reweight_llr import DEFAULT_EPSILON, detect_llr_many

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--epsilons", type=float, nargs="+", default=[0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5])
    ap.add_argument("--cache", default=str(ROOT / "benchmarks" / "cache" / "reweight_llr"))
    ap.add_argument("--generate-only", action="store_true")
    args = ap.parse_args()
    args.key = Key.from_seed("benchmark reweight llr")
    model, tok = load_model(device="cpu")
    prompts = read_prompts(str(ROOT / "data" / "prompts.jsonl"))[-args.n :]
    plain = generations("plain", model, tok, prompts, args)
    texts = {name: generations(name, model, tok, prompts, args) for name in SCHEMES}
    if args.generate_only:
        return
    start, prefixes = start_token(tok), [prompt_prefix(tok, p) for p in prompts]
    schemes = {name: build_scheme({"scheme": name, "vocab_size": len(tok)}, args.key) for name in SCHEMES}
    free = {n: ([s.detect(i).log10_p_value for i in texts[n]], [s.detect(i).log10_p_value for i in plain])
            for n, s in schemes.items()}  # fmt: skip
    result: dict[str, Any] = {n: {"model-free": summary(*free[n])} for n in SCHEMES}
    t0 = time.perf_counter()
    nulls = plain_log_ratios(schemes, model, plain, start, prefixes)
    for where, pre in (("after the prompt", prefixes), ("text alone", None)):
        for name, scheme in schemes.items():
            own = log_ratios(scheme, model, texts[name], start, pre)
            result[name][f"llr, {where}"] = score(
                name, free[name], own, nulls[name] if pre else None, args.epsilons
            )
            if pre:  # the library's own path gives the same p-value
                (d,) = detect_llr_many(
                    scheme, model, texts[name][:1], start, epsilon=DEFAULT_EPSILON, prefixes=pre[:1]
                )
                assert abs(d.log10_p_value - log10_p(own[0], DEFAULT_EPSILON)) < 1e-9 * max(
                    1.0, abs(d.log10_p_value)
                )
            print(json.dumps({name: {k: v for k, v in result[name].items()}}), flush=True)
    result["seconds"] = time.perf_counter() - t0
    emit(
        {
            "benchmark": "reweight_llr",
            "alpha": ALPHA,
            "n": args.n,
            "max_new_tokens": args.max_new_tokens,
            **result,
        }
    )


if __name__ == "__main__":
    main()

"""Detection power of the green-list watermark on the default model (issue target):
200 prompts, 200 new tokens, gamma 0.25, delta 2, h = 1, multinomial sampling.

Generations are cached per batch in --cache (JSONL), so an interrupted run resumes.
The last line is one JSON object with TPR at p < 0.001, the FPR and its Clopper-Pearson interval.

    python benchmarks/detection_power.py --n 200 --max-new-tokens 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _common import ROOT, emit, load_prompts

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.modeling.models import load_model
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme
from wm_toolkit.watermark.statistics.pvalues import clopper_pearson
from wm_toolkit.watermark.text.textio import text_lines


def load_cache(path: Path) -> list[list[int]]:
    return (
        [json.loads(x)["token_ids"] for x in text_lines(path.read_text(encoding="utf-8"))]
        if path.exists()
        else []
    )


def extend_cache(path: Path, model, tok, prompts, scheme, start: int, args) -> None:
    t0 = time.perf_counter()
    out = generate(
        model,
        tok,
        prompts,
        scheme=scheme,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=start,
    )
    with path.open("a") as fh:
        for g in out:
            fh.write(json.dumps({"prompt": g.prompt, "token_ids": list(g.token_ids)}) + "\n")
    print(f"{path.name}: +{len(out)} ({time.perf_counter() - t0:.0f} s/batch)", flush=True)


T0 = time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument("--cache", type=Path, default=ROOT / "out" / "power")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 helps on a shared machine)")
    ap.add_argument("--time-budget", type=float, default=None, help="stop generating after this many seconds")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    model, tok = load_model(device="cpu")
    scheme = build_scheme(GreenListConfig(vocab_size=len(tok)), Key.from_seed("power"))
    prompts = load_prompts(args.n)
    tag = f"n{args.n}-m{args.max_new_tokens}"
    wm_path, plain_path = args.cache / f"kgw-{tag}.jsonl", args.cache / f"plain-{tag}.jsonl"
    # interleave watermarked and plain batches, so a run stopped early still has both halves
    for start in range(0, len(prompts), args.batch_size):
        batch = prompts[start : start + args.batch_size]
        for path, sch in ((wm_path, scheme), (plain_path, None)):
            if len(load_cache(path)) <= start:
                extend_cache(path, model, tok, batch, sch, start, args)
        if args.time_budget and time.perf_counter() - T0 > args.time_budget:
            print(f"time budget reached after {start + len(batch)} prompts", flush=True)
            break
    wm_ids, plain_ids = load_cache(wm_path), load_cache(plain_path)
    wm_ids, plain_ids = wm_ids[: len(plain_ids)], plain_ids[: len(wm_ids)]
    wm_p = [scheme.detect(x).p_value for x in wm_ids if len(x) > 1]
    plain_p = [scheme.detect(x).p_value for x in plain_ids if len(x) > 1]
    tp = sum(p < args.alpha for p in wm_p)
    fp = sum(p < args.alpha for p in plain_p)
    lo, hi = clopper_pearson(fp, len(plain_p))
    tlo, thi = clopper_pearson(tp, len(wm_p))
    lengths = [len(x) for x in wm_ids]
    print(f"TPR at p<{args.alpha}: {tp}/{len(wm_p)} = {tp / len(wm_p):.3f} (95% CI {tlo:.3f}-{thi:.3f})")
    print(f"FPR at p<{args.alpha}: {fp}/{len(plain_p)} = {fp / len(plain_p):.4f} (95% CI {lo:.4f}-{hi:.4f})")
    emit(
        {
            "n_watermarked": len(wm_p),
            "n_plain": len(plain_p),
            "alpha": args.alpha,
            "tpr": tp / len(wm_p),
            "tpr_ci95": [tlo, thi],
            "fpr": fp / len(plain_p),
            "fpr_ci95": [lo, hi],
            "median_tokens": sorted(lengths)[len(lengths) // 2],
            "median_p_watermarked": sorted(wm_p)[len(wm_p) // 2],
            "median_p_plain": sorted(plain_p)[len(plain_p) // 2],
        }
    )


if __name__ == "__main__":
    main()

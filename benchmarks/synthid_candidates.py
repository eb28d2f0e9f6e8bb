"""SynthID-Text with K candidates per match on the default model: detection power and the price.

For each K in --candidates (K = 2 is the default, non-distortionary scheme; K > 2 the
distortionary one), --n prompts x --max-new-tokens new tokens under one key and torch seed;
each text is tested on its first 25 / 50 / all tokens. Reported per K: TPR at p < 1e-3 (the
weighted score, which decides the verdict, and the mean score), median log10 p, the mean
g-value, the texts' perplexity under the unwatermarked model (median per text, and the mean NLL
pooled over every token: the distortion's cost), and the
false-positive count of the same texts under --null-keys other keys (p-value validity).

    OMP_NUM_THREADS=1 nice python benchmarks/synthid_candidates.py --n 16 --max-new-tokens 100 [--top-k 40]

The last line is one JSON object; benchmarks/results/schemes.md ("SynthID with K candidates") holds a run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import emit, load_prompts

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.measure.evaluation import prompt_prefix, token_nlls
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.modeling.models import load_model
from wm_toolkit.watermark.schemes import build_scheme

ALPHA = 1e-3


def scheme_for(k: int | None, vocab: int, key: str = "candidates"):
    fields = {} if k is None else {"num_candidates": k, "distortionary": k > 2}
    return build_scheme({"scheme": "synthid", "vocab_size": vocab, **fields}, Key.from_seed(key))


def measure(k, ids, nlls, vocab: int, null_keys: int) -> dict:
    ppl = np.exp([v.mean() for v in nlls])
    s = scheme_for(k or 2, vocab)
    row: dict = {"K": k or "plain", "perplexity_median": float(np.median(ppl))}
    row["nll_per_token"] = float(np.mean(np.concatenate(nlls)))  # pooled over every token
    for cut in (25, 50, None):
        dets = [s.detect(x[:cut]) for x in ids]
        tag = cut or "all"
        row[f"tpr_weighted_{tag}"] = float(np.mean([d.p_value <= ALPHA for d in dets]))
        row[f"tpr_mean_{tag}"] = float(np.mean([d.p_value_mean <= ALPHA for d in dets]))
        row[f"median_log10_p_{tag}"] = float(np.median([d.log10_p_value for d in dets]))
    row["mean_g"] = float(np.mean([d.mean_score for d in dets]))
    nulls = [scheme_for(2, vocab, f"null-{j}").detect(x).p_value for j in range(null_keys) for x in ids]
    row["null_fp_at_0.05"] = f"{sum(p <= 0.05 for p in nulls)}/{len(nulls)}"
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=100)
    ap.add_argument("--candidates", default="2,3,4,8")
    ap.add_argument("--null-keys", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=0, help="sampling top-k (0: the whole vocabulary)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(device="cpu")
    prompts = load_prompts(args.n)
    prefixes = [prompt_prefix(tok, p) for p in prompts]
    rows = []
    for k in [None, *(int(x) for x in args.candidates.split(","))]:
        t0 = time.perf_counter()
        s = None if k is None else scheme_for(k, len(tok))
        gens = generate(
            model, tok, prompts, scheme=s, max_new_tokens=args.max_new_tokens, top_k=args.top_k, seed=0
        )
        ids = [list(g.token_ids) for g in gens]
        nlls = token_nlls(model, ids, prefixes, pad_id=tok.pad_token_id or 0)
        row = measure(k, ids, nlls, len(tok), args.null_keys)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(row, flush=True)
        rows.append(row)
    emit(
        {
            "n": args.n,
            "max_new_tokens": args.max_new_tokens,
            "top_k": args.top_k,
            "alpha": ALPHA,
            "rows": rows,
        }
    )


if __name__ == "__main__":
    main()

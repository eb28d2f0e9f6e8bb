"""SAR vs PE / LN-PE / lexical / semantic entropy on data/qa.jsonl with the default model (papers.md E6).

Generations are cached in --out, so a rerun with other methods (or after an interruption) only
scores. The last line is one JSON object: n, accuracy, AUROC per method, seconds per question.

    python benchmarks/uncertainty.py --quick            # 24 questions, a smoke run
    python benchmarks/uncertainty.py --limit 442 --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import ROOT, emit, peak_rss_mb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qa", default=str(ROOT / "data" / "qa.jsonl"))
    ap.add_argument("--limit", type=int, default=None, help="first N questions (default all)")
    ap.add_argument("--quick", action="store_true", help="24 questions")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--model", default=None)
    ap.add_argument("--similarity-model", default=None)
    ap.add_argument("--methods", default=None)
    ap.add_argument("--out", default=str(ROOT / "runs" / "uncertainty"), help="cache + results folder")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (1 is fastest on a busy 2-core box)"
    )
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from wm_toolkit.watermark.modeling.models import canonical_name, load_model, load_tokenizer
    from wm_toolkit.watermark.uncertainty import Estimator, SamplingConfig, load_similarity, parse_methods
    from wm_toolkit.watermark.uncertainty.evaluate import evaluate, generate_cached, load_qa, plot_roc

    items = load_qa(args.qa)[: 24 if args.quick else args.limit]
    model_name = canonical_name(args.model)
    config = SamplingConfig(k=args.k)
    out = Path(args.out)
    box = {}

    def load_lm():
        box["lm"] = load_model(model_name)
        return box["lm"]

    def stage(name, total):
        print(f"{name}: {total} questions", flush=True)
        done = [0]

        def advance(n):
            done[0] += n
            if done[0] % 24 == 0 or done[0] == total:
                print(f"  {name}: {done[0]}/{total}", flush=True)

        return advance

    samples, generated, gen_s = generate_cached(items, load_lm, model_name, config, out, stage=stage)
    tok = box["lm"][1] if box else load_tokenizer(model_name)
    t0 = time.perf_counter()
    est = Estimator(tok, load_similarity(args.similarity_model), parse_methods(args.methods))
    load_s = time.perf_counter() - t0
    res = evaluate(items, samples, est, stage=stage)
    out.mkdir(parents=True, exist_ok=True)
    plot_roc(res, out / "roc.png")
    import json

    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    n = res["n"]
    emit(
        {
            "benchmark": "uncertainty",
            "model": model_name,
            "k": args.k,
            "n": n,
            "accuracy": round(res["accuracy"], 4),
            "auroc": {m: (None if v is None else round(v, 4)) for m, v in res["auroc"].items()},
            "generated": generated,
            "generation_s_per_question": round(gen_s / generated, 3) if generated else None,
            "scoring_s_per_question": round(res["scoring_seconds"] / n, 3),
            "similarity_load_s": round(load_s, 2),
            "threads": torch.get_num_threads(),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
    )


if __name__ == "__main__":
    main()

"""Entropy-aware detection (SWEET, EWD) against plain detection on low-entropy prompts.

The embedded model writes `--n-wm` watermarked texts per scheme (kgw: gamma 0.25, delta 2, h = 1;
gumbel: h = 4) from data/low_entropy_prompts.jsonl (code, lists, short answers) and
`--n-null-texts` unwatermarked texts from the same prompts, each tested under `--null-keys`
other keys (200 null (text, key) pairs by default: the weights depend on the text only, the
green lists and uniforms on the key, so each pair is a null test); every text is re-tokenised as `wm detect` does and
scored by the plain test, SWEET (threshold 0.9 nats) and EWD on its first 32 and 64 tokens and
on all of it (`--lengths`), with the entropies from one
forward pass of the embedded model over the text alone. Reports TPR at 1 % empirical FPR (the
null texts' own 1 % quantile, per method), TPR at p <= 0.01 and 1e-3, the null texts' FPR at
p <= 0.01, and the seconds per text of each step, with the load average.

Generations are cached in --cache (JSONL), so an interrupted run resumes.

    nice env OMP_NUM_THREADS=1 python benchmarks/entropy_detection.py --n-wm 40 --n-null-texts 50 --null-keys 4
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _common import ROOT, emit, load_prompts

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.measure.evaluation import tpr_at_fpr, tpr_at_p
from wm_toolkit.watermark.modeling.entropy import PositionEntropies, position_entropies, start_token
from wm_toolkit.watermark.modeling.generation import encode_texts, generate
from wm_toolkit.watermark.modeling.models import load_model
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.entropy_aware import detect_weighted, entropy_weights, ewd_modulus

PROMPTS = ROOT / "data" / "low_entropy_prompts.jsonl"
SCHEMES = {"kgw": {"scheme": "kgw", "gamma": 0.25, "delta": 2.0}, "gumbel": {"scheme": "gumbel"}}


def cached_texts(path: Path, model, tok, prompts, scheme, args) -> list[str]:
    """Generate (or read back) one text per prompt, batch by batch."""
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    for start in range(len(rows), len(prompts), args.batch_size):
        t0 = time.perf_counter()
        out = generate(
            model, tok, prompts[start : start + args.batch_size], scheme=scheme, seed=start,
            max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens, batch_size=args.batch_size,
        )  # fmt: skip
        with path.open("a") as fh:
            for g in out:
                fh.write(json.dumps({"prompt": g.prompt, "text": g.text}) + "\n")
        rows += [{"text": g.text} for g in out]
        print(f"{path.name}: {len(rows)}/{len(prompts)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return [r["text"] for r in rows[: len(prompts)]]


def p_values(scheme, ids_list, ents, timing) -> dict[str, list[float]]:
    """log10 p of every text under the plain test, SWEET and EWD."""
    out: dict[str, list[float]] = {"plain": [], "sweet": [], "ewd": []}
    for ids, ent in zip(ids_list, ents, strict=True):
        t0 = time.perf_counter()
        out["plain"].append(float(scheme.detect(ids).log10_p_value))
        t1 = time.perf_counter()
        for method in ("sweet", "ewd"):
            det = detect_weighted(scheme, ids, entropy_weights(scheme, ent, method))
            out[method].append(float(det.log10_p_value))
        t2 = time.perf_counter()
        timing["plain"] += t1 - t0
        timing["weighted"] += t2 - t1
    return out


def prefixes(ids_list, ents, length: int) -> tuple[list, list]:
    """The first `length` tokens of each text and their entropies (causal: the same values)."""
    if not length:
        return list(ids_list), list(ents)
    cut = [PositionEntropies(e.shannon[:length], None if e.spike is None else e.spike[:length]) for e in ents]
    return [i[:length] for i in ids_list], cut


def summary(pos: list[float], null: list[float]) -> dict:
    p_pos, p_null = 10.0 ** np.array(pos), 10.0 ** np.array(null)
    at = tpr_at_fpr(p_pos, p_null, 0.01)
    return {
        "tpr_at_1pct_fpr": at.tpr,
        "threshold_at_1pct_fpr": at.threshold,
        "tpr_at_p_0.01": tpr_at_p(p_pos, 0.01),
        "tpr_at_p_0.001": tpr_at_p(p_pos, 1e-3),
        "null_fpr_at_p_0.01": float((p_null <= 0.01).mean()),
        "median_log10_p_wm": float(np.median(pos)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-wm", type=int, default=40)
    ap.add_argument("--n-null-texts", type=int, default=50)
    ap.add_argument("--null-keys", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--min-new-tokens", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--schemes", default="kgw,gumbel")
    ap.add_argument(
        "--lengths", default="32,64,0", help="score the first N tokens of each text (0: all of it)"
    )
    ap.add_argument("--cache", type=Path, default=ROOT / "out" / "entropy_detection")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    t_start, load_start = time.perf_counter(), os.getloadavg()
    model, tok = load_model(device="cpu")
    prompts_wm = load_prompts(args.n_wm, PROMPTS)
    null_texts = cached_texts(args.cache / f"null-{args.max_new_tokens}.jsonl", model, tok,
                              load_prompts(args.n_null_texts, PROMPTS), None, args)  # fmt: skip
    key = Key.from_seed(2028)
    result: dict = {"n_wm": args.n_wm, "n_null_texts": args.n_null_texts, "null_keys": args.null_keys,
                    "max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens, "schemes": {}}  # fmt: skip
    timing = {"entropy": 0.0, "plain": 0.0, "weighted": 0.0, "texts_scored": 0, "texts_forward": 0}
    null_ids = encode_texts(tok, null_texts)
    for name in args.schemes.split(","):
        scheme = build_scheme({**SCHEMES[name], "vocab_size": len(tok)}, key)
        wm_texts = cached_texts(
            args.cache / f"{name}-{args.max_new_tokens}.jsonl", model, tok, prompts_wm, scheme, args
        )
        wm_ids = encode_texts(tok, wm_texts)
        t0 = time.perf_counter()
        ents = position_entropies(model, wm_ids + null_ids, start_token(tok), modulus=ewd_modulus(scheme))
        timing["entropy"] += time.perf_counter() - t0
        timing["texts_scored"] += (len(wm_ids) + args.null_keys * len(null_ids)) * len(
            args.lengths.split(",")
        )
        timing["texts_forward"] += len(ents)
        kept = [float((e.shannon >= 0.9).mean()) for e in ents[: len(wm_ids)]]
        result["schemes"][name] = {
            "tokens_mean": float(np.mean([len(i) for i in wm_ids])),
            "sweet_fraction_kept": float(np.mean(kept)),
        }
        others = [build_scheme({**SCHEMES[name], "vocab_size": len(tok)}, Key.from_seed(10_000 + j))
                  for j in range(args.null_keys)]  # fmt: skip
        for length in [int(x) for x in args.lengths.split(",")]:  # first `length` tokens (0: all)
            cut_ids, cut_ents = prefixes(wm_ids + null_ids, ents, length)
            pos = p_values(scheme, cut_ids[: len(wm_ids)], cut_ents[: len(wm_ids)], timing)
            null: dict[str, list[float]] = {"plain": [], "sweet": [], "ewd": []}
            for other in others:
                for m, ps in p_values(other, cut_ids[len(wm_ids) :], cut_ents[len(wm_ids) :], timing).items():
                    null[m] += ps
            result["schemes"][name][f"first_{length}" if length else "full"] = {
                m: summary(pos[m], null[m]) for m in pos
            }
        print(json.dumps({name: result["schemes"][name]}), flush=True)
    n = max(timing["texts_scored"], 1)
    result["seconds_per_text"] = {
        "entropy_forward": timing["entropy"] / max(timing["texts_forward"], 1), "plain": timing["plain"] / n, "sweet_and_ewd": timing["weighted"] / n,
    }  # fmt: skip
    result["wall_s"] = time.perf_counter() - t_start
    result["loadavg_start"], result["loadavg_end"] = list(load_start), list(os.getloadavg())
    emit(result)


if __name__ == "__main__":
    main()

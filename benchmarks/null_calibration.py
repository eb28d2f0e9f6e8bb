"""Null calibration across keys: how far the false-positive rate of ONE key can stray on one corpus.

Every detector's p-value is exact (or a valid permutation p-value) over random keys for any fixed
text. A deployment has one key and many texts, and texts from one model share a vocabulary, so the
share of unwatermarked texts below alpha can differ from key to key. This script detects the same
unwatermarked texts under `--keys` keys and compares the spread of that share across keys with the
peer it should match if the key did not matter: binomial sampling noise over the texts.
`dispersion` = variance of the share across keys / (mean share (1 - mean share) / texts); about 1
when the key does not matter, well above 1 when single keys are lucky or unlucky draws.

    python benchmarks/null_calibration.py --texts out/r/generations/plain-<hash>.jsonl \
        --schemes unigram,kgw,gumbel,exp,its --keys 30

--texts: JSONL with a "text" field (e.g. the unwatermarked generations the robustness grid caches)
or plain text, one text per line. The first key is Key.from_seed(--first-key) (the robustness
grid's key by default), the rest Key.from_seed("null-1"), ... The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import emit

from wm_toolkit.watermark.config import default_config
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import encode_texts
from wm_toolkit.watermark.modeling.models import DEFAULT_MODEL, load_tokenizer
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.text.textio import read_records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", required=True, help="Unwatermarked texts: JSONL with 'text', or one per line.")
    ap.add_argument("--schemes", default="unigram,kgw,gumbel")
    ap.add_argument("--keys", type=int, default=30)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--resamples", type=int, default=199, help="Permutation resamples (exp/its family).")
    ap.add_argument("--first-key", default="robustness", help="Seed of the first key.")
    ap.add_argument("--tokenizer", default=DEFAULT_MODEL)
    args = ap.parse_args()
    t0 = time.perf_counter()
    tok = load_tokenizer(args.tokenizer)
    texts = [r.text for r in read_records(args.texts, one_per_line=True)]
    ids = encode_texts(tok, texts)  # canonical text, as wm detect reads it
    seeds = [args.first_key] + [f"null-{k}" for k in range(1, args.keys)]
    out = {}
    for name in args.schemes.split(","):
        cfg = default_config(name).replace(vocab_size=len(tok), tokenizer=args.tokenizer)
        if "resamples" in cfg.to_dict():
            cfg = cfg.replace(resamples=args.resamples)
        shares, medians = [], []
        for seed in seeds:
            p = np.array([d.p_value for d in build_scheme(cfg, Key.from_seed(seed)).detect_many(ids)])
            shares.append(float((p < args.alpha).mean()))
            medians.append(float(np.median(p)))
        s = np.array(shares)
        mean = float(s.mean())
        binomial_var = mean * (1 - mean) / len(ids)
        out[name] = {
            "share_below_alpha_first_key": shares[0],
            "median_p_first_key": round(medians[0], 4),
            "share_below_alpha_mean": round(mean, 4),
            "share_below_alpha_min": float(s.min()),
            "share_below_alpha_max": float(s.max()),
            "median_p_median_over_keys": round(float(np.median(medians)), 4),
            "dispersion": round(float(s.var(ddof=1) / binomial_var), 2) if binomial_var > 0 else None,
        }
        r = out[name]
        print(
            f"{name:9s} share p<{args.alpha}: first key {r['share_below_alpha_first_key']:.3f}, "
            f"over {len(seeds)} keys mean {mean:.3f} [{s.min():.3f}, {s.max():.3f}], "
            f"dispersion vs binomial {r['dispersion']}",
            flush=True,
        )
    emit(
        {
            "texts": len(ids),
            "keys": len(seeds),
            "alpha": args.alpha,
            "schemes": out,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
    )


if __name__ == "__main__":
    main()

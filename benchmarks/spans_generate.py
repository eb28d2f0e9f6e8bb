"""Watermarked passages for the span benchmark (benchmarks/spans.py), generated once and cached.

The default model writes 200 tokens (min = max = 200) for each of the last `--n` prompts of
data/prompts.jsonl (held out: detection_power.py uses the first 200), multinomial sampling at
temperature 1, one file per scheme under --cache (JSONL: prompt, text, token_ids). A scheme whose
file already holds n passages is skipped, so a stopped run resumes.

    flock /work/wt/cpu.lock nice -n 10 python benchmarks/spans_generate.py --schemes kgw gumbel exp
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _common import ROOT

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.modeling.models import load_model
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.text.textio import read_prompts

KEY_SEED = "spans-benchmark"  # a deterministic test key (never for real secrets)


def held_out_prompts(n: int) -> list[str]:
    return read_prompts(str(ROOT / "data" / "prompts.jsonl"))[-n:]


def scheme_for(name: str, vocab_size: int):
    return build_scheme({"scheme": name, "vocab_size": vocab_size}, Key.from_seed(KEY_SEED))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schemes", nargs="+", default=["kgw", "gumbel", "exp"])
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=ROOT / "out" / "spans")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    model, tok = load_model(device="cpu")
    prompts = held_out_prompts(args.n)
    for name in args.schemes:
        path = args.cache / f"{name}-n{args.n}-m{args.tokens}.jsonl"
        done = path.read_text(encoding="utf-8").count("\n") if path.exists() else 0
        scheme = scheme_for(name, len(tok))
        for start in range(done - done % args.batch_size, args.n, args.batch_size):
            t0 = time.perf_counter()
            out = generate(
                model, tok, prompts[start : start + args.batch_size], scheme=scheme,
                max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                batch_size=args.batch_size, seed=1000 + start,
            )  # fmt: skip
            with path.open("a", encoding="utf-8") as fh:
                for g in out:
                    fh.write(
                        json.dumps({"prompt": g.prompt, "text": g.text, "token_ids": list(g.token_ids)})
                        + "\n"
                    )
            print(f"{path.name}: {start + len(out)}/{args.n} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

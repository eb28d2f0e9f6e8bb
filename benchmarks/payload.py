"""Multi-bit payload (mpac): exact recovery of a 32-bit payload from 200-token texts of the
embedded model, and how often a wrong payload comes with confidence >= 0.99.

Watermarked texts: `--texts` prompts, one random payload per batch of `--batch-size`, each batch
under its own key, exactly `--tokens` new tokens, detected from the text (re-tokenised as
`wm detect` does). Null texts: the same prompts generated without a watermark (`--plain`), tested
with the keys, and every watermarked text tested under `--wrong-keys` other keys. The last line
printed is one JSON object; numbers go to benchmarks/results/schemes.md ("Multi-bit payload").

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/payload.py --texts 40 --plain 40
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from _common import emit, load_prompts

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.modeling.models import DEFAULT_MODEL, load_model, load_tokenizer
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.mpac import MpacConfig, format_payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=40)
    ap.add_argument("--plain", type=int, default=40)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=5)
    ap.add_argument("--wrong-keys", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--delta", type=float, default=3.0)
    ap.add_argument("--cache", default=None, help="JSON file of the generations: written once, then reused")
    args = ap.parse_args()
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    texts = _generations(args)
    gen_s = time.perf_counter() - t0
    tok = load_tokenizer(DEFAULT_MODEL)
    schemes = {b: _scheme(args, b, payload, len(tok)) for b, payload in texts["payloads"].items()}
    marked = [(text, texts["payloads"][b], schemes[b]) for b, text in texts["marked"]]
    t1 = time.perf_counter()
    rows = [_row(s.detect_text(text, tok), payload) for text, payload, s in marked]
    keys = list(schemes.values())
    null = [_row(keys[i % len(keys)].detect_text(text, tok), None) for i, text in enumerate(texts["plain"])]
    for j in range(args.wrong_keys):
        for i, (text, _payload, s) in enumerate(marked):
            other = build_scheme(
                s.config.replace(key_fingerprint=None), Key.from_seed(f"payload-bench/wrong/{j}/{i}")
            )
            null.append(_row(other.detect_text(text, tok), None))
    detect_s = time.perf_counter() - t1
    emit(_summary(rows, null, args, gen_s, detect_s, load_start))


def _scheme(args, batch: str, payload: str, vocab_size: int):
    config = MpacConfig(
        vocab_size=vocab_size,
        tokenizer=DEFAULT_MODEL,
        payload_bits=args.bits,
        payload=payload,
        delta=args.delta,
    )
    return build_scheme(config, Key.from_seed(f"payload-bench/{args.seed}/{batch}"))


def _generations(args) -> dict:
    """{"payloads": batch -> hex, "marked": [(batch, text)], "plain": [text]}, from --cache if it exists."""
    if args.cache and os.path.exists(args.cache):
        with open(args.cache, encoding="utf-8") as f:
            return json.load(f)
    model, tok = load_model(DEFAULT_MODEL)
    rng = np.random.default_rng(args.seed)
    prompts = load_prompts(args.texts)
    out: dict = {"payloads": {}, "marked": [], "plain": []}
    for b in range(0, args.texts, args.batch_size):
        payload = format_payload(int(rng.integers(0, 1 << args.bits)), args.bits)
        out["payloads"][str(b)] = payload
        gens = generate(model, tok, prompts[b : b + args.batch_size], scheme=_scheme(args, str(b), payload, len(tok)),
                        max_new_tokens=args.tokens, min_new_tokens=args.tokens, batch_size=args.batch_size,
                        seed=args.seed + b)  # fmt: skip
        out["marked"] += [(str(b), g.text) for g in gens]
    plain = generate(model, tok, load_prompts(args.plain), scheme=None, max_new_tokens=args.tokens,
                     min_new_tokens=args.tokens, batch_size=args.batch_size, seed=args.seed + 10_000)  # fmt: skip
    out["plain"] = [g.text for g in plain]
    if args.cache:
        with open(args.cache, "w", encoding="utf-8") as f:  # a benchmark's scratch file, not a wm output
            json.dump(out, f)
    return out


def _row(det, truth: str | None) -> dict:
    return {
        "truth": truth,
        "candidate": det.payload_candidate,
        "reported": det.payload,
        "confidence": det.payload_confidence,
        "bit_confidence": det.payload_bit_confidence,
        "watermarked": det.watermarked(1e-3),
        "log10_p": det.log10_p_value,
        "tokens": det.num_tokens_scored,
        "corrected": det.payload_corrected,
    }


def _bits_right(row: dict, bits: int) -> int:
    diff = int(row["candidate"], 16) ^ int(row["truth"], 16)
    return bits - bin(diff).count("1")


def _summary(rows: list[dict], null: list[dict], args, gen_s: float, detect_s: float, load_start) -> dict:
    n, m = len(rows), len(null)
    right = [r["candidate"] == r["truth"] for r in rows]
    reported_right = [r["reported"] is not None and r["reported"] == r["truth"] for r in rows]
    wrong_hi = [r["candidate"] != r["truth"] and r["confidence"] >= 0.99 for r in rows]
    wrong_reported = [r["reported"] is not None and r["reported"] != r["truth"] for r in rows]
    return {
        "benchmark": "payload",
        "model": DEFAULT_MODEL,
        "payload_bits": args.bits,
        "delta": args.delta,
        "tokens": args.tokens,
        "texts": n,
        "null_texts": m,
        "plain_texts": args.plain,
        "exact_recovery": sum(right) / n,
        "reported_and_right": sum(reported_right) / n,
        "reported": sum(r["reported"] is not None for r in rows) / n,
        "bit_accuracy": sum(_bits_right(r, args.bits) for r in rows) / (n * args.bits),
        "detected_at_1e-3": sum(r["watermarked"] for r in rows) / n,
        "wrong_with_confidence_0.99_watermarked": sum(wrong_hi) / n,
        "wrong_reported_watermarked": sum(wrong_reported) / n,
        "null_confidence_0.99": sum(r["confidence"] >= 0.99 for r in null) / m,
        "null_reported": sum(r["reported"] is not None for r in null) / m,
        "null_fpr_at_1e-3": sum(r["watermarked"] for r in null) / m,
        "null_max_confidence": max(r["confidence"] for r in null),
        "median_confidence_watermarked": float(np.median([r["confidence"] for r in rows])),
        "mean_tokens_scored": float(np.mean([r["tokens"] for r in rows])),
        "generate_s": round(gen_s, 1),
        "detect_s": round(detect_s, 1),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()

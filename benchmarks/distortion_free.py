"""Kuditipudi et al. (2023) on our model: EXP / ITS (basic and edit) against KGW, length and edit sweeps.

On the default model and data/prompts.jsonl, with key length n = 256:
1. Generate `--max-new-tokens` (default 70 = 50 + a 20-token buffer) for every prompt with exp, its,
   kgw (delta 2) and no watermark, batch by batch in the same order, so each batch's timings compare
   the processors under the same machine load (`exp_generate_overhead_vs_plain`).
2. Decode, re-encode, keep the first m tokens; median p-value against m for exp, its, exp-edit,
   its-edit and kgw, next to the same detectors on unwatermarked texts.
3. exp-edit and its-edit at m = 35 after random substitution, insertion and deletion at rates
   0.1-0.5 (uniform positions, uniform replacement tokens; the edit acts on the whole buffer and the
   first m tokens are scored, as in the reference code). Headline: share detected at p <= 0.01.
4. Decision time at `--alpha` (default 1e-3: `detect(ids, alpha)` draws the ~10,000 null keys
   p <= alpha needs, or stops early) on 200-token texts, wall and CPU seconds: exp-edit and its-edit
   on watermarked texts after 20 % insertions (`edit_detect_s_per_text` is exp-edit's median) and on
   unwatermarked texts, exp-edit on clean watermarked text (the Gamma bound decides).
5. Verdicts at `--alpha` (the done-when of issue 12): 16 exp and 16 its texts of `--decide-tokens`
   (120) after 20 % random insertions, called "watermarked" by exp-edit / its-edit (target >= 14 of
   16 each), and the same for 16 unwatermarked texts (target 0 of 16).

    python benchmarks/distortion_free.py --quick            # 16 prompts of 120 tokens, T = 199 in the sweeps
    python benchmarks/distortion_free.py --n 32 --resamples 499   # the run in results/distortion_free.md

Timings report the load average of the machine next to them (it is shared). The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from _common import emit, load_prompts, peak_rss_mb

from wm_toolkit.attacks.edits import delete_tokens, insert_tokens, substitute_tokens
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import encode_texts, generate
from wm_toolkit.watermark.modeling.models import load_model
from wm_toolkit.watermark.schemes import build_scheme

FAMILIES = ("plain", "exp", "its", "kgw")
DETECTORS = {"exp": "exp", "exp-edit": "exp", "its": "its", "its-edit": "its", "kgw": "kgw"}
ATTACKS = ("substitution", "insertion", "deletion")


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def fmt(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def attack(name: str, ids: list[int], rate: float, vocab: int, rng: np.random.Generator) -> list[int]:
    if name == "substitution":
        return substitute_tokens(ids, rate, vocab, rng)
    if name == "insertion":
        return insert_tokens(ids, rate, vocab, rng)
    return delete_tokens(ids, rate, rng)


def decision_timing(model, tok, vocab: int, key, prompts: list[str], alpha: float):
    """4. Decision time at alpha on 200-token texts: exp-edit and its-edit, watermarked with 20 %
    insertions, watermarked clean (exp-edit), unwatermarked. Returns the deciders and, per case,
    wall and CPU seconds, "p:verdict:keys" strings, and the load average before and after."""
    gen = {fam: build_scheme({"scheme": fam, "vocab_size": vocab}, key) for fam in ("exp", "its")}
    long = {
        fam: generate(model, tok, prompts, scheme=gen.get(fam), max_new_tokens=200, min_new_tokens=200)
        for fam in ("exp", "its", "plain")
    }
    deciders = {
        name: build_scheme({"scheme": name, "vocab_size": vocab}, key) for name in ("exp-edit", "its-edit")
    }
    rng = np.random.default_rng(7)
    cases = {
        "exp-edit/watermarked_inserted_20": ("exp-edit", "exp", 0.2),
        "exp-edit/watermarked_clean": ("exp-edit", "exp", 0.0),
        "exp-edit/unwatermarked": ("exp-edit", "plain", 0.0),
        "its-edit/watermarked_inserted_20": ("its-edit", "its", 0.2),
        "its-edit/unwatermarked": ("its-edit", "plain", 0.0),
    }
    timing: dict[str, list[float]] = {c: [] for c in cases}
    timing_cpu: dict[str, list[float]] = {c: [] for c in cases}
    timing_p: dict[str, list[str]] = {c: [] for c in cases}
    load_before = os.getloadavg()[0]
    for case, (det, fam, rate) in cases.items():
        for g in long[fam]:
            ids = list(g.token_ids)
            ids = (insert_tokens(ids, rate, vocab, rng) if rate else ids)[:200]
            t0, c0 = time.perf_counter(), time.process_time()
            d = deciders[det].detect(ids, alpha=alpha)
            timing[case].append(time.perf_counter() - t0)
            timing_cpu[case].append(time.process_time() - c0)
            timing_p[case].append(f"{fmt(d.p_value)}:{d.verdict(alpha)}:{d.resamples}")
    load_after = os.getloadavg()[0]
    print(f"decisions at alpha {alpha:g}, 200 tokens (load average {load_before:.1f} -> {load_after:.1f}):")
    for case in cases:
        print(
            f"  {case:34s} wall {[round(x, 2) for x in timing[case]]}  cpu {[round(x, 2) for x in timing_cpu[case]]}"
            f"  p:verdict:keys {timing_p[case]}"
        )

    return deciders, timing, timing_cpu, timing_p, load_before, load_after


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48, help="prompts")
    ap.add_argument("--max-new-tokens", type=int, default=70)
    ap.add_argument("--lengths", default="10,20,35,50")
    ap.add_argument("--rates", default="0.1,0.2,0.3,0.4,0.5")
    ap.add_argument("--m", type=int, default=35, help="tokens scored in the edit sweep")
    ap.add_argument("--resamples", type=int, default=999)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--timing-texts", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=1e-3, help="level of the decisions (sections 4-5)")
    ap.add_argument("--decide-tokens", type=int, default=120, help="tokens per text before insertions (5)")
    ap.add_argument("--decide-texts", type=int, default=16)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 avoids contention on a shared box)"
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timing-only", action="store_true", help="only the decision times (section 4), minutes")
    args = ap.parse_args()
    if args.quick:  # 120-token generations serve the sweeps and the verdicts alike
        args.n, args.resamples, args.timing_texts, args.max_new_tokens = 16, 199, 4, 120
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    lengths = [int(x) for x in args.lengths.split(",")]
    rates = [float(x) for x in args.rates.split(",")]

    model, tok = load_model()
    vocab = len(tok)
    key = Key.from_seed("benchmark-distortion-free")
    if args.timing_only:
        _, timing, timing_cpu, _, load_before, load_after = decision_timing(
            model, tok, vocab, key, load_prompts(args.timing_texts), args.alpha
        )
        emit(
            {
                "benchmark": "distortion_free",
                "part": "timing",
                "alpha": args.alpha,
                "edit_detect_s_per_text": median(timing["exp-edit/watermarked_inserted_20"]),
                "decide_s_per_200_token_text": {c: median(v) for c, v in timing.items()},
                "decide_cpu_s_per_200_token_text": {c: median(v) for c, v in timing_cpu.items()},
                "decide_load_average": [load_before, load_after],
                "median_decision_le_2s": all(median(v) <= 2.0 for v in timing.values()),
            }
        )
        return
    gen_schemes = {
        "plain": None,
        "exp": build_scheme({"scheme": "exp", "vocab_size": vocab}, key),
        "its": build_scheme({"scheme": "its", "vocab_size": vocab}, key),
        "kgw": build_scheme({"scheme": "kgw", "vocab_size": vocab, "delta": 2.0}, key),
    }
    detectors = {
        name: build_scheme({"scheme": name, "vocab_size": vocab, "resamples": args.resamples}, key)
        for name in DETECTORS
        if name != "kgw"
    }
    detectors["kgw"] = gen_schemes["kgw"]

    # 1. generation, family by family inside each batch (same load for all four)
    prompts = load_prompts(args.n)
    texts: dict[str, list[list[int]]] = {f: [] for f in FAMILIES}
    gen_time = dict.fromkeys(FAMILIES, 0.0)
    for start in range(0, len(prompts), args.batch_size):
        batch = prompts[start : start + args.batch_size]
        for fam in FAMILIES:
            t0 = time.perf_counter()
            out = generate(
                model,
                tok,
                batch,
                scheme=gen_schemes[fam],
                max_new_tokens=args.max_new_tokens,
                min_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
                seed=start,
            )
            gen_time[fam] += time.perf_counter() - t0
            texts[fam] += encode_texts(tok, [g.text for g in out])
        print(
            f"generated {start + len(batch)}/{len(prompts)}  "
            + "  ".join(f"{f} {gen_time[f]:.0f}s" for f in FAMILIES)
        )
    overhead = {f: gen_time[f] / gen_time["plain"] for f in ("exp", "its", "kgw")}

    def p_values(det: str, family: str, m: int, edit: str | None = None, rate: float = 0.0) -> list[float]:
        rng = np.random.default_rng(1234)
        out = []
        for ids in texts[family]:
            if edit:
                ids = attack(edit, ids, rate, vocab, rng)
            if len(ids) >= m:
                out.append(detectors[det].detect(ids[:m]).p_value)
        return out

    # 2. median p against length
    length_rows = []
    for det, fam in DETECTORS.items():
        t0 = time.perf_counter()
        wm = [median(p_values(det, fam, m)) for m in lengths]
        null = [median(p_values(det, "plain", m)) for m in lengths]
        length_rows.append((det, wm, null))
        print(
            f"{det:9s} watermarked {[fmt(x) for x in wm]}  plain {[fmt(x) for x in null]}  {time.perf_counter() - t0:.0f}s"
        )

    # 3. edit sweep at m tokens
    edit_rows = {}
    for det in ("exp-edit", "its-edit"):
        for name in ATTACKS:
            t0 = time.perf_counter()
            cells = []
            for rate in rates:
                ps = p_values(det, DETECTORS[det], args.m, name, rate)
                cells.append((median(ps), float(np.mean(np.asarray(ps) <= 0.01)) if ps else float("nan")))
            edit_rows[(det, name)] = cells
            print(
                f"{det:9s} {name:12s} " + " ".join(f"{fmt(p)}/{d:.2f}" for p, d in cells),
                f"{time.perf_counter() - t0:.0f}s",
            )

    # 4. decision time at alpha on 200-token texts
    deciders, timing, timing_cpu, timing_p, load_before, load_after = decision_timing(
        model, tok, vocab, key, prompts[: args.timing_texts], args.alpha
    )

    # 5. verdicts at alpha: 20% insertions into texts of --decide-tokens tokens
    m_dec = args.decide_tokens
    decide_texts = {f: texts[f] for f in ("exp", "its", "plain")}
    if args.max_new_tokens < m_dec:
        decide_prompts = prompts[: args.decide_texts]
        decide_texts = {
            f: encode_texts(
                tok,
                [
                    g.text
                    for g in generate(
                        model,
                        tok,
                        decide_prompts,
                        scheme=gen_schemes[f],
                        max_new_tokens=m_dec,
                        min_new_tokens=m_dec,
                        batch_size=args.batch_size,
                    )
                ],
            )
            for f in ("exp", "its", "plain")
        }
    rng = np.random.default_rng(12)
    verdicts: dict[str, dict[str, int]] = {}
    decide_time: list[float] = []
    for det, fam in (("exp-edit", "exp"), ("its-edit", "its")):
        verdicts[det] = {}
        for side, src in (("watermarked", fam), ("unwatermarked", "plain")):
            called, total, ps = 0, 0, []
            for ids in decide_texts[src][: args.decide_texts]:
                edited = insert_tokens(list(ids[:m_dec]), 0.2, vocab, rng)
                t0 = time.perf_counter()
                d = deciders[det].detect(edited, alpha=args.alpha)
                decide_time.append(time.perf_counter() - t0)
                called += d.verdict(args.alpha) == "watermarked"
                total += 1
                ps.append(fmt(d.p_value))
            verdicts[det][side] = called
            verdicts[det][f"{side}_texts"] = total
            print(f"{det} {side}: {called}/{total} called watermarked at alpha {args.alpha:g}; p {ps}")

    # tables
    print(f"\n## Median p-value against length m (n = 256, T = {args.resamples})\n")
    print(
        "| detector | "
        + " | ".join(f"m={m} wm" for m in lengths)
        + " | "
        + " | ".join(f"m={m} plain" for m in lengths)
        + " |"
    )
    print("|---" * (1 + 2 * len(lengths)) + "|")
    for det, wm, null in length_rows:
        print(
            f"| {det} | " + " | ".join(fmt(x) for x in wm) + " | " + " | ".join(fmt(x) for x in null) + " |"
        )
    print(f"\n## Random edits at m = {args.m}: median p / share with p <= 0.01\n")
    print("| detector | attack | " + " | ".join(f"{r:g}" for r in rates) + " |")
    print("|---" * (2 + len(rates)) + "|")
    for (det, name), cells in edit_rows.items():
        print(f"| {det} | {name} | " + " | ".join(f"{fmt(p)} / {d:.2f}" for p, d in cells) + " |")

    headline = {}
    for det in ("exp-edit", "its-edit"):
        for name in ATTACKS:
            for rate, (p, share) in zip(rates, edit_rows[(det, name)], strict=True):
                if rate >= 0.4:
                    headline[f"{det}/{name}/{rate:g}"] = {"median_p": p, "share_p_le_0.01": share}
    emit(
        {
            "benchmark": "distortion_free",
            "prompts": args.n,
            "resamples": args.resamples,
            "alpha": args.alpha,
            "edit_detect_s_per_text": median(timing["exp-edit/watermarked_inserted_20"]),
            "edit_detect_s_per_text_clean": median(timing["exp-edit/watermarked_clean"]),
            "edit_detect_s_per_text_unwatermarked": median(timing["exp-edit/unwatermarked"]),
            "decide_s_per_200_token_text": {c: median(v) for c, v in timing.items()},
            "decide_cpu_s_per_200_token_text": {c: median(v) for c, v in timing_cpu.items()},
            "decide_load_average": [load_before, load_after],
            "verdicts_120_tokens_20pct_insertions": verdicts,
            "decide_s_per_verdict_text_median": median(decide_time),
            "done_when": {
                "exp-edit_watermarked_ge_14_of_16": verdicts["exp-edit"]["watermarked"] >= 14,
                "its-edit_watermarked_ge_14_of_16": verdicts["its-edit"]["watermarked"] >= 14,
                "unwatermarked_0": verdicts["exp-edit"]["unwatermarked"]
                + verdicts["its-edit"]["unwatermarked"]
                == 0,
                "median_decision_le_2s": all(median(v) <= 2.0 for v in timing.values()),
            },
            "exp_generate_overhead_vs_plain": overhead["exp"],
            "its_generate_overhead_vs_plain": overhead["its"],
            "kgw_generate_overhead_vs_plain": overhead["kgw"],
            "median_p_m35": {det: wm[lengths.index(35)] for det, wm, _ in length_rows}
            if 35 in lengths
            else {},
            "median_p_m35_plain": {det: null[lengths.index(35)] for det, _, null in length_rows}
            if 35 in lengths
            else {},
            "headline_rate_ge_0.4": headline,
            "peak_rss_mb": peak_rss_mb(),
            "wall_s": time.perf_counter() - t_start,
        }
    )


if __name__ == "__main__":
    main()

"""Green-list benchmark: generation overhead and detection speed against transformers' own
watermark (WatermarkLogitsProcessor / WatermarkDetector), measured in the same run, plus the
peak memory of detecting a 1,000,000-token input.

    python benchmarks/greenlist.py            # full: 200 new tokens, batch 1 and 8
    python benchmarks/greenlist.py --quick    # smaller, under 3 minutes

The last line is one JSON object: generate_overhead_vs_plain (ours / plain, batch 8),
hf_generate_overhead_vs_plain, detect_speedup_vs_hf (our tokens/s / theirs), detect_peak_rss_mb.
Overheads are medians of per-repeat ratios (plain, ours and transformers' processor run back to
back in a rotating order after a warm-up at the measured batch size), with their range (`_range`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import ROOT, emit, load_prompts
from transformers import WatermarkDetector, WatermarkingConfig
from transformers.generation.watermarking import WatermarkLogitsProcessor

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.modeling.models import load_model
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme
from wm_toolkit.watermark.text.textio import text_lines

MEM_SCRIPT = """
import sys, time, numpy as np
sys.path.insert(0, {root!r})
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme
s = build_scheme(GreenListConfig(vocab_size=49152), Key.from_seed(0))
ids = np.random.default_rng(0).integers(0, 49152, {n})
def hwm():  # peak RSS of this process image (ru_maxrss would include the parent's pages at fork)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
base = hwm()
t = time.perf_counter(); d = s.detect(ids); dt = time.perf_counter() - t
print(hwm(), base, dt, d.num_tokens_scored)
"""


def hf_processor(model, cfg: WatermarkingConfig) -> WatermarkLogitsProcessor:
    return WatermarkLogitsProcessor(
        vocab_size=model.config.vocab_size,
        device=model.device,
        greenlist_ratio=cfg.greenlist_ratio,
        bias=cfg.bias,
        hashing_key=cfg.hashing_key,
        seeding_scheme=cfg.seeding_scheme,
        context_width=cfg.context_width,
    )


class _HFScheme:
    """Adapter so transformers' processor runs through the same generate() loop as ours."""

    def __init__(self, model, cfg):
        self.model, self.cfg = model, cfg

    def processor(self):
        return hf_processor(self.model, self.cfg)


def _time_generation(model, tok, prompts, variants: dict, bs: int, new_tokens: int, repeats: int):
    """Seconds of each variant, `repeats` times. Each variant is warmed up first at the measured
    batch size (the first run pays for allocations and compiled kernels), and the order rotates
    over the repeats, so no variant is always first or always after the same one: a ratio below
    1 can only be noise, and the spread of the per-repeat ratios says how much."""
    names = list(variants)

    def once(name: str, tokens: int, seed: int):
        t0 = time.perf_counter()
        out = generate(model, tok, prompts, scheme=variants[name], max_new_tokens=tokens,
                       min_new_tokens=tokens, batch_size=bs, seed=seed)  # fmt: skip
        return time.perf_counter() - t0, out

    for name in names:
        once(name, min(8, new_tokens), 0)
    times: dict[str, list[float]] = {n: [] for n in names}
    outs: dict[str, list] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, out = once(name, new_tokens, r)
            times[name].append(seconds)
            outs[name].extend(out)
    return times, outs


def processor_step_cost(processors: dict, vocab: int, bs: int, steps: int = 400) -> dict[str, float]:
    """Microseconds one generation step spends in each logits processor at batch `bs`, timed alone
    on fixed inputs (median of 5 blocks): what a row pays for, free of the model's timing noise."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (bs, 64), generator=g)
    scores = torch.randn(bs, vocab, generator=g)
    out = {}
    for name, make in processors.items():
        proc = make()
        proc(ids, scores.clone())  # warm-up (allocations, kernels)
        blocks = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(steps // 5):
                proc(ids, scores.clone())
            blocks.append((time.perf_counter() - t0) / (steps // 5))
        out[name] = statistics.median(blocks) * 1e6
    t0 = time.perf_counter()
    for _ in range(steps):
        scores.clone()
    clone_us = (time.perf_counter() - t0) / steps * 1e6
    return {k: v - clone_us for k, v in out.items()}


def _ratio_spread(times: list[float], plain: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-repeat ratios (each pair ran back to back in one round)."""
    ratios = [a / b for a, b in zip(times, plain, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument(
        "--detect-texts",
        default=None,
        help="JSONL with token_ids (e.g. out/power/kgw-*.jsonl) for the detection comparison",
    )
    ap.add_argument("--skip-generation", action="store_true", help="only the detection and memory parts")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (1 is steadier on a shared machine)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    new_tokens = 48 if args.quick else 200
    repeats = args.repeats or 3
    batches = [8] if args.quick else [1, 8]

    model, tok = load_model(device="cpu")
    ours = build_scheme(GreenListConfig(vocab_size=len(tok)), Key.from_seed("bench"))
    hf_cfg = WatermarkingConfig(greenlist_ratio=0.25, bias=2.0, context_width=1, seeding_scheme="lefthash")
    hf = _HFScheme(model, hf_cfg)
    result: dict = {"new_tokens": new_tokens, "quick": args.quick}
    texts_ids: list[tuple[int, ...]] = []
    for bs in [] if args.skip_generation else batches:
        variants = {"plain": None, "ours": ours, "hf": hf}
        times, outs = _time_generation(model, tok, load_prompts(bs), variants, bs, new_tokens, repeats)
        texts_ids.extend(g.token_ids for g in outs["ours"])
        t = {k: statistics.median(v) for k, v in times.items()}
        print(
            f"batch {bs}: plain {bs * new_tokens / t['plain']:.1f} tok/s, ours {bs * new_tokens / t['ours']:.1f} tok/s, "
            f"hf {bs * new_tokens / t['hf']:.1f} tok/s"
        )
        result[f"plain_tok_s_b{bs}"] = bs * new_tokens / t["plain"]
        result[f"ours_tok_s_b{bs}"] = bs * new_tokens / t["ours"]
        result[f"hf_tok_s_b{bs}"] = bs * new_tokens / t["hf"]
        step_us = processor_step_cost({"ours": ours.processor, "hf": hf.processor}, len(tok), bs)
        plain_step_us = t["plain"] / new_tokens * 1e6
        for name in ("ours", "hf"):
            result[f"{name}_processor_us_per_step_b{bs}"] = step_us[name]
            result[f"{name}_processor_share_b{bs}"] = step_us[name] / plain_step_us
        print(
            f"batch {bs}: one step: model {plain_step_us:.0f} us, our processor {step_us['ours']:.0f} us "
            f"({step_us['ours'] / plain_step_us:.2%}), transformers' {step_us['hf']:.0f} us "
            f"({step_us['hf'] / plain_step_us:.2%})"
        )
        for name, label in (("ours", "generate_overhead_vs_plain"), ("hf", "hf_generate_overhead_vs_plain")):
            mid, lo, hi = _ratio_spread(times[name], times["plain"])
            result[f"{label}_b{bs}"] = mid
            result[f"{label}_b{bs}_range"] = [lo, hi]
            print(f"batch {bs}: {name} / plain {mid:.3f} (median of {repeats} pairs; {lo:.3f}-{hi:.3f})")
    if not args.skip_generation:
        result["generate_overhead_vs_plain"] = result["generate_overhead_vs_plain_b8"]
        result["hf_generate_overhead_vs_plain"] = result["hf_generate_overhead_vs_plain_b8"]
    if args.detect_texts:
        lines = text_lines(Path(args.detect_texts).read_text(encoding="utf-8"))
        texts_ids = [tuple(json.loads(x)["token_ids"]) for x in lines if x.strip()]

    # detection speed on the same texts: ours vs transformers' WatermarkDetector
    detector = WatermarkDetector(model.config, "cpu", hf_cfg, ignore_repeated_ngrams=True)
    n_tok = sum(len(x) for x in texts_ids)
    t0 = time.perf_counter()
    for ids in texts_ids:
        ours.detect(ids)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for ids in texts_ids:
        detector(torch.tensor([ids]), return_dict=True)
    hf_s = time.perf_counter() - t0
    result.update(
        detect_tok_s=n_tok / ours_s, hf_detect_tok_s=n_tok / hf_s, detect_speedup_vs_hf=hf_s / ours_s
    )
    print(
        f"detection: ours {n_tok / ours_s:.0f} tok/s, transformers {n_tok / hf_s:.0f} tok/s "
        f"({hf_s / ours_s:.0f}x) on {len(texts_ids)} texts"
    )

    # peak memory of one 1,000,000-token detection, in a fresh process
    n = 200_000 if args.quick else 1_000_000
    out = subprocess.run(
        [sys.executable, "-c", MEM_SCRIPT.format(root=str(ROOT), n=n)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    peak, base, secs = float(out[0]), float(out[1]), float(out[2])
    result.update(
        detect_peak_rss_mb=peak, detect_rss_before_mb=base, detect_1m_tokens_s=secs, detect_mem_tokens=n
    )
    print(f"detection of {n} tokens: {secs:.2f} s, peak RSS {peak:.0f} MB (process baseline {base:.0f} MB)")
    emit(result)


if __name__ == "__main__":
    main()

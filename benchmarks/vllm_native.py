"""vLLM's native watermarks, embedded by vLLM's own code and detected by wm (run inside .venv-vllm).

    nice .venv-vllm/bin/python benchmarks/vllm_native.py [--prompts 32] [--tokens 150]

Generation: the default model (SmolLM2-135M-Instruct, wm's cached safetensors copy) in a plain
transformers forward loop on CPU; each step goes through vLLM's sampling path as its sampler runs it
on CPU: fp32 logits, temperature 1, vLLM's repeated-context mask (`repeated_context_mask`, scope
single_turn, history 8192) and `GumbelWatermarker._sample_watermarked` (vLLM's PhiloxPRF and Gumbel
argmax); dual_key_gumbel routes each step to key B with probability alpha = 0.1 as
`DualKeyGumbelWatermarker.sample` does. EOS is masked so every text has the full length.
Detection: vLLM's detectors and wm's schemes on the same token ids; wm also on the decoded text
(wm's canonical tokenisation, as `wm detect` scores it). The null: the unwatermarked texts under
200 random keys. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vllm.v1.watermarking import (  # noqa: E402
    DualKeyGumbelWatermarkDetector,
    DualKeyGumbelWatermarker,
    GumbelWatermarkDetector,
    GumbelWatermarker,
)
from vllm.v1.worker.gpu.sample.watermark import repeated_context_mask  # noqa: E402

from wm_toolkit.watermark.keying.vllmkey import VllmKey  # noqa: E402
from wm_toolkit.watermark.modeling.generation import encode_texts, format_prompt  # noqa: E402
from wm_toolkit.watermark.modeling.models import load_model  # noqa: E402
from wm_toolkit.watermark.schemes import build_scheme  # noqa: E402

KEYS = (0x5EED0000CAFE0001, 0x0123456789ABCDEF)
W, ALPHA, HISTORY = 4, 0.1, 8192


def prompts(n: int) -> list[str]:
    lines = (ROOT / "data" / "prompts.jsonl").read_text().splitlines()
    return [json.loads(x)["prompt"] for x in lines[:n]]


def vllm_step(watermarker, logits, generated, prompt_lens, rng) -> torch.Tensor:
    """One sampling step the way vLLM's GPUWatermarkSampler runs it (CPU reference paths)."""
    b = logits.shape[0]
    m = generated.shape[1]
    ctx = torch.full((b, W), -1, dtype=torch.int64)
    if m:
        tail = generated[:, -W:]
        ctx[:, W - tail.shape[1] :] = tail
    plain = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=rng)[:, 0]
    if watermarker is None:
        return plain
    all_ids = torch.cat([torch.zeros((b, 1), dtype=torch.int64), generated], dim=1)  # prompt of 1 here
    skip = repeated_context_mask(
        all_ids, torch.arange(b), torch.ones(b, dtype=torch.int64), torch.full((b,), m + 1), ctx, HISTORY
    )
    if isinstance(watermarker, DualKeyGumbelWatermarker):
        a = watermarker.draft_watermarker._sample_watermarked(logits, ctx).token_ids
        bb = watermarker.target_watermarker._sample_watermarked(logits, ctx).token_ids
        use_b = torch.rand(b, generator=rng) < watermarker.alpha
        marked = torch.where(use_b, bb, a)
    else:
        marked = watermarker._sample_watermarked(logits, ctx).token_ids
    return torch.where(skip, plain, marked)


@torch.no_grad()
def generate(model, tok, texts: list[str], tokens: int, watermarker, seed: int) -> list[list[int]]:
    rng = torch.Generator().manual_seed(seed)
    tok.padding_side = "left"
    enc = tok(
        [format_prompt(tok, t) for t in texts], return_tensors="pt", padding=True, add_special_tokens=False
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    out = model(input_ids=ids, attention_mask=mask, use_cache=True)
    past, generated = out.past_key_values, torch.zeros((ids.shape[0], 0), dtype=torch.int64)
    logits = out.logits[:, -1].float()
    for _ in range(tokens):
        logits[:, tok.eos_token_id] = -torch.inf
        nxt = vllm_step(watermarker, logits, generated, None, rng)
        generated = torch.cat([generated, nxt[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(nxt[:, None])], dim=1)
        out = model(input_ids=nxt[:, None], attention_mask=mask, past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1].float()
    return generated.tolist()


def wm_scheme(algorithm: str, key: int, vocab: int, statistic: str = "fusion"):
    name = "vllm-gumbel" if algorithm == "gumbel" else "vllm-dual-key-gumbel"
    return build_scheme({"scheme": name, "vocab_size": vocab, "dual_statistic": statistic}, VllmKey(key))


def vllm_detector(algorithm: str, key: int):
    if algorithm == "gumbel":
        return GumbelWatermarkDetector(key, W)
    return DualKeyGumbelWatermarkDetector(key, W, alpha=ALPHA)


def timed(fn, items) -> tuple[list, float]:
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return out, time.perf_counter() - t0


def log10_ps(scheme, texts, vllm: bool = False) -> np.ndarray:
    """wm's log10 p-values (or, with vllm, vLLM's detector's, which wm reproduces to 1e-9)."""
    dets = scheme.detect_many(texts)
    if vllm:
        return np.log10(np.maximum([d.vllm_p_value for d in dets], 1e-300))
    return np.array([d.log10_p_value for d in dets])


def evaluate(algorithm: str, key: int, gens, null_gens, tok, vocab, texts) -> dict:
    vdet = vllm_detector(algorithm, key)
    stats = ("fusion", "max", "bonferroni") if algorithm != "gumbel" else ("fusion",)
    schemes = {s: wm_scheme(algorithm, key, vocab, s) for s in stats}
    default = schemes["fusion"]
    vres, vtime = timed(vdet.detect, gens)
    wres, wtime = timed(default.detect, gens)
    _, btime = timed(default.detect_many, [gens])
    n_tokens = sum(len(g) for g in gens)
    text_ids = encode_texts(tok, texts)
    wm_text = np.array([default.detect(ids).log10_p_value for ids in text_ids])
    vp = np.log10(np.maximum([r.p_value for r in vres], 1e-300))
    row = {
        "algorithm": algorithm,
        "key": f"key{KEYS.index(key)}",
        "vllm_detected_1e-3": int((vp <= -3).sum()),
        "wm_detected_1e-3_ids": int(sum(d.log10_p_value <= -3 for d in wres)),
        "wm_detected_1e-3_text": int((wm_text <= -3).sum()),
        "median_log10_p_vllm": float(np.median(vp)),
        "median_log10_p_wm": float(np.median([d.log10_p_value for d in wres])),
        "wm_p_le_vllm_p": int(
            sum(d.p_value <= r.p_value * (1 + 1e-3) for d, r in zip(wres, vres, strict=True))
        ),
        "null_detected_1e-3_wm": int((log10_ps(default, null_gens) <= -3).sum()),
        "null_detected_1e-3_vllm": int((log10_ps(default, null_gens, vllm=True) <= -3).sum()),
        "vllm_tokens_per_s": n_tokens / vtime,
        "wm_tokens_per_s": n_tokens / wtime,
        "wm_batch_tokens_per_s": n_tokens / btime,
    }
    row["speedup"] = row["wm_batch_tokens_per_s"] / row["vllm_tokens_per_s"]
    if algorithm != "gumbel":
        row["dual"] = dual_power(schemes, gens, null_gens, vocab)
    return row


def dual_power(schemes, gens, null_gens, vocab) -> dict:
    """Power of each two-key test and of vLLM's approximation, on prefixes (where they differ),
    at the nominal 1e-3 and at an empirical FPR of 1e-2 (null: unwatermarked texts, 200 keys)."""
    rng = np.random.default_rng(0)
    null_keys = [int(k) for k in rng.integers(0, 2**63, 200)]
    out = {}
    for prefix in (16, 32, 64):
        cut = [g[:prefix] for g in gens]
        nulls = [g[:prefix] for g in null_gens]
        res = {name: log10_ps(s, cut) for name, s in schemes.items()}
        res["vllm_approx"] = log10_ps(schemes["fusion"], cut, vllm=True)
        row = {}
        for name in res:
            stat = "fusion" if name == "vllm_approx" else name
            null = np.sort(
                np.concatenate(
                    [
                        log10_ps(wm_scheme("dual", k, vocab, stat), nulls, name == "vllm_approx")
                        for k in null_keys
                    ]
                )
            )
            thr = null[int(0.01 * len(null)) - 1]  # empirical 1 % level
            row[name] = {
                "detected_1e-3": int((res[name] <= -3).sum()),
                "fpr_at_nominal_1e-2": float((null <= -2).mean()),
                "fpr_at_nominal_1e-3": float((null <= -3).mean()),
                "power_at_empirical_fpr_1e-2": float((res[name] <= thr).mean()),
                "median_log10_p": float(np.median(res[name])),
            }
        out[f"prefix{prefix}"] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=150)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, tok = load_model()
    vocab = model.config.vocab_size
    texts = prompts(args.prompts)
    t0 = time.perf_counter()
    null = generate(model, tok, texts, args.tokens, None, seed=1)
    rows = []
    for i, key in enumerate(KEYS):
        for algorithm in ("gumbel", "dual"):
            wmk = (
                GumbelWatermarker(key, W)
                if algorithm == "gumbel"
                else DualKeyGumbelWatermarker(key, W, alpha=ALPHA)
            )
            gens = generate(model, tok, texts, args.tokens, wmk, seed=10 + i)
            decoded = tok.batch_decode(gens, skip_special_tokens=True)
            rows.append(evaluate(algorithm, key, gens, null, tok, vocab, decoded))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    summary = {
        "prompts": args.prompts,
        "tokens": args.tokens,
        "seconds": time.perf_counter() - t0,
        "rows": rows,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

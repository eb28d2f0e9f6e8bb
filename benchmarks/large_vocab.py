"""Large vocabularies (262,144 tokens, Gemma-3's size): the green-list processor's generation
overhead at batch 8 against plain generation, and detection speed, with a tiny random LLaMA.

    python benchmarks/large_vocab.py            # 64 new tokens, 3 interleaved repeats
    python benchmarks/large_vocab.py --quick    # 16 new tokens, 1 repeat

A random model is enough: the processor's cost does not depend on the weights, only on the batch
and the vocabulary. The model (hidden 256, 2 layers) is far smaller than any real 262k-vocabulary
model, so the ratio here is an upper bound on the overhead a real model sees; the per-step cost of
the processor in milliseconds is printed too. The last line is one JSON object:
generate_overhead_vs_plain (kgw / plain, batch 8), processor_ms_per_step, model_ms_per_step,
detect_tokens_per_s (kgw) and detect_tokens_per_s_default_vocab (the same texts' lengths at
SmolLM2's 49,152 tokens) for comparison.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import emit
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme

VOCAB = 262_144


def tiny_model(vocab: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


@torch.inference_mode()
def gen(model, prompts, processor, new_tokens: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.generate(
        input_ids=prompts,
        attention_mask=torch.ones_like(prompts),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=True,
        top_k=0,
        logits_processor=LogitsProcessorList([processor] if processor is not None else []),
        pad_token_id=0,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    new_tokens, repeats, batch = (16, 1, 8) if args.quick else (64, 3, 8)
    model = tiny_model(VOCAB)
    scheme = build_scheme(GreenListConfig(vocab_size=VOCAB), Key.from_seed("large-vocab"))
    prompts = torch.randint(3, VOCAB, (batch, 16), generator=torch.Generator().manual_seed(0))
    gen(model, prompts[:, :4], scheme.processor(), 2, 0)  # warm-up (caches, allocator)
    times: dict[str, list[float]] = {"plain": [], "kgw": []}
    outputs = []
    for r in range(repeats):  # interleaved, so background load hits both alike
        for name in ("plain", "kgw"):
            t0 = time.perf_counter()
            out = gen(model, prompts, scheme.processor() if name == "kgw" else None, new_tokens, r)
            times[name].append(time.perf_counter() - t0)
            if name == "kgw":
                outputs.append(out[:, prompts.shape[1] :])
    t = {k: min(v) for k, v in times.items()}

    # the processor alone, per step, on the contexts it met
    proc = scheme.processor()
    seqs = torch.cat([prompts, outputs[-1]], dim=1)
    scores = torch.randn(batch, VOCAB)
    steps = seqs.shape[1] - prompts.shape[1]
    t0 = time.perf_counter()
    for i in range(prompts.shape[1], seqs.shape[1]):
        proc(seqs[:, :i], scores)
    proc_ms = 1000 * (time.perf_counter() - t0) / steps

    # detection: the generated texts (watermarked) and random texts of the same lengths
    texts = [o.numpy() for out in outputs for o in out]
    t0 = time.perf_counter()
    dets = [scheme.detect(ids) for ids in texts]
    det_s = time.perf_counter() - t0
    n_tok = sum(len(x) for x in texts)
    small = build_scheme(GreenListConfig(vocab_size=49_152), Key.from_seed("large-vocab"))
    rng = np.random.default_rng(0)
    small_texts = [rng.integers(0, 49_152, len(x)) for x in texts]
    t0 = time.perf_counter()
    for ids in small_texts:
        small.detect(ids)
    small_s = time.perf_counter() - t0
    detected = sum(d.p_value < 1e-3 for d in dets) / len(dets)

    result = {
        "vocab_size": VOCAB,
        "batch": batch,
        "new_tokens": new_tokens,
        "repeats": repeats,
        "threads": args.threads,
        "plain_s": t["plain"],
        "kgw_s": t["kgw"],
        "generate_overhead_vs_plain": t["kgw"] / t["plain"],
        "model_ms_per_step": 1000 * t["plain"] / new_tokens,
        "processor_ms_per_step": proc_ms,
        "detect_tokens_per_s": n_tok / det_s,
        "detect_tokens_per_s_default_vocab": n_tok / small_s,
        "watermarked_detected_at_1e-3": detected,
    }
    print(
        f"batch {batch}, vocab {VOCAB:,}: plain {t['plain']:.2f} s, kgw {t['kgw']:.2f} s "
        f"(x{t['kgw'] / t['plain']:.3f}); processor {proc_ms:.2f} ms/step vs model "
        f"{1000 * t['plain'] / new_tokens:.2f} ms/step; detection {n_tok / det_s:,.0f} tokens/s "
        f"({n_tok / small_s:,.0f} at 49,152); {detected:.0%} of kgw texts detected at 1e-3"
    )
    emit(result)


if __name__ == "__main__":
    main()

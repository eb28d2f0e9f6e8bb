#!/usr/bin/env bash
# GPU check: on a CUDA machine, generate with kgw and exp at batch 64 (the default model, or the
# tiny random model with --tiny / when the default is not cached), check that green lists and
# EXP key rows are bit-identical between CPU and GPU, and print the overhead of each watermark
# against plain generation on the GPU. The last line is one JSON object. Without CUDA it says so
# and exits 0.
#   bash benchmarks/gpu_check.sh [--tiny] [--new-tokens N]
# With --vllm it runs the vLLM half instead (benchmarks/gpu_check_vllm.py, in VLLM_PYTHON or
# .venv-vllm, which must hold a CUDA build of vLLM on the GPU machine): vLLM's Philox on the GPU ==
# wm's numpy uniforms, vLLM's native gumbel / dual_key_gumbel in its GPU engine detected by wm, and
# wm's plugin (kgw, gumbel, exp, synthid) in the GPU engine.
#   bash benchmarks/gpu_check.sh --vllm [--prompts 32] [--tokens 150] [--cpu-dry-run]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--vllm" ]; then
    shift
    VPY="${VLLM_PYTHON:-$(test -x .venv-vllm/bin/python && echo .venv-vllm/bin/python || echo python3)}"
    exec "$VPY" benchmarks/gpu_check_vllm.py "$@"
fi
PY="${PYTHON:-$(test -x .venv/bin/python && echo .venv/bin/python || echo python3)}"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" - "$@" <<'PYEOF'
import argparse, json, sys, time

import numpy as np
import torch

ap = argparse.ArgumentParser()
ap.add_argument("--tiny", action="store_true")
ap.add_argument("--new-tokens", type=int, default=64)
ap.add_argument("--cpu-dry-run", action="store_true", help="run every step on the CPU (checks the script only)")
args = ap.parse_args()
if not torch.cuda.is_available() and not args.cpu_dry_run:
    print("no CUDA device here: nothing to check (run this on a GPU machine)")
    print(json.dumps({"cuda": False}))
    sys.exit(0)

from wm_toolkit.watermark import prf
from wm_toolkit.watermark.modeling.generation import generate
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import DistortionFreeConfig, GreenListConfig, build_scheme

dev = torch.device("cpu" if args.cpu_dry_run else "cuda")
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
key = Key.from_seed("gpu-check")
result = {"cuda": dev.type == "cuda", "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "batch": 64, "new_tokens": args.new_tokens}

# 1. bit-identity of the keyed randomness, CPU vs GPU, at two vocabulary sizes
rng = np.random.default_rng(0)
ok_green = ok_exp = True
for vocab in (49_152, 262_144):
    kgw = build_scheme(GreenListConfig(vocab_size=vocab), key)
    ctx = rng.integers(0, vocab, (64, 1))
    seeds = torch.from_numpy(kgw.seeds_for(ctx))
    cpu = kgw.vocab_green_mask(seeds, vocab)                  # fused CPU kernel
    gpu = kgw.vocab_green_mask(seeds.to(dev), vocab).cpu()    # torch on the GPU
    ok_green &= bool(torch.equal(cpu, gpu))
    ok_green &= bool(torch.equal(prf.vocab_below_torch(seeds, vocab, 0.25), gpu))
    ids = torch.arange(vocab).reshape(1, -1)                  # detection's per-token test
    ok_green &= bool(torch.equal(kgw.is_green(seeds.reshape(-1, 1)[:4], ids), cpu[:4]))
    exp = build_scheme(DistortionFreeConfig(scheme="exp", vocab_size=vocab), key)
    rows = torch.arange(0, 256, 4)
    xi_cpu = prf.vocab_uniforms(exp._row_seeds[rows], vocab)
    xi_gpu = prf.vocab_uniforms(exp._row_seeds.to(dev)[rows.to(dev)], vocab).cpu()
    ok_exp &= bool(torch.equal(xi_cpu, xi_gpu))
result["green_lists_identical"] = ok_green
result["exp_keys_identical"] = ok_exp
print(f"green lists CPU == GPU: {ok_green}; EXP key rows CPU == GPU: {ok_exp}")

# 2. generation at batch 64 (the dry run: 4 prompts) on the GPU: plain, kgw, exp
from wm_toolkit.watermark.modeling.models import load_model

if args.tiny or args.cpu_dry_run:
    model = None
else:
    try:
        model, tok = load_model(device=dev.type)
    except Exception as exc:  # not cached here: fall back to the tiny model
        print(f"default model unavailable ({type(exc).__name__}); using the tiny random model")
        model = None
if model is None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from wm_toolkit.watermark.modeling.models import load_tokenizer

    tok = load_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)).eval().to(dev)
    result["model"] = "tiny-random"
else:
    result["model"] = "default"
prompts = [f"Write a short note about topic number {i}." for i in range(4 if args.cpu_dry_run else 64)]
schemes = {"plain": None, "kgw": build_scheme(GreenListConfig(vocab_size=len(tok)), key),
           "exp": build_scheme(DistortionFreeConfig(scheme="exp", vocab_size=len(tok)), key)}
generate(model, tok, prompts[:2], max_new_tokens=4)  # warm-up
times = {k: [] for k in schemes}
outs = {}
for r in range(2):
    for name, scheme in schemes.items():
        sync()
        t0 = time.perf_counter()
        outs[name] = generate(model, tok, prompts, scheme=scheme, max_new_tokens=args.new_tokens,
                              min_new_tokens=args.new_tokens, batch_size=len(prompts), seed=r)
        sync()
        times[name].append(time.perf_counter() - t0)
t = {k: min(v) for k, v in times.items()}
for name in ("kgw", "exp"):
    result[f"{name}_overhead_vs_plain"] = t[name] / t["plain"]
    dets = [schemes[name].detect(g.token_ids) for g in outs[name] if g.num_tokens >= 8]
    result[f"{name}_detected_at_1e-3"] = sum(d.p_value < 1e-3 for d in dets) / max(1, len(dets))
result["plain_tok_s"] = len(prompts) * args.new_tokens / t["plain"]
result["batch"] = len(prompts)
print(f"batch {len(prompts)}: plain {t['plain']:.2f} s, kgw x{result['kgw_overhead_vs_plain']:.3f}, "
      f"exp x{result['exp_overhead_vs_plain']:.3f}")
print(json.dumps(result, sort_keys=True))
sys.exit(0 if ok_green and ok_exp else 1)
PYEOF

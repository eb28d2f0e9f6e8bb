"""The vLLM half of the GPU check (`bash benchmarks/gpu_check.sh --vllm`), run in an environment
with a CUDA build of vLLM (`pip install vllm` there; this project's `.venv-vllm` holds the CPU wheel).

1. vLLM's Philox PRF on the GPU gives the uniforms wm computes in numpy (and the CPU fixture
   tests/fixtures/vllm/prf.json): bit for bit, on the fixture cases and 200,000 random pairs.
2. vLLM's *native* watermark in its engine (Model Runner V2, needs Triton: GPU only): gumbel and
   dual_key_gumbel, 32 prompts x 150 tokens, two keys; `wm`'s vllm-gumbel / vllm-dual-key-gumbel
   detect them at p < 1e-3 (target >= 30 of 32) and the engine's unwatermarked text in 0 of 32;
   wm's p-value beside vLLM's own detector's on the same ids.
3. wm's plugin inside the GPU engine: kgw, gumbel, exp, synthid (benchmarks/vllm_engine.py's
   bench: detections, on/off overhead).

    python benchmarks/gpu_check_vllm.py [--prompts 32] [--tokens 150] [--cpu-dry-run]

`--cpu-dry-run` runs part 1 on the CPU and part 3 with 4 prompts (checks the script; part 2
needs the GPU engine and is skipped with the reason). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from wm_toolkit.watermark.keying import philox  # noqa: E402
from wm_toolkit.watermark.keying.vllmkey import VllmKey  # noqa: E402

KEYS = (0x5EED0000CAFE0001, 0x0123456789ABCDEF)


def prf_identical(dev: torch.device) -> dict:
    """vLLM's PhiloxPRF on `dev` == wm's numpy Philox == the CPU fixture, bit for bit."""
    from vllm.v1.watermarking.prfs.philox import PhiloxPRF

    cases = json.loads((ROOT / "tests/fixtures/vllm/prf.json").read_text())["cases"]
    fixture_ok = True
    for c in cases:
        ctx, tok = np.array([c["context"]], dtype=np.int64), np.array([[c["token"]]], dtype=np.int64)
        u = PhiloxPRF(int(c["key"])).uniform(torch.from_numpy(ctx).to(dev), torch.from_numpy(tok).to(dev))
        bits = struct.unpack("<I", struct.pack("<f", float(u.cpu().numpy()[0, 0])))[0]
        fixture_ok &= bits == c["bits"]
    rng = np.random.default_rng(0)
    random_ok = True
    for key in KEYS:
        ctx = rng.integers(-1, 262_144, (200_000, 4))
        tok = rng.integers(0, 262_144, (200_000, 1))
        ours = philox.uniforms(key, ctx, tok)
        theirs = PhiloxPRF(key).uniform(torch.from_numpy(ctx).to(dev), torch.from_numpy(tok).to(dev))
        random_ok &= bool(np.array_equal(ours.view(np.uint32), theirs.cpu().numpy().view(np.uint32)))
    return {"prf_fixture_identical": fixture_ok, "prf_random_identical": random_ok, "prf_device": str(dev)}


def native_engine(prompts: list[str], tokens: int) -> dict:
    """vLLM's own gumbel / dual_key_gumbel in its GPU engine, detected by wm and by vLLM."""
    from vllm import LLM, SamplingParams
    from vllm.v1.watermarking import DualKeyGumbelWatermarkDetector, GumbelWatermarkDetector

    from wm_toolkit.watermark.runtime.engines.vllm_plugin import vllm_model_folder
    from wm_toolkit.watermark.schemes import build_scheme
    from wm_toolkit.watermark.schemes.vllm_gumbel import to_vllm_dict

    folder = vllm_model_folder(None)
    params = SamplingParams(temperature=1.0, max_tokens=tokens, min_tokens=tokens, seed=0)
    rows = []
    plain = LLM(model=folder, dtype="float32", seed=0, gpu_memory_utilization=0.3)
    null_ids = [list(r.outputs[0].token_ids) for r in plain.generate(prompts, params, use_tqdm=False)]
    del plain
    for key in KEYS:
        for name, algorithm in (("vllm-gumbel", "gumbel"), ("vllm-dual-key-gumbel", "dual_key_gumbel")):
            scheme = build_scheme({"scheme": name, "vocab_size": 49_152}, VllmKey(key))
            llm = LLM(model=folder, dtype="float32", seed=0, gpu_memory_utilization=0.3,
                      watermark_config=to_vllm_dict(scheme.config, VllmKey(key)))  # fmt: skip
            ids = [list(r.outputs[0].token_ids) for r in llm.generate(prompts, params, use_tqdm=False)]
            del llm
            vdet = (
                GumbelWatermarkDetector(key, 4)
                if algorithm == "gumbel"
                else DualKeyGumbelWatermarkDetector(key, 4, alpha=scheme.config.dual_alpha)
            )
            ours = scheme.detect_many(ids)
            theirs = [vdet.detect(x).p_value for x in ids]
            rows.append({
                "algorithm": algorithm, "key": KEYS.index(key), "n": len(ids),
                "wm_detected_1e-3": sum(d.p_value < 1e-3 for d in ours),
                "vllm_detected_1e-3": sum(p < 1e-3 for p in theirs),
                "wm_null_detected_1e-3": sum(d.p_value < 1e-3 for d in scheme.detect_many(null_ids)),
                "median_log10_p_wm": float(np.median([d.log10_p_value for d in ours])),
                "median_log10_p_vllm": float(np.median(np.log10(np.maximum(theirs, 1e-300)))),
            })  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"native": rows}


def plugin_engine(n_prompts: int, tokens: int) -> dict:
    """wm's plugin in the engine on this device: benchmarks/vllm_engine.py's per-scheme bench."""
    import vllm_engine

    from wm_toolkit.watermark.keying.keys import Key
    from wm_toolkit.watermark.modeling.models import load_tokenizer

    args = argparse.Namespace(prompts=n_prompts, tokens=tokens, repeats=2)
    tok, key = load_tokenizer(), Key.from_seed("benchmarks/gpu_check_vllm")
    prompts = vllm_engine.read_prompts(n_prompts)
    return {
        "plugin": [
            vllm_engine.bench_scheme(s, key, tok, prompts, args) for s in ("kgw", "gumbel", "exp", "synthid")
        ]
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=150)
    ap.add_argument("--cpu-dry-run", action="store_true")
    args = ap.parse_args()
    try:
        import vllm
    except ImportError:
        print("vLLM is not installed in this environment: nothing to check (pip install vllm)")
        print(json.dumps({"vllm": False}))
        return
    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_dry_run:
        print("no CUDA device here: nothing to check (run this on a GPU machine, or --cpu-dry-run)")
        print(json.dumps({"vllm": vllm.__version__, "cuda": False}))
        return
    dev = torch.device("cuda" if cuda and not args.cpu_dry_run else "cpu")
    result: dict = {"vllm": vllm.__version__, "cuda": dev.type == "cuda"}
    result.update(prf_identical(dev))
    print(f"vLLM Philox on {dev} == wm's: fixture {result['prf_fixture_identical']}, "
          f"random {result['prf_random_identical']}", flush=True)  # fmt: skip
    from vllm_engine import read_prompts

    if dev.type == "cuda":
        result.update(native_engine(read_prompts(args.prompts), args.tokens))
    else:
        result["native"] = "skipped: vLLM's native watermark needs Model Runner V2 (Triton, a GPU)"
    n = 4 if args.cpu_dry_run else args.prompts
    result.update(plugin_engine(n, 24 if args.cpu_dry_run else args.tokens))
    print(json.dumps(result, sort_keys=True))
    sys.exit(0 if result["prf_fixture_identical"] and result["prf_random_identical"] else 1)


if __name__ == "__main__":
    main()

"""Regenerate tests/fixtures/vllm/*.json from vLLM itself (run inside .venv-vllm).

    .venv-vllm/bin/python benchmarks/vllm_fixtures.py [--out tests/fixtures/vllm]

Everything comes from vLLM's own code on CPU (no engine, no Triton): `PhiloxPRF.uniform`,
`derive_watermark_key`, the detectors, the CPU reference of the repeated-context mask, and
`GumbelWatermarker`'s CPU sampling step. tests/test_vllm_native.py checks wm against these files
without importing vLLM. Last line printed: one JSON object (what was written).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from vllm.config.watermarking import derive_watermark_key
from vllm.v1.watermarking import (
    DualKeyGumbelWatermarkDetector,
    GumbelWatermarkDetector,
    GumbelWatermarker,
    PhiloxPRF,
)
from vllm.v1.worker.gpu.sample.watermark import repeated_context_mask

KEYS = [0, 1, 0x0123456789ABCDEF, 2**64 - 1, 15485863]


def prf_cases(rng: np.random.Generator) -> list[dict]:
    keys = KEYS + [derive_watermark_key(k, d) for k in KEYS[2:4] for d in (b"key_a", b"key_b")]
    out = []
    for key in keys:
        for w in (1, 3, 4, 5, 8):
            ctx = rng.integers(-1, 49152, size=(6, w))
            ctx[0, :] = -1
            tok = rng.integers(0, 49152, size=(6, 1))
            tok[1, 0] = 2**31 - 1
            u = PhiloxPRF(key).uniform(torch.from_numpy(ctx), torch.from_numpy(tok)).numpy()[:, 0]
            for c, t, x in zip(ctx.tolist(), tok[:, 0].tolist(), u, strict=True):
                out.append({"key": str(key), "context": c, "token": t, "bits": int(x.view(np.uint32))})
    return out


def sequences(rng: np.random.Generator) -> dict[str, list[int]]:
    loop = [5, 6, 7, 8, 9] * 8  # repeated contexts
    return {
        "random": rng.integers(0, 49152, 120).tolist(),
        "loop": loop,
        "mixed": rng.integers(0, 500, 30).tolist() + loop[:17] + rng.integers(0, 3, 60).tolist(),
        "short": [17, 42],
    }


def detector_cases(rng: np.random.Generator) -> list[dict]:
    out = []
    for name, ids in sequences(rng).items():
        for key in (0x0123456789ABCDEF, 15485863):
            for w in (4, 2):
                for dedup in (True, False):
                    det = GumbelWatermarkDetector(key, w, deduplicate_contexts=dedup)
                    out.append(_case(name, ids, key, w, dedup, "gumbel", None, det))
                    for alpha in (0.1, 0.5, 0.3):
                        det = DualKeyGumbelWatermarkDetector(key, w, deduplicate_contexts=dedup, alpha=alpha)
                        out.append(_case(name, ids, key, w, dedup, "dual_key_gumbel", alpha, det))
    return out


def _case(name, ids, key, w, dedup, algorithm, alpha, det) -> dict:
    r = det.detect(list(ids))
    return {
        "sequence": name,
        "token_ids": list(ids),
        "key": str(key),
        "context_width": w,
        "deduplicate": dedup,
        "algorithm": algorithm,
        "alpha": alpha,
        "score": r.score,
        "p_value": r.p_value,
        "num_scored_tokens": r.num_scored_tokens,
    }


def dedup_cases(rng: np.random.Generator) -> list[dict]:
    """vLLM's generation-side mask: is step m (context from the generated tokens) sampled
    without the watermark, per dedup scope and history bound."""
    prompt = [5, 6, 7, 8, 9, 5, 6]
    gen = [7, 8, 9, 5, 6, 7, 8, 1, 2, 3, 1, 2, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9]
    out = []
    for w in (2, 4):
        for scope in ("single_turn", "all"):
            for history in (None, 3, 6, 8192):
                mask = []
                for m in range(len(gen)):
                    seq = torch.tensor([prompt + gen[:m] + [0] * (len(gen) - m)], dtype=torch.int64)
                    done = gen[:m]
                    ctx = ([-1] * w + done)[-w:]
                    r = repeated_context_mask(
                        seq,
                        torch.tensor([0]),
                        torch.tensor([len(prompt)]),
                        torch.tensor([len(prompt) + m]),
                        torch.tensor([ctx], dtype=torch.int64),
                        history,
                        include_prompt=scope == "all",
                        skip_partial_context=scope == "all",
                    )
                    mask.append(bool(r[0]))
                out.append(
                    {
                        "prompt": prompt,
                        "generated": gen,
                        "context_width": w,
                        "scope": scope,
                        "max_history": history,
                        "skipped": mask,
                    }
                )
    return out


def sampler_cases(rng: np.random.Generator) -> list[dict]:
    """GumbelWatermarker's CPU choice (argmax(logits - log(-log u))) on given float32 logits."""
    out = []
    for key in (0x0123456789ABCDEF, derive_watermark_key(15485863, b"key_b")):
        logits = (rng.standard_normal((4, 1000)) * 3).astype(np.float32)
        logits[3, 500:] = -np.inf  # a top-k style mask
        ctx = rng.integers(-1, 1000, size=(4, 4))
        ctx[0] = -1
        wm = GumbelWatermarker(key, 4)
        tokens = wm._sample_watermarked(torch.from_numpy(logits), torch.from_numpy(ctx)).token_ids
        out.append(
            {
                "key": str(key),
                "contexts": ctx.tolist(),
                "logits": [[float(x) if np.isfinite(x) else None for x in row] for row in logits],
                "tokens": tokens.tolist(),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/vllm")
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(27)
    import vllm

    derived = [
        {"key": str(k), "domain": d.decode(), "derived": str(derive_watermark_key(k, d))}
        for k in KEYS
        for d in (b"key_a", b"key_b")
    ]
    files = {
        "prf.json": {
            "vllm": vllm.__version__,
            "prf": "philox4x32-10-v1",
            "cases": prf_cases(rng),
            "derived": derived,
        },
        "detector.json": {"vllm": vllm.__version__, "cases": detector_cases(rng)},
        "dedup.json": {"vllm": vllm.__version__, "cases": dedup_cases(rng)},
        "sampler.json": {"vllm": vllm.__version__, "cases": sampler_cases(rng)},
    }
    for name, obj in files.items():
        (out / name).write_text(json.dumps(obj, separators=(",", ":")) + "\n")
    print(json.dumps({"written": sorted(files), "out": str(out), "vllm": vllm.__version__}))


if __name__ == "__main__":
    main()

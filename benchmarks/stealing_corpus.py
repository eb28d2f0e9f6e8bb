"""Real-model corpora for the stealing benchmark, generated once and cached (resumable).

Each corpus is a JSONL file of `wm generate`-style records ({"prompt", "text", "token_ids"}) under
`cache_dir()/bench-stealing/`. Natural texts are unwatermarked outputs of the same model on the
same prompts, as in Zhang et al. (2024). Generation is the slow part on CPU, so it runs in rounds
and every round is appended at once: an interrupted run resumes where it stopped. The last
`HOLDOUT` prompts of data/prompts.jsonl are never used here: spoofing and scrubbing are measured on
them (earlier caches cycled all 230 prompts; delete them to regenerate).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from wm_toolkit.watermark.config import config_from_dict
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.models import cache_dir
from wm_toolkit.watermark.text.textio import read_prompts, text_lines

ROOT = Path(__file__).resolve().parents[1]
BENCH_KEY = Key.from_seed("stealing-benchmark")
# name -> scheme config (None = natural, unwatermarked)
CORPORA: dict[str, dict | None] = {
    "natural": None,
    "unigram-g0.25-d2": {"scheme": "unigram", "gamma": 0.25, "delta": 2.0, "context_width": 0},
    "unigram-g0.5-d4": {"scheme": "unigram", "gamma": 0.5, "delta": 4.0, "context_width": 0},
    "kgw-h1-g0.25-d2": {"scheme": "kgw", "gamma": 0.25, "delta": 2.0, "context_width": 1},
    "selfhash-h4-g0.25-d2": {
        "scheme": "kgw",
        "gamma": 0.25,
        "delta": 2.0,
        "context_width": 4,
        "seeding": "selfhash",
    },
}
HELDOUT_SEED = 5000
HOLDOUT = 50  # the last prompts of data/prompts.jsonl: never in a corpus, kept for spoofing/scrubbing
MAX_NEW_TOKENS = 200
TEMPERATURE = 0.7  # the paper's sampling temperature (top_k = 0)


def corpus_dir() -> Path:
    return cache_dir() / "bench-stealing"


def corpus_path(name: str) -> Path:
    return corpus_dir() / f"{name}.jsonl"


def load_corpus(name: str, limit: int | None = None) -> list[dict]:
    p = corpus_path(name)
    if not p.exists():
        return []
    rows = [json.loads(line) for line in text_lines(p.read_text(encoding="utf-8")) if line.strip()]
    return rows[:limit] if limit else rows


def prompts() -> list[str]:
    """The prompts corpora are generated from (all but the held-out ones)."""
    return read_prompts(str(ROOT / "data" / "prompts.jsonl"))[:-HOLDOUT]


def heldout_prompts() -> list[str]:
    """Prompts no corpus text answers: the attacker spoofs and scrubs on these."""
    return read_prompts(str(ROOT / "data" / "prompts.jsonl"))[-HOLDOUT:]


def scheme_for(name: str, vocab_size: int):
    from wm_toolkit.watermark.schemes import build_scheme

    cfg = CORPORA[name]
    if cfg is None:
        return None
    return build_scheme(config_from_dict({**cfg, "vocab_size": vocab_size}), BENCH_KEY)


def _generate_into(path: Path, name: str, model, tok, batch: list[str], batch_size: int, seed: int) -> list:
    """Generate `batch` with corpus `name`'s scheme and append the records to `path` at once."""
    from wm_toolkit.watermark.modeling.generation import generate

    gens = generate(
        model,
        tok,
        batch,
        scheme=scheme_for(name, len(tok)),
        max_new_tokens=MAX_NEW_TOKENS,
        min_new_tokens=MAX_NEW_TOKENS,
        batch_size=batch_size,
        temperature=TEMPERATURE,
        seed=seed,
    )
    with path.open("a", encoding="utf-8") as f:
        for g in gens:
            f.write(json.dumps({"prompt": g.prompt, "text": g.text, "token_ids": list(g.token_ids)}) + "\n")
    return gens


def generate_corpora(
    sizes: dict[str, int], round_size: int = 50, batch_size: int = 50, bf16: bool = False
) -> None:
    """Top every corpus up to its size, round by round (all corpora advance together).

    `bf16`: run the model in bfloat16 (~1.7x faster on CPUs with avx512_bf16). The watermark is
    applied to the logits either way; the texts are the same model's output at lower precision."""
    import torch

    from wm_toolkit.watermark.modeling.models import load_model

    model, tok = load_model()
    if bf16:
        model = model.to(torch.bfloat16)
    all_prompts = prompts()
    corpus_dir().mkdir(parents=True, exist_ok=True)
    while True:
        todo = [(n, s) for n, s in sizes.items() if len(load_corpus(n)) < s]
        if not todo:
            return
        for name, size in todo:
            have = len(load_corpus(name))
            n = min(round_size, size - have)
            batch = [all_prompts[(have + i) % len(all_prompts)] for i in range(n)]
            t0 = time.time()
            # same seed for a prompt's natural and watermarked text
            gens = _generate_into(corpus_path(name), name, model, tok, batch, batch_size, seed=1000 + have)
            toks = sum(g.num_tokens for g in gens)
            print(f"{name}: {have + n}/{size} ({toks / (time.time() - t0):.0f} tokens/s)", flush=True)


def heldout(name: str, n: int, model=None, tok=None, batch_size: int = 16) -> list[dict]:
    """Generations for the first `n` held-out prompts, plain (`name` = "natural") or watermarked
    by corpus `name`'s scheme; cached in `heldout-NAME.jsonl` and topped up on demand. The same
    prompt gets the same seed in every file, so plain, watermarked and spoofed texts share it."""
    path = corpus_dir() / f"heldout-{name}.jsonl"
    have = load_corpus(f"heldout-{name}")
    if len(have) >= n:
        return have[:n]
    from wm_toolkit.watermark.modeling.models import load_model

    if model is None:
        model, tok = load_model()
    todo = heldout_prompts()[len(have) : n]
    corpus_dir().mkdir(parents=True, exist_ok=True)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        _generate_into(path, name, model, tok, batch, batch_size, seed=HELDOUT_SEED + len(have) + start)
        print(f"heldout-{name}: {len(have) + start + len(batch)}/{n}", flush=True)
    return load_corpus(f"heldout-{name}")[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in CORPORA:
        ap.add_argument(f"--{name}", type=int, default=0, metavar="N", help=f"texts in corpus {name}")
    ap.add_argument("--round-size", type=int, default=50, help="texts per corpus and round (saved at once)")
    ap.add_argument("--bf16", action="store_true", help="generate with a bfloat16 copy of the model")
    ap.add_argument(
        "--heldout", type=int, default=0, metavar="N", help="also N held-out generations per named corpus"
    )
    args = ap.parse_args()
    sizes = {name: getattr(args, name.replace("-", "_"), 0) for name in CORPORA}
    generate_corpora({k: v for k, v in sizes.items() if v}, args.round_size, args.round_size, args.bf16)
    for name in [k for k, v in sizes.items() if v and args.heldout]:
        heldout(name, args.heldout, batch_size=args.round_size)


if __name__ == "__main__":
    main()

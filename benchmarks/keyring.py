"""Keyring detection (issue 30): the done-when numbers, measured without a model.

Parts (`--part`, each prints one JSON line; `--out FILE` also writes it):
- `ring`: a 50-entry ring (kgw, unigram, gumbel, synthid, exp; the embedded SmolLM2 tokenizer
  and the embedded all-MiniLM-L6-v2 WordPiece tokenizer, 25 entries each). Watermarked texts:
  `--per-entry` token streams of `--length` tokens per entry, drawn through that entry's own
  logits processor from random logits (N(0, scale^2) per vocabulary entry per step, a stand-in for
  a high-entropy model); the other tokenizer's ids for the same "text" are uniform random ids.
  Each text goes through `RingDetector.detect_ids` (ids, not a decode/re-encode round trip): the
  family-wise p-value (weighted Bonferroni), whether it is < 1e-3 and names the generating entry.
  The same streams are then watched token by token: the anytime-valid test's tokens-to-detect
  (the generating entry alone at alpha = 1e-3, and the whole ring with the level split over 50
  entries) beside the fixed-length test's power at prefix lengths.
- `null`: `--null` texts of uniform random ids (per tokenizer) through the whole ring: the share
  with family p <= `--null-alpha` (relaxed, so an excess would show), with its binomial range.
- `stream-null`: 10,000 simulated null streams per kind (green-list coin flips, Exp(1) scores)
  watched at every token up to `--stream-length`, plus `--real-streams` random-id texts through
  each scheme's real span evidence: the share that ever reaches 1/alpha.
- `throughput`: canonicalise + tokenise + detect `--corpus` texts of `--length` tokens (the
  repository's docs and code) on one core: each MIX scheme's single entry (alone in a ring, and
  through the plain `scheme.detect` path: the faster is the baseline), then 100-entry rings (the
  MIX, and kgw only) batched and one by one; ratios on CPU time, load averages beside them.
  Run with OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false.

    python benchmarks/keyring.py --part ring --out /tmp/ring.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from _common import ROOT, emit

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.modeling.models import similarity_model_path
from wm_toolkit.watermark.runtime.keyring import Entry, Keyring
from wm_toolkit.watermark.runtime.keyring_detect import RingDetector
from wm_toolkit.watermark.statistics.sequential import SequentialTest, feed, sequential_test_for

SMOL = "smollm2-135m"
# (scheme config, entries) per tokenizer. synthid with 10 layers keeps the null run affordable on two
# cores (30 layers: 0.35 s per text). exp is left out of the ring: at a family level of 1e-3 over 50
# entries its permutation test needs 50,000+ null keys per text (12 s per watermarked text here) and
# its processor draws a 200-token stream in over a minute; the streaming test covers it below.
MIX = [
    ({"scheme": "kgw"}, 5),
    ({"scheme": "kgw", "seeding": "selfhash"}, 4),
    ({"scheme": "unigram"}, 3),
    ({"scheme": "gumbel"}, 8),
    ({"scheme": "synthid", "num_layers": 10}, 5),
]
STREAM_ONLY = [({"scheme": "exp"}, 0)]  # exp (256-entry key): streaming null only
PREFIXES = (16, 24, 32, 48, 64, 96, 128, 160, 200)


def make_ring(size: int = 50, schemes=None) -> Keyring:
    """`size` entries, half on each tokenizer, schemes in MIX proportions, distinct keys."""
    mix = schemes or round_robin()
    toks = [SMOL, similarity_model_path()]
    entries = []
    for i in range(size):
        cfg = dict(mix[(i // 2) % len(mix)])
        tok = toks[i % 2]
        key = Key.from_seed(f"keyring benchmark {i}")
        entries.append(Entry(f"e{i:02d}-{cfg['scheme']}", {"inline": key.secret.hex()}, cfg, tok))
    return Keyring(entries)


def round_robin() -> list[dict]:
    """MIX's configs in its proportions, interleaved (any prefix of the ring has every scheme)."""
    left = {i: k for i, (_, k) in enumerate(MIX)}
    out = []
    while any(left.values()):
        for i in left:
            if left[i]:
                out.append(MIX[i][0])
                left[i] -= 1
    return out


def watermarked(scheme, n: int, batch: int, seed: int, scale: float) -> np.ndarray:
    """`batch` streams of n ids drawn through the scheme's processor from random logits."""
    gen = torch.Generator().manual_seed(seed)
    proc = scheme.processor()
    v = scheme.config.vocab_size
    ids = torch.randint(0, v, (batch, 8), generator=gen)
    for _ in range(n):
        out = proc(ids, torch.randn(batch, v, generator=gen) * scale)
        probs = torch.softmax(out.float(), -1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)], 1)
    return ids[:, 8:].numpy()


def tokens_to_detect(scheme, ids: np.ndarray, alpha: float) -> int | None:
    ev = scheme.span_evidence(ids)
    test = sequential_test_for(ev, alpha)
    feed(test, ev, 0, ev.n)
    return test.stopped_at


def part_ring(args) -> dict:
    ring = make_ring(args.entries)
    det = RingDetector(ring, alpha=1e-3)
    vocab = {name: len(tok) for name, tok in det.tokenizers.items()}
    rng = np.random.default_rng(7)
    rows, t0 = [], time.perf_counter()
    shard, shards = (int(x) for x in args.shard.split("/"))
    for i, m in enumerate(det.members):
        if i % shards != shard:
            continue
        streams = watermarked(m.scheme, args.length, args.per_entry, 1000 + i, args.scale)
        for s in streams:
            ids = {
                name: (s if name == m.tokenizer else rng.integers(0, v, args.length))
                for name, v in vocab.items()
            }
            res = det.detect_ids(ids)
            fixed = {n: m.scheme.detect(s[:n], alpha=1e-3).p_value <= 1e-3 for n in PREFIXES}
            rows.append({
                "entry": m.entry.name, "scheme": m.scheme.name, "family_p": res.family_p_value,
                "named": res.match == m.entry.name, "fixed": fixed,
                "seq_single": tokens_to_detect(m.scheme, s, 1e-3),
                "seq_ring": tokens_to_detect(m.scheme, s, 1e-3 / len(det.members)),
            })  # fmt: skip
        print(f"{i + 1}/{len(det.members)} entries, {time.perf_counter() - t0:.0f} s", flush=True)
    return {"part": "ring-rows", "rows": rows} if shards > 1 else summarise_ring(rows, args)


def part_merge(args) -> dict:
    """Summarise the rows of `--part ring --shard i/n` runs (`--merge FILE ...`)."""
    from pathlib import Path

    rows = [r for path in args.merge for r in json.loads(Path(path).read_text(encoding="utf-8"))["rows"]]
    for r in rows:
        r["fixed"] = {int(k): v for k, v in r["fixed"].items()}
    return summarise_ring(rows, args)


def summarise_ring(rows: list[dict], args) -> dict:
    found = [r["family_p"] < 1e-3 and r["named"] for r in rows]
    by_scheme: dict[str, list[bool]] = {}
    for r, ok in zip(rows, found, strict=True):
        by_scheme.setdefault(r["scheme"], []).append(ok)

    def seq(key: str) -> dict:
        t = [r[key] for r in rows if r[key] is not None]
        return {f"detected_by_{args.length}": len(t) / len(rows), "mean_tokens": float(np.mean(t)) if t else None,
                "median_tokens": float(np.median(t)) if t else None}  # fmt: skip

    return {
        "part": "ring", "entries": args.entries, "texts": len(rows), "length": args.length,
        "logit_scale": args.scale,
        "found_and_named": float(np.mean(found)),
        "found": float(np.mean([r["family_p"] < 1e-3 for r in rows])),
        "named_when_found": float(np.mean([r["named"] for r in rows if r["family_p"] < 1e-3] or [0])),
        "by_scheme": {k: float(np.mean(v)) for k, v in by_scheme.items()},
        "fixed_power_at_1e-3": {n: float(np.mean([r["fixed"][n] for r in rows])) for n in PREFIXES},
        "sequential_single_key_1e-3": seq("seq_single"),
        f"sequential_ring_level_1e-3/{args.entries}": seq("seq_ring"),
        "misses": [r["entry"] for r, ok in zip(rows, found, strict=True) if not ok],
    }  # fmt: skip


def part_null(args) -> dict:
    det = RingDetector(make_ring(args.entries), alpha=args.null_alpha)
    vocab = {name: len(tok) for name, tok in det.tokenizers.items()}
    rng = np.random.default_rng(11)
    fam, t0 = [], time.perf_counter()
    for i in range(args.null):
        ids = {name: rng.integers(0, v, args.length) for name, v in vocab.items()}
        fam.append(det.detect_ids(ids).family_p_value)
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{args.null} null texts, {time.perf_counter() - t0:.0f} s", flush=True)
    fam = np.asarray(fam)
    a, n = args.null_alpha, len(fam)
    return {
        "part": "null", "entries": args.entries, "texts": n, "length": args.length, "alpha": a,
        "flagged": int((fam <= a).sum()), "rate": float(np.mean(fam <= a)),
        "binomial_3sd_upper": a + 3 * math.sqrt(a * (1 - a) / n),
        "rate_at_alpha/5": float(np.mean(fam <= a / 5)), "seconds_per_text": (time.perf_counter() - t0) / n,
    }  # fmt: skip


def part_stream_null(args) -> dict:
    rng = np.random.default_rng(3)
    out: dict = {"part": "stream-null", "stream_length": args.stream_length}
    for alpha in (0.05, 0.01):
        for kind in ("count", "gamma"):
            hits = 0
            for _ in range(args.streams):
                t = SequentialTest(kind, alpha, prob=0.25)
                if kind == "count":
                    t.update_counts(np.ones(args.stream_length), rng.random(args.stream_length) < 0.25)
                else:
                    t.update_scores(rng.exponential(size=args.stream_length))
                hits += t.stopped_at is not None
            out[f"{kind}_alpha_{alpha}"] = {"streams": args.streams, "ever_rejected": hits / args.streams}
    out["real_schemes_alpha_0.05"] = real_null_streams(args)
    return out


def real_null_streams(args) -> dict:
    """Random-id texts through each scheme's real evidence, watched at every token."""
    from wm_toolkit.watermark.schemes import build_scheme

    rng = np.random.default_rng(5)
    res = {}
    for cfg, _ in MIX + STREAM_ONLY:
        hits = 0
        for i in range(args.real_streams):
            s = build_scheme({**cfg, "vocab_size": 49152}, Key.from_seed(f"null stream {i}"))
            hits += tokens_to_detect(s, rng.integers(0, 49152, 400), 0.05) is not None
        res[json.dumps(cfg)] = {
            "streams": args.real_streams,
            "length": 400,
            "ever_rejected": hits / args.real_streams,
        }
    return res


def throughput_corpus(tok, texts: int, length: int) -> list[str]:
    """`texts` pieces of about `length` tokens of the repository's own prose and code (docs, the
    README, watermark/'s modules): unwatermarked natural text, cut on token boundaries."""
    from wm_toolkit.watermark.text.encoding import encode_array

    files = [
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "README.md",
        *sorted((ROOT / "watermark").rglob("*.py")),
    ]
    ids = encode_array(tok, "\n".join(p.read_text(encoding="utf-8") for p in files))
    if len(ids) < texts * length:
        raise SystemExit(f"the corpus has {len(ids)} tokens, fewer than {texts} x {length}")
    return [tok.decode(ids[i * length : (i + 1) * length]) for i in range(texts)]


def time_ring(det: RingDetector, corpus: list[str], repeats: int) -> dict:
    """Best of `repeats` runs of canonicalise + tokenise + detect over the corpus (wall and CPU)."""
    det.detect_texts(corpus[:8])  # warm up: numba kernels, tokenizer, seed tables of the first texts
    walls, cpus, rows = [], [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        rows = det.detect_texts(corpus)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    ids = det.encode(corpus)
    tokens = sum(len(x) for x in next(iter(ids.values())))
    errors = sum(isinstance(r, Exception) for r, _ in rows)
    return {"entries": len(det.members), "tokens": tokens, "errors": errors,
            "seconds": min(walls), "cpu_seconds": min(cpus),
            "tokens_per_s": tokens / min(walls), "tokens_per_cpu_s": tokens / min(cpus)}  # fmt: skip


def time_plain(scheme, tok, corpus: list[str], repeats: int) -> dict:
    """The single-key path of `wm detect`: canonicalise + tokenise + scheme.detect, text by text."""
    from wm_toolkit.watermark.text.encoding import encode_texts

    for ids in encode_texts(tok, corpus[:8]):
        scheme.detect(ids, alpha=1e-3)
    walls, cpus, tokens = [], [], 0
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        tokens = 0
        for ids in encode_texts(tok, corpus):
            scheme.detect(ids, alpha=1e-3)
            tokens += len(ids)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"tokens": tokens, "seconds": min(walls), "cpu_seconds": min(cpus),
            "tokens_per_s": tokens / min(walls), "tokens_per_cpu_s": tokens / min(cpus)}  # fmt: skip


def one_tokenizer_ring(size: int, schemes) -> Keyring:
    ring = make_ring(size, schemes)
    ring.entries = [Entry(e.name, e.key_ref, e.config, SMOL) for e in ring.entries]
    return ring


def part_throughput(args) -> dict:
    """Tokens/s on one core of canonicalise + tokenise + detect over a corpus: each scheme's single
    entry, then a 100-entry ring of the MIX (as the 50-entry ring) and one of kgw only, batched
    (families scored together) and one by one; every ring on the SmolLM2 tokenizer."""
    import os

    from wm_toolkit.watermark.modeling.models import load_tokenizer
    from wm_toolkit.watermark.schemes import build_scheme

    tok = load_tokenizer(SMOL)
    corpus = throughput_corpus(tok, args.corpus, args.length)
    out: dict = {"part": "throughput", "texts": len(corpus), "tokens_per_text": args.length,
                 "tokenizer": SMOL, "load_average_start": os.getloadavg()}  # fmt: skip
    single: dict[str, float] = {}  # config -> seconds per corpus of one entry alone (the faster path)
    for cfg, _ in MIX:
        name = json.dumps(cfg)
        ring_1 = time_ring(RingDetector(one_tokenizer_ring(1, [cfg]), alpha=1e-3), corpus, args.repeats)
        scheme = build_scheme({**cfg, "vocab_size": len(tok), "tokenizer": SMOL}, Key.from_seed("single"))
        plain = time_plain(scheme, tok, corpus, args.repeats)
        out[f"single {name}"] = {"ring_of_1": ring_1, "plain_detect": plain}
        single[name] = min(ring_1["cpu_seconds"], plain["cpu_seconds"])
        print(
            name,
            f"{ring_1['tokens_per_cpu_s']:.0f} / {plain['tokens_per_cpu_s']:.0f} tokens/cpu-s",
            flush=True,
        )
    n = args.throughput_entries
    for label, schemes in (("mix", round_robin()), ("kgw", [{"scheme": "kgw"}])):
        for batched in (True, False):
            det = RingDetector(one_tokenizer_ring(n, schemes), alpha=1e-3, batched=batched)
            res = time_ring(det, corpus, args.repeats if batched else 1)
            out[f"{label}_{n}_{'batched' if batched else 'one_by_one'}"] = res
            print(label, n, batched, f"{res['tokens_per_cpu_s']:.0f} tokens/cpu-s", flush=True)
    kgw = single[json.dumps({"scheme": "kgw"})]
    mix_cfgs = [json.dumps(c) for c in round_robin()]
    typical = sum(single[c] for c in mix_cfgs) / len(mix_cfgs)  # one entry drawn from the mix, alone
    for label in ("mix", "kgw"):
        ring_s = out[f"{label}_{n}_batched"]["cpu_seconds"]
        out[f"{label}_{n}_ratio_vs_single_kgw"] = kgw / ring_s
        out[f"{label}_{n}_batching_speedup"] = out[f"{label}_{n}_one_by_one"]["cpu_seconds"] / ring_s
    out[f"mix_{n}_ratio_vs_single_mix_entry"] = typical / out[f"mix_{n}_batched"]["cpu_seconds"]
    out["target_ratio"] = 0.2
    out["load_average_end"] = os.getloadavg()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["ring", "merge", "null", "stream-null", "throughput"], required=True)
    ap.add_argument("--shard", default="0/1", help="ring: entries i, i + n, ... only (run n shards at once)")
    ap.add_argument("--merge", nargs="*", default=[], help="merge: the shards' --out files")
    ap.add_argument("--entries", type=int, default=50)
    ap.add_argument("--per-entry", type=int, default=4)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--scale", type=float, default=3.0)
    ap.add_argument("--null", type=int, default=1000)
    ap.add_argument("--null-alpha", type=float, default=0.05)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--stream-length", type=int, default=1000)
    ap.add_argument("--real-streams", type=int, default=400)
    ap.add_argument("--corpus", type=int, default=200)
    ap.add_argument("--throughput-entries", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2, help="throughput: best of this many runs")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    part = {
        "ring": part_ring,
        "merge": part_merge,
        "null": part_null,
        "stream-null": part_stream_null,
        "throughput": part_throughput,
    }
    result = part[args.part](args)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    emit(result)


if __name__ == "__main__":
    main()

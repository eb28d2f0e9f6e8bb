"""Corpus detection: a ~300 MB JSONL corpus of short texts through `wm detect --workers 2 --json`
(peak RSS of the whole process tree, one output line per record, in order), and throughput per
core against transformers' path (tokenizer + WatermarkDetector) on a subset, in the same run.

    python benchmarks/corpus.py                 # 300 MB corpus (written to --workdir, not kept in git)
    python benchmarks/corpus.py --mb 20         # smaller

The corpus is synthesised: short texts (about 1.5 KB, 250-400 tokens) of English-like sentences
built from the words of data/prompts.jsonl and this README. Texts/s include everything the CLI
does: reading, canonicalisation, tokenisation, the test and the JSON row. The last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _common import ROOT, emit


def words() -> list[str]:
    text = (ROOT / "README.md").read_text() + (ROOT / "data" / "prompts.jsonl").read_text()
    return sorted(set(re.findall(r"[A-Za-z][a-z]{1,12}", text)))


def write_corpus(path: Path, mb: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    vocab = words()
    n = 0
    target = int(mb * 1024 * 1024)
    with open(path, "w") as f:
        while f.tell() < target:
            sentences = []
            for _ in range(rng.randint(12, 20)):
                s = " ".join(rng.choice(vocab) for _ in range(rng.randint(8, 16)))
                sentences.append(s[0].upper() + s[1:] + rng.choice(".,;:!?")[0] if s else ".")
            f.write(json.dumps({"id": n, "text": " ".join(sentences)}) + "\n")
            n += 1
    return n


def run_tree(cmd: list[str], env: dict, out_path: Path) -> tuple[float, float, float]:
    """(seconds, peak of the summed RSS and of the summed PSS, in MB, of the process and all its
    children, sampled every 0.2 s). RSS counts the shared pages (torch's libraries) once per
    process; PSS splits them between the processes that share them, so it sums to what the tree
    really holds."""
    peak = [0.0, 0.0]
    with open(out_path, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE)
        p = psutil.Process(proc.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                try:
                    total = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                    peak[0] = max(peak[0], total / 2**20)
                except psutil.Error:
                    pass
                time.sleep(0.05)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, err = proc.communicate()
        done.set()
        th.join()
        dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"wm detect failed ({proc.returncode}): {err.decode()[-500:]}")
    return dt, peak[0], peak[1]


def check_output(out_path: Path, corpus: Path, n: int) -> None:
    """One row per record, in input order (streamed, not loaded)."""
    with open(out_path) as rows:
        for i, line in enumerate(rows, 1):
            src = json.loads(line)["source"]
            if src != f"{corpus}:{i}":
                sys.exit(f"row {i} is {src}: out of order")
    if i != n:
        sys.exit(f"{i} rows for {n} records")


def hf_path(texts: list[str]) -> tuple[float, int]:
    """transformers' path on the same texts: tokenizer + WatermarkDetector (its KGW), one core."""
    from transformers import AutoConfig, WatermarkDetector, WatermarkingConfig

    from wm_toolkit.watermark.modeling.models import load_tokenizer, resolve_name

    tok = load_tokenizer()
    try:
        cfg = AutoConfig.from_pretrained(resolve_name("smollm2-135m"))
    except Exception:  # noqa: BLE001
        from transformers import LlamaConfig

        cfg = LlamaConfig(vocab_size=len(tok))
    det = WatermarkDetector(cfg, "cpu", WatermarkingConfig(), ignore_repeated_ngrams=True)
    t0 = time.perf_counter()
    n_tok = 0
    for t in texts:
        ids = tok(t, add_special_tokens=False, return_tensors="pt")["input_ids"]
        n_tok += ids.shape[1]
        det(ids)
    return time.perf_counter() - t0, n_tok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=300)
    ap.add_argument("--subset", type=int, default=4000, help="records for the throughput comparison")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="wm-corpus-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus, small = work / "corpus.jsonl", work / "subset.jsonl"
    n = write_corpus(corpus, args.mb)
    with open(corpus) as f, open(small, "w") as g:
        sub = [next(f) for _ in range(min(args.subset, n))]
        g.writelines(sub)
    texts = [json.loads(x)["text"] for x in sub]
    key = work / "key"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    subprocess.run(
        [sys.executable, "-m", "wm_toolkit.cli.main", "keygen", "-o", str(key)],
        env=env,
        check=True,
        capture_output=True,
    )
    wm = [sys.executable, "-m", "wm_toolkit.cli.main", "detect", "--key", str(key), "--json"]
    result: dict = {
        "corpus_mb": corpus.stat().st_size / 2**20,
        "records": n,
        "subset": len(sub),
        "loadavg_before": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }

    # throughput on the subset: 1 and 2 workers (end to end, process start included) and transformers
    one = work / "one.jsonl"
    one.write_text(sub[0])
    s1 = run_tree([*wm, "--workers", "1", str(one)], env, work / "s1.jsonl")[0]  # start-up, subtracted
    s2 = run_tree([*wm, "--workers", "2", str(one)], env, work / "s2.jsonl")[0]
    t1 = run_tree([*wm, "--workers", "1", str(small)], env, work / "w1.jsonl")[0] - s1
    t2 = run_tree([*wm, "--workers", "2", str(small)], env, work / "w2.jsonl")[0] - s2
    check_output(work / "w1.jsonl", small, len(sub))
    rows1 = (work / "w1.jsonl").read_text().splitlines()
    if rows1 != (work / "w2.jsonl").read_text().splitlines():
        sys.exit("1 and 2 workers gave different rows")
    n_tok = sum(json.loads(r).get("num_tokens_scored", 0) for r in rows1)
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from wm_toolkit.watermark.keying.keys import load_key_file
    from wm_toolkit.watermark.modeling.models import load_tokenizer
    from wm_toolkit.watermark.runtime.corpus import detect_texts

    tok = load_tokenizer()
    k = load_key_file(key)
    list(detect_texts(texts[:50], k, {"scheme": "kgw"}, tokenizer=tok))  # warm-up
    t0 = time.perf_counter()
    dets = list(detect_texts(texts, k, {"scheme": "kgw"}, tokenizer=tok, alpha=1e-3))
    t_lib = time.perf_counter() - t0
    t_hf, hf_tok = hf_path(texts)
    result.update(
        subset_tokens=hf_tok,
        cli_w1_texts_per_s=len(sub) / t1,
        cli_w2_texts_per_s=len(sub) / t2,
        speedup_1_to_2_workers=t1 / t2,
        lib_texts_per_s_per_core=len(sub) / t_lib,
        lib_tokens_per_s_per_core=hf_tok / t_lib,
        hf_texts_per_s_per_core=len(sub) / t_hf,
        hf_tokens_per_s_per_core=hf_tok / t_hf,
        lib_vs_hf_per_core=t_hf / t_lib,
        scored_tokens=n_tok,
        cli_startup_s_w1=s1,
        cli_startup_s_w2=s2,
        lib_rows=len(dets),
    )
    print(
        f"subset {len(sub)} texts, {hf_tok} tokens: CLI 1 worker {len(sub) / t1:.0f} texts/s, 2 workers "
        f"{len(sub) / t2:.0f} texts/s (x{t1 / t2:.2f}); library per core {len(sub) / t_lib:.0f} texts/s "
        f"{hf_tok / t_lib:.0f} tokens/s; transformers {len(sub) / t_hf:.0f} texts/s {hf_tok / t_hf:.0f} tokens/s"
    )

    # the whole corpus through 2 workers: peak RSS of the tree, rows in order
    t_all, peak, peak_pss = run_tree([*wm, "--workers", "2", str(corpus)], env, work / "all.jsonl")
    check_output(work / "all.jsonl", corpus, n)
    result.update(
        full_seconds=t_all,
        full_texts_per_s=n / t_all,
        full_mb_per_s=result["corpus_mb"] / t_all,
        peak_rss_mb_tree=peak,
        peak_pss_mb_tree=peak_pss,
        rows_in_order=True,
        loadavg_after=os.getloadavg()[0],
    )
    print(
        f"{result['corpus_mb']:.0f} MB, {n} records with 2 workers: {t_all:.0f} s ({n / t_all:.0f} texts/s), "
        f"peak RSS of the process tree {peak:.0f} MB (PSS {peak_pss:.0f} MB), {n} rows in input order"
    )
    for p in (corpus, small, one, *(work / f"{x}.jsonl" for x in ("all", "w1", "w2", "s1", "s2"))):
        p.unlink(missing_ok=True)
    emit(result)


if __name__ == "__main__":
    main()

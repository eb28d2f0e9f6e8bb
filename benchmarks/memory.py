"""Peak memory of `wm detect` on long plain texts, measured in a fresh process each.

Cases (each a subprocess running the real CLI, peak RSS from getrusage of the child):
  * baseline: `wm detect` on a 200-token text (imports, tokenizer, key: the fixed cost)
  * 1M tokens: a plain text of about 1,000,000 tokens (the issue's target: below 500 MB)
  * 50 MB line (with --big): one 50 MB line of words, under the 64 MB input cap
and, in this process, whether the chunked token ids equal one whole-text tokenizer call on the
1M-token text (and how long each takes). The last line printed is one JSON object.

    python benchmarks/memory.py [--tokens 1000000] [--big]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit

WORDS = (ROOT / "README.md").read_text(encoding="utf-8").split() + (
    ROOT / "docs" / "CONTRIBUTING.md"
).read_text(encoding="utf-8").split()


def make_text(chars: int, seed: int = 0, one_line: bool = False) -> str:
    rng = random.Random(seed)
    out, n = [], 0
    while n < chars:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
        if not one_line and rng.random() < 0.02:
            out.append("\n")
    return " ".join(out)[:chars] + "\n"


def run_detect(path: Path, key: Path) -> dict:
    """Run `wm detect --json` in a child process; its wall time and its own peak RSS (wait4)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WM_KEY_FILE": str(key)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "wm_toolkit.cli.main", "detect", "--json", str(path)],
            stdout=out,
            stderr=err,
            env=env,
            cwd=ROOT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"wm detect failed on {path}: {stderr.strip()[-500:]}")
    row = json.loads(stdout.strip().splitlines()[-1])
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "tokens_scored": row.get("num_tokens_scored"),
        "bytes": path.stat().st_size,
    }


def check_exact(text: str) -> dict:
    from wm_toolkit.watermark.modeling.models import load_tokenizer
    from wm_toolkit.watermark.text import encoding

    tok = load_tokenizer()
    t0 = time.perf_counter()
    chunked = encoding.encode_array(tok, text)
    t_chunked = time.perf_counter() - t0
    stats = encoding.last_stats
    t0 = time.perf_counter()
    whole = tok(text, add_special_tokens=False)["input_ids"]
    t_whole = time.perf_counter() - t0
    return {
        "tokens": len(whole),
        "chunks": stats.chunks,
        "forced_cuts": stats.forced_cuts,
        "identical_to_whole_text": chunked.tolist() == whole,
        "chunked_s": round(t_chunked, 2),
        "whole_s": round(t_whole, 2),
        "chunked_over_whole_time": round(t_chunked / t_whole, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1_000_000, help="Tokens in the long text (about).")
    ap.add_argument("--big", action="store_true", help="Also a 50 MB one-line text (minutes, GBs).")
    args = ap.parse_args()
    from wm_toolkit.watermark.keying.keys import write_key_file

    result: dict = {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        key = tmp / "key"
        write_key_file(key)
        (tmp / "short.txt").write_text(make_text(1000, seed=1), encoding="utf-8")
        long_text = make_text(int(args.tokens * 3.4), seed=2)  # about 3.3 characters a token here
        (tmp / "long.txt").write_text(long_text, encoding="utf-8")
        result["baseline"] = run_detect(tmp / "short.txt", key)
        result["long"] = run_detect(tmp / "long.txt", key)
        result["long"]["target_mb"] = 500
        result["long"]["below_target"] = result["long"]["peak_rss_mb"] < 500
        result["long_over_baseline_rss"] = round(
            result["long"]["peak_rss_mb"] / result["baseline"]["peak_rss_mb"], 3
        )
        if args.big:
            (tmp / "big.txt").write_text(make_text(50 * 1024 * 1024, seed=3, one_line=True), encoding="utf-8")
            result["one_line_50mb"] = run_detect(tmp / "big.txt", key)
        result["exactness_long"] = check_exact(long_text)
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    emit(result)


if __name__ == "__main__":
    main()

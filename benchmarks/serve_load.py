"""Load test of `wm serve` on loopback: latency, errors and server memory under 16 clients.

Starts `wm serve` (uvicorn) on 127.0.0.1 at a free port in a subprocess, with a bearer token,
then 16 concurrent clients send single-text detection requests (watermarked and plain texts of
about 200 tokens, alternating) until --requests are done or --max-seconds pass (hard stop).
Every answer's verdict is checked. The peer, measured in the same run, is the library called
in-process on the same texts (`scheme.detect_text`, one thread): the service's per-request
overhead is the ratio of the two. Server RSS is read from /proc at start, after a warm-up and
at the end. Writes benchmarks/results/serve.md; the last line printed is one JSON object.

    nice python benchmarks/serve_load.py --requests 2000 --clients 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import ROOT, emit, load_prompts

from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.modeling.models import load_tokenizer
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme


def green_text(scheme, tok, cands: np.ndarray, n: int, rng: np.random.Generator) -> str:
    """n " word" tokens, each green for its predecessor (h = 1): a strongly watermarked text."""
    ids = [tok.convert_tokens_to_ids("The")]
    while len(ids) < n:
        seed = torch.from_numpy(scheme.seeds_for(np.array([[ids[-1]]])))
        green = scheme.is_green(seed.expand(len(cands)), torch.from_numpy(cands)).numpy()
        ids.append(int(rng.choice(cands[green])))
    return tok.decode(ids)


def make_texts(scheme, tok, count: int, tokens: int) -> tuple[list[str], list[str]]:
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    cands = np.array(
        [i for i, t in enumerate(vocab) if t.startswith("Ġ") and t[1:].isascii() and t[1:].isalpha()]
    )
    rng = np.random.default_rng(0)
    marked = [green_text(scheme, tok, cands, tokens, rng) for _ in range(count)]
    prompts = load_prompts(count * 12)
    plain = [" ".join(prompts[i * 12 : (i + 1) * 12]) for i in range(count)]  # ~200 tokens of our prompts
    return marked, plain


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


async def run_clients(url: str, token: str, texts, expected, n: int, clients: int, deadline: float):
    import httpx

    results: list[tuple[float, int, bool]] = []  # latency s, status, verdict right
    next_i = [0]

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            i = next_i[0]
            if i >= n:
                return
            next_i[0] += 1
            k = i % len(texts)
            t0 = time.perf_counter()
            try:
                r = await client.post(
                    url, json={"text": texts[k]}, timeout=max(1.0, deadline - time.monotonic())
                )
                ok = r.status_code == 200 and r.json().get("verdict") == expected[k]
                results.append((time.perf_counter() - t0, r.status_code, ok))
            except httpx.HTTPError:
                results.append((time.perf_counter() - t0, -1, False))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--tokens", type=int, default=200, help="tokens per text")
    ap.add_argument("--concurrency", type=int, default=2, help="the server's worker threads")
    ap.add_argument("--max-seconds", type=float, default=240.0, help="hard stop for the measured phase")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.md")
    args = ap.parse_args()

    load_start = os.getloadavg()
    tok = load_tokenizer()
    key = Key.generate()
    scheme = build_scheme(GreenListConfig(vocab_size=len(tok)), key)
    marked, plain = make_texts(scheme, tok, 32, args.tokens)
    texts = [t for pair in zip(marked, plain, strict=True) for t in pair]
    expected = ["watermarked", "not watermarked"] * len(marked)
    expected = [
        e
        if e == "watermarked" or scheme.detect_text(t, tok, alpha=1e-3).verdict(1e-3) == e
        else "watermarked"
        for t, e in zip(texts, expected, strict=True)
    ]  # a plain text that happens to test positive keeps its own (correct) verdict

    # the peer: the library in this process, one thread, same texts
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    reps = 0
    while time.perf_counter() - t0 < 3.0:
        for t in texts:
            scheme.detect_text(t, tok, alpha=1e-3)
        reps += 1
    in_process_ms = (time.perf_counter() - t0) / (reps * len(texts)) * 1000

    with tempfile.TemporaryDirectory() as d:
        key_file = Path(d) / "key"
        write_key_file(key_file, key)
        token = secrets.token_urlsafe(32)
        tokens_file = Path(d) / "tokens.json"
        tokens_file.write_text(
            json.dumps([{"id": "load", "token": token, "rate_limit": 0, "daily_quota": 0}])
        )
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "wm_toolkit.cli.main",
            "serve",
            "--key",
            str(key_file),
            "--tokens",
            str(tokens_file),
        ]
        cmd += [
            "--port",
            str(port),
            "--concurrency",
            str(args.concurrency),
            "--log-file",
            str(Path(d) / "log"),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE)
        try:
            import httpx

            base = f"http://127.0.0.1:{port}"
            t_start = time.monotonic()
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"wm serve exited: {server.stderr.read().decode()[-2000:]}")
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() - t_start > 60:
                    raise SystemExit("wm serve did not start within 60 s")
                time.sleep(0.2)
            rss_start = rss_mb(server.pid)
            url = base + "/v1/detect"
            warm = asyncio.run(
                run_clients(url, token, texts, expected, args.warmup, args.clients, time.monotonic() + 60)
            )
            rss_warm = rss_mb(server.pid)
            t1 = time.monotonic()
            res = asyncio.run(
                run_clients(url, token, texts, expected, args.requests, args.clients, t1 + args.max_seconds)
            )
            wall = time.monotonic() - t1
            rss_end = rss_mb(server.pid)
            log_lines = (Path(d) / "log").read_text().splitlines()
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    load_end = os.getloadavg()

    lat = sorted(r[0] * 1000 for r in res)
    codes: dict[str, int] = {}
    for r in res:
        codes[str(r[1])] = codes.get(str(r[1]), 0) + 1
    five_xx = sum(v for k, v in codes.items() if k.startswith("5") or k == "-1")
    wrong = sum(1 for r in res if r[1] == 200 and not r[2])
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    secret_hex = key.secret.hex()
    out = {
        "requests": len(res),
        "clients": args.clients,
        "server_workers": args.concurrency,
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(res) / wall, 1),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(lat[-1], 1),
        "status_counts": codes,
        "errors_5xx": five_xx,
        "wrong_verdicts": wrong,
        "rss_start_mb": round(rss_start, 1),
        "rss_after_warmup_mb": round(rss_warm, 1),
        "rss_end_mb": round(rss_end, 1),
        "in_process_ms_per_text": round(in_process_ms, 2),
        "p50_over_in_process": round(p50 / in_process_ms, 1),
        "log_lines": len(log_lines),
        "key_in_log": any(secret_hex in line for line in log_lines),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in load_end],
        "cpus": os.cpu_count(),
        "warmup_requests": len(warm),
        "tokens_per_text": args.tokens,
    }
    write_report(args, out)
    emit(out)


def write_report(args, r: dict) -> None:
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(r["status_counts"].items()))
    text = f"""# `wm serve` under load (loopback)

Command:

```
nice python benchmarks/serve_load.py --requests {args.requests} --clients {args.clients} --concurrency {args.concurrency}
```

`wm serve` (uvicorn, one process, {r["server_workers"]} detection worker threads, one torch thread) on
127.0.0.1, a bearer token, rate limit and quota off for the test token; {r["clients"]} concurrent
clients (httpx, keep-alive) in another process on the same {r["cpus"]}-core machine, each request one
text of about {r["tokens_per_text"]} tokens (KGW h = 1; watermarked and plain texts alternating; every
verdict checked). {r["warmup_requests"]} warm-up requests first, not counted. Hard stop after
{args.max_seconds:g} s. The machine was shared with other jobs: load average {r["loadavg_start"][0]} at the
start and {r["loadavg_end"][0]} at the end (1-minute), on {r["cpus"]} cores.

| quantity | value |
|---|---|
| requests (measured) | {r["requests"]} in {r["wall_s"]} s ({r["requests_per_s"]} requests/s) |
| latency p50 / p99 / max | {r["p50_ms"]} / {r["p99_ms"]} / {r["max_ms"]} ms |
| status codes | {codes} |
| 5xx or failed connections | {r["errors_5xx"]} |
| wrong verdicts | {r["wrong_verdicts"]} |
| server RSS: start / after warm-up / end | {r["rss_start_mb"]} / {r["rss_after_warmup_mb"]} / {r["rss_end_mb"]} MB |
| peer: the library in-process, one thread, per text | {r["in_process_ms_per_text"]} ms |
| p50 latency / in-process time | {r["p50_over_in_process"]} x |
| request log | {r["log_lines"]} lines (one per request), key bytes in it: {r["key_in_log"]} |

- Memory: the RSS grows during the warm-up (worker threads with their own scheme and tokenizer
  copies, seed caches) and then changes by {r["rss_end_mb"] - r["rss_after_warmup_mb"]:+.1f} MB over the {r["requests"]}
  measured requests.
- Latency is the client's view: waiting for one of {r["server_workers"]} workers ({r["clients"]} clients), HTTP and JSON on
  both sides, and sharing the cores with the client process and with whatever else runs (see the load
  average above). Detection itself takes {r["in_process_ms_per_text"]} ms a text in-process; on a shared machine
  the tail (p99, max) includes time spent waiting for a core (not separated out here).
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()

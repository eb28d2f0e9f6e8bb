"""Benchmark: how long `wm --help` and `wm --version` take, against a bare Python start (the peer).

Beside them, `wm detect` on a missing file and on an empty one (issue 32): trivial bad input is
answered before torch and transformers are imported, so it should cost about what --help does.

The target (issue 15) is `wm --help` under 0.5 s; the ratio to `python -c pass` measured in the
same run says how much of that is wm's own imports, whatever the machine's load. For scale the
run also times `import torch` alone (what every command that touches a model pays).

    python benchmarks/cli_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import ROOT, emit


def _seconds(args: list[str], repeats: int, exit_code: int = 0) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(args, cwd=ROOT, capture_output=True)
        if done.returncode != exit_code:
            raise SystemExit(f"{' '.join(args)}: exit {done.returncode}, expected {exit_code}")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    py = sys.executable
    peer = _seconds([py, "-c", "pass"], args.repeats)
    help_s = _seconds([py, "-m", "wm_toolkit.cli.main", "--help"], args.repeats)
    version_s = _seconds([py, "-m", "wm_toolkit.cli.main", "--version"], args.repeats)
    torch_s = _seconds([py, "-c", "import torch"], max(3, args.repeats // 2))
    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "empty.txt")
        open(empty, "w").close()
        detect = [py, "-m", "wm_toolkit.cli.main", "detect"]
        missing_s = _seconds([*detect, os.path.join(tmp, "missing.txt")], args.repeats, exit_code=2)
        empty_s = _seconds([*detect, empty], args.repeats, exit_code=2)
    print("| command | median seconds | ratio to `python -c pass` |")
    print("|---|---|---|")
    for name, s in (
        ("python -c pass", peer),
        ("wm --help", help_s),
        ("wm --version", version_s),
        ("wm detect missing.txt (exit 2)", missing_s),
        ("wm detect empty.txt (exit 2)", empty_s),
        ("python -c 'import torch'", torch_s),
    ):
        print(f"| {name} | {s:.3f} | {s / peer:.2f} |")
    emit(
        {
            "help_s": round(help_s, 4),
            "version_s": round(version_s, 4),
            "python_s": round(peer, 4),
            "import_torch_s": round(torch_s, 4),
            "detect_missing_file_s": round(missing_s, 4),
            "detect_empty_file_s": round(empty_s, 4),
            "bad_input_under_half_second": max(missing_s, empty_s) < 0.5,
            "help_vs_python": round(help_s / peer, 3),
            "help_under_half_second": help_s < 0.5,
            "load_average": os.getloadavg()[0],
        }
    )


if __name__ == "__main__":
    main()

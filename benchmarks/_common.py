"""Helpers shared by benchmark scripts: prompts, timing, peak memory, the final JSON line."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wm_toolkit.watermark.text.textio import read_prompts  # noqa: E402


def load_prompts(n: int, path: Path | None = None) -> list[str]:
    path = path or ROOT / "data" / "prompts.jsonl"
    prompts = read_prompts(str(path))
    return (prompts * (n // len(prompts) + 1))[:n]


def timed(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, Any]:
    """Median wall time over repeats, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(result: dict[str, Any]) -> None:
    """The benchmark contract: the last line printed is one JSON object."""
    print(json.dumps(result, sort_keys=True))

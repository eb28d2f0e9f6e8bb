"""`wm bench`'s outputs for people: the leaderboard in Markdown and the size curves as a PNG.

Input: the per-scheme objects `bench.json` holds (see `attacks/bench.py`). Nothing here computes
a statistic; it only formats them, so the table and the JSON cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..runtime import atomic
from .bench_size import median_curve

NOT_YET = (
    "Not measured yet (issue 29): same-strength tuning (WaterBench: every scheme tuned to the same "
    "TPR at 1% FPR before quality is compared), perplexity under a second model family (Gemma 3 270M), "
    "an LLM judge of quality (MarkMyWords; an embedding similarity or a perplexity ratio stands in "
    "here), the translation, random-walk and De-mark attacks, MarkLLM's implementations on the same prompts."
)


def _num(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _interval(d: dict[str, Any] | None, key: str = "median", digits: int = 2) -> str:
    """'value [low, high]' of a summary dict; '-' when missing, 'inf' for never-reached bounds."""
    if not d or d.get("skipped"):
        return "skipped" if d else "-"
    v, lo, hi = d.get(key), d.get("low"), d.get("high")
    if v is None:
        return "never"

    def f(x: Any) -> str:
        return "inf" if x is None else f"{x:.{digits}f}"

    return f"{f(v)} [{f(lo)}, {f(hi)}]"


def leaderboard(results: Sequence[dict[str, Any]]) -> list[str]:
    """One row per scheme: size, tamper resistance, quality and distinguishability."""
    lines = [
        "| scheme | size (tokens, median [95% CI]) | never reached | TPR@1%FPR, no attack "
        "| detected after every attack keeping quality >= 0.8 [95% CI] | PPL watermarked [95% CI] "
        "| PPL plain | distinct-2 | self-BLEU | embedding AUROC [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        q, agg = r["quality"], r["tamper_aggregate"]
        none = r["tamper"].get("none", {})
        emb = q.get("embedding_auroc")
        lines.append(
            f"| {r['scheme']} | {_interval(r['size'], digits=0)} | {_num(r['size']['never_fraction'])} "
            f"| {_num(none.get('tpr_at_fpr_1pct'))} | {_interval(agg, 'fraction')} "
            f"| {_interval(q['perplexity'])} | {_interval(q['perplexity_unwatermarked'])} "
            f"| {_num(q['distinct_2'], 3)} | {_num(q['self_bleu'], 3)} "
            f"| {'skipped' if emb is None or emb.get('skipped') else _interval(emb, 'auroc')} |"
        )
    return lines


def tamper_table(result: dict[str, Any]) -> list[str]:
    """One scheme's attacks: TPR at 1% FPR, detection at p <= 0.02 and the quality ratio."""
    lines = [
        f"### {result['scheme']}",
        "",
        "| attack | TPR@1%FPR | detected (p <= 0.02) [95% CI] | AUROC | quality ratio | kept (>= 0.8) |",
        "|---|---|---|---|---|---|",
    ]
    for label, t in result["tamper"].items():
        lines.append(
            f"| {label} | {_num(t['tpr_at_fpr_1pct'])} | {_interval(t['detected'], 'fraction')} "
            f"| {_num(t['auroc'])} | {_num(t['quality_ratio'])} | {'yes' if t['kept'] else 'no'} |"
        )
    return lines


def bench_markdown(results: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The whole bench.md: settings, the leaderboard, one tamper table per scheme, the notes."""
    mode = " (quick mode)" if meta.get("quick") else ""
    lines = [
        f"# wm bench{mode}: {meta['model']}",
        "",
        f"{meta['n']} prompts from {meta['prompts']}, {meta['max_new_tokens']} new tokens, "
        f"seed {meta['seed']}; size at p <= {meta['size_alpha']:g} on prefixes every "
        f"{meta['size_step']} token(s); quality ratio of an attack: {meta['quality_measure']}.",
        "",
        "## Leaderboard",
        "",
        *leaderboard(results),
        "",
        "## Tamper resistance",
        "",
    ]
    for r in results:
        lines += [*tamper_table(r), ""]
    lines += ["## Notes", "", *[f"- {n}" for n in meta.get("notes", [])], f"- {NOT_YET}", ""]
    return "\n".join(lines)


def plot_sizes(results: Sequence[dict[str, Any]], out_dir: Path, alpha: float) -> list[Path]:
    """size-curves.png: median log10 p against prefix length, one line per scheme."""
    from .evaluation import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(results):
        xs, ys = median_curve(r["size"]["curves"])
        ax.plot(xs, ys, color=f"C{i % 10}", label=r["scheme"])
    ax.axhline(math.log10(alpha), color="grey", lw=0.8, ls=":", label=f"p = {alpha:g}")
    ax.set_xlabel("tokens (prefix length)")
    ax.set_ylabel("median log10 p-value")
    ax.set_title("Size: p-value against tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / "size-curves.png"
    atomic.save_figure(fig, path, dpi=120)
    plt.close(fig)
    return [path]

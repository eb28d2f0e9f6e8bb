"""`wm bench`: MarkMyWords-style size, tamper resistance and quality of many schemes, side by side.

The texts and the attacks come from the robustness grid (`attacks/grid.py`, the one behind
`wm eval`): the same generation cache, attack caches and p-value files in the output folder, so
a rerun resumes and `results.json` holds the grid's rows. On top of it, per scheme:
- size (`watermark/measure/bench_size.py`): tokens to the first prefix with p <= 0.02;
- tamper resistance: per attack TPR at 1% FPR, the fraction detected at p <= 0.02 (Clopper-Pearson
  interval) and a quality ratio standing in for MarkMyWords' LLM judge: the mean embedding cosine
  of each attacked text to its unattacked original (MiniLM), or without an embedding model the
  median perplexity of the unattacked watermarked texts over that of the attacked ones; the
  aggregate is the fraction of texts detected after every attack whose quality ratio is >= 0.8;
- quality: perplexity under the generating model with bootstrap intervals, distinct-n, self-BLEU,
  and the embedding classifier's AUROC (Singh & Zou) when an embedding model is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wm_toolkit.watermark.measure.bench_size import SIZE_ALPHA, scheme_size
from wm_toolkit.watermark.measure.bench_stats import (
    aggregate_detected,
    classifier_auroc,
    distinct_n,
    median_interval,
    self_bleu,
)
from wm_toolkit.watermark.measure.evaluation import (
    ProgressFactory,
    cache_digest,
    cached_generations,
    generation_tag,
    no_progress,
    read_cache_jsonl,
    rewrite_cache_jsonl,
    safe_name,
    text_perplexities,
)
from wm_toolkit.watermark.schemes.base import WatermarkScheme
from wm_toolkit.watermark.statistics.pvalues import clopper_pearson

from .grid import GridSetup, attack_cache, load_p_values, run_grid
from .registry import AttackSpec

QUALITY_KEPT = 0.8  # MarkMyWords: attacks that keep at least 0.8 of the text's quality


@dataclass
class BenchSetup:
    """The grid's setup plus what only the bench needs."""

    grid: GridSetup
    attacks: Sequence[AttackSpec]
    size_step: int = 1
    size_alpha: float = SIZE_ALPHA
    embed: Callable[[Sequence[str]], np.ndarray] | None = None  # texts -> one embedding row each
    embed_skipped: str | None = None  # why there is no embedding model


def _texts(setup: GridSetup, scheme: WatermarkScheme | None) -> list[dict]:
    """The cached generations of one scheme (None: unwatermarked), as the grid made them."""
    config = None if scheme is None else scheme.config.generation_dict()
    tag = generation_tag(setup.settings, config)
    path = Path(setup.out_dir) / "generations" / f"{tag}.jsonl"
    return cached_generations(path, setup.model, setup.tokenizer, setup.prompts, scheme, setup.settings)


def _cached(path: Path, make: Callable[[], dict]) -> dict:
    """One JSON record kept at `path` (JSONL of one line), made once."""
    done = read_cache_jsonl(path)
    if done:
        return done[0]
    rec = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    rewrite_cache_jsonl(path, [rec])
    return rec


def _perplexity(setup: GridSetup, recs: Sequence[dict], tag: str) -> dict[str, Any]:
    """Median perplexity of texts under the generating model, with a bootstrap interval (cached)."""
    texts, prompts = [r["text"] for r in recs], [r["prompt"] for r in recs]
    key = cache_digest({"texts": texts, "model": setup.settings.model, "chat": setup.settings.chat})
    path = Path(setup.out_dir) / "bench" / f"ppl-{tag}-{key}.jsonl"

    def make() -> dict:
        ppl = text_perplexities(setup.model, setup.tokenizer, texts, prompts, chat=setup.settings.chat)
        return {"perplexities": [float(v) for v in ppl]}

    ppl = [v for v in _cached(path, make)["perplexities"] if np.isfinite(v)]
    return {**median_interval(ppl), "model": setup.settings.model}


def _size(bench: BenchSetup, scheme: WatermarkScheme, texts: list[str], progress: ProgressFactory) -> dict:
    """`scheme_size` of the watermarked texts, cached by config, texts, step and alpha."""
    key = {
        "config": scheme.config.to_dict(),
        "texts": texts,
        "step": bench.size_step,
        "alpha": bench.size_alpha,
    }
    path = Path(bench.grid.out_dir) / "bench" / f"size-{safe_name(scheme.name)}-{cache_digest(key)}.jsonl"
    advance = progress(f"Size ({scheme.name})", len(texts))
    return _cached(
        path,
        lambda: scheme_size(
            scheme, bench.grid.tokenizer, texts, step=bench.size_step, alpha=bench.size_alpha, advance=advance
        ),
    )


def _embedding_auroc(bench: BenchSetup, marked: list[str], plain: list[str]) -> dict[str, Any]:
    """Singh & Zou's classifier on sentence embeddings; 0.5 = indistinguishable."""
    if bench.embed is None:
        return {"skipped": bench.embed_skipped or "no embedding model"}
    if min(len(marked), len(plain)) < 2:
        return {"skipped": "fewer than 2 texts a side"}
    paired = len(marked) == len(plain)  # text i of both sides answers prompt i: one fold per pair
    return classifier_auroc(np.asarray(bench.embed(marked)), np.asarray(bench.embed(plain)), paired=paired)


def _quality(bench: BenchSetup, scheme: WatermarkScheme, plain: list[dict], wm: list[dict]) -> dict:
    setup = bench.grid
    wm_texts, plain_texts = [r["text"] for r in wm], [r["text"] for r in plain]
    return {
        "perplexity": _perplexity(setup, wm, safe_name(scheme.name)),
        "perplexity_unwatermarked": _perplexity(setup, plain, "plain"),
        "distinct_2": distinct_n(wm_texts, 2),
        "distinct_3": distinct_n(wm_texts, 3),
        "distinct_2_unwatermarked": distinct_n(plain_texts, 2),
        "self_bleu": self_bleu(wm_texts),
        "self_bleu_unwatermarked": self_bleu(plain_texts),
        "embedding_auroc": _embedding_auroc(bench, wm_texts, plain_texts),
        "perplexity_second_family": {"skipped": "Gemma 3 270M not wired in yet"},
    }


def _attacked_texts(
    setup: GridSetup, scheme: WatermarkScheme, spec: AttackSpec, plain: list[dict]
) -> list[str]:
    """The grid's attacked watermarked texts of one attack, read back from its cache (no new work
    once `run_grid` ran: same key, same donors as the grid uses)."""
    wm = _texts(setup, scheme)
    wm_tag = generation_tag(setup.settings, scheme.config.generation_dict())
    plain_tag = generation_tag(setup.settings, None)
    plain_texts = [r["text"] for r in plain]
    donors = plain_texts[1:] + plain_texts[:1]  # as in run_grid
    recs = attack_cache(setup, wm_tag, plain_tag, spec, [r["text"] for r in wm], donors, lambda k: None)
    return [r["text"] for r in recs]


def _similarities(
    bench: BenchSetup, scheme: WatermarkScheme, specs: Sequence[AttackSpec], plain: list[dict]
) -> dict[str, float] | None:
    """Mean embedding cosine of each attacked text to its unattacked original, per attack label
    (None without an embedding model). The quality ratio where MarkMyWords asks an LLM judge."""
    if bench.embed is None:
        return None
    original = np.asarray(bench.embed([r["text"] for r in _texts(bench.grid, scheme)]))
    out = {}
    for spec in specs:
        attacked = np.asarray(bench.embed(_attacked_texts(bench.grid, scheme, spec, plain)))
        out[spec.label] = float(np.clip((original * attacked).sum(axis=1), 0.0, 1.0).mean())
    return out


def _attack_entry(
    r: dict, wm_p: list[float], alpha: float, base_ppl: float, similarity: float | None
) -> dict:
    """One attack's tamper numbers; `quality_ratio` is the similarity when there is one."""
    hits = [p <= alpha for p in wm_p]
    lo, hi = clopper_pearson(sum(hits), len(hits))
    ppl_ratio = (
        float(base_ppl / r["perplexity"]) if r["perplexity"] and np.isfinite(base_ppl) else float("nan")
    )
    ratio = ppl_ratio if similarity is None else similarity
    return {
        "kind": r["kind"],
        "strength": r["strength"],
        "tpr_at_fpr_1pct": r["tpr_at_fpr_1pct"],
        "fpr_1pct_achieved": r["fpr_1pct_achieved"],
        "auroc": r["auroc"],
        "detected": {"fraction": float(np.mean(hits)) if hits else None, "low": lo, "high": hi},
        "perplexity": r["perplexity"],
        "perplexity_ratio": ppl_ratio,
        "similarity": similarity,
        "fraction_changed": r["fraction_changed"],
        "quality_ratio": ratio,
        "quality_measure": "perplexity-ratio" if similarity is None else "embedding-similarity",
        "kept": bool(np.isfinite(ratio) and ratio >= QUALITY_KEPT),
    }


def _tamper(
    rows: Sequence[dict],
    p_values: dict[tuple[str, str], tuple[list[float], list[float]]],
    alpha: float,
    similarity: dict[str, float] | None,
) -> tuple[dict[str, dict], dict[str, Any]]:
    """Per attack of one scheme's grid rows, and MarkMyWords' aggregate over the kept attacks."""
    base = next((r["perplexity"] for r in rows if r["kind"] == "none"), float("nan"))
    per: dict[str, dict] = {}
    detected: dict[str, list[bool]] = {}
    for r in rows:
        wm_p, _ = p_values[(r["scheme"], r["attack"])]
        sim = None if similarity is None else similarity[r["attack"]]
        per[r["attack"]] = _attack_entry(r, wm_p, alpha, base, sim)
        detected[r["attack"]] = [p <= alpha for p in wm_p]
    quality = {a: t["quality_ratio"] if t["kept"] else 0.0 for a, t in per.items()}
    fraction = aggregate_detected(detected, quality, QUALITY_KEPT)
    n = len(next(iter(detected.values()), []))
    lo, hi = clopper_pearson(round((fraction or 0.0) * n), n) if fraction is not None else (None, None)
    kept = [a for a, t in per.items() if t["kept"]]
    return per, {"fraction": fraction, "low": lo, "high": hi, "attacks": kept, "alpha": alpha}


def _scheme_result(
    bench: BenchSetup,
    scheme: WatermarkScheme,
    rows: Sequence[dict],
    attacks: Sequence[AttackSpec],
    plain: list[dict],
    progress: ProgressFactory,
) -> dict[str, Any]:
    """One scheme's object of bench.json."""
    setup = bench.grid
    wm = _texts(setup, scheme)
    size = _size(bench, scheme, [r["text"] for r in wm], progress)
    own = [r for r in rows if r["scheme"] == scheme.name]
    similarity = _similarities(bench, scheme, attacks, plain)
    tamper, aggregate = _tamper(own, load_p_values(setup.out_dir, own), bench.size_alpha, similarity)
    return {
        "scheme": scheme.name,
        "config": scheme.config.to_dict(),
        "model": setup.settings.model,
        "n": len(setup.prompts),
        "max_new_tokens": setup.settings.max_new_tokens,
        "size_tokens_median": size["median"],
        "size": size,
        "tamper": tamper,
        "tamper_aggregate": aggregate,
        "quality": _quality(bench, scheme, plain, wm),
    }


def run_bench(
    bench: BenchSetup, schemes: Sequence[WatermarkScheme], progress: ProgressFactory = no_progress
) -> list[dict]:
    """One result object per scheme (the objects of bench.json), in the order of `schemes`."""
    attacks = list(bench.attacks)
    if not any(a.kind == "none" for a in attacks):
        attacks.insert(0, AttackSpec("none"))
    rows = run_grid(bench.grid, schemes, attacks, progress=progress)
    plain = _texts(bench.grid, None)
    return [_scheme_result(bench, scheme, rows, attacks, plain, progress) for scheme in schemes]

"""QA evaluation: is the most likely answer right, and which score predicts when it is not?

Correctness is Rouge-L F1 of the most likely answer against the best reference or alias
(> 0.5 by default, as the paper). Each method's AUROC is for predicting WRONG answers from the
uncertainty score. Generations are cached in the output folder, keyed by the model and the
sampling settings, so scoring again with other methods or similarity models never re-generates.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..measure.metrics import auroc, roc_curve
from ..runtime.atomic import save_figure
from ..text.textio import decode_text, read_bytes, text_lines
from .estimate import METHOD_LABELS, Estimator, rouge_scorer
from .sampling import QuestionSamples, SamplingConfig, sample_answers

DEFAULT_CORRECT_THRESHOLD = 0.5

Stage = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance(n)


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    references: tuple[str, ...]  # the answer first, then its aliases


def load_qa(path: str | Path) -> list[QAItem]:
    """Read a JSONL file of {"question", "answer", optional "aliases", optional "id"} records."""
    lines = text_lines(decode_text(str(path), read_bytes(str(path))))  # capped, any kind of file
    items: list[QAItem] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            raise InputError(f"{path}:{n}: not valid JSON (or beyond the JSON limits)") from None
        if (
            not isinstance(rec, dict)
            or not isinstance(rec.get("question"), str)
            or not rec["question"].strip()
        ):
            raise InputError(f'{path}:{n}: each line needs a non-empty "question" string')
        answer = rec.get("answer")
        aliases = rec.get("aliases") or []
        if not isinstance(answer, str) or not answer.strip() or not isinstance(aliases, list):
            raise InputError(f'{path}:{n}: each line needs an "answer" string (and "aliases" as a list)')
        refs = tuple(dict.fromkeys([answer] + [a for a in aliases if isinstance(a, str) and a.strip()]))
        items.append(QAItem(str(rec.get("id", f"line{n}")), rec["question"], refs))
    if not items:
        raise InputError(f"{path}: no questions")
    return items


def rouge_correctness(answer: str, references: Sequence[str], scorer: Any | None = None) -> float:
    """Rouge-L F1 of the answer against its best-matching reference."""
    scorer = scorer or rouge_scorer()
    return max(scorer.score(ref, answer)["rougeL"].fmeasure for ref in references)


def cache_path(out_dir: Path, model_name: str, config: SamplingConfig) -> Path:
    """Generations file for this model and these sampling settings (a change means a new file)."""
    key = json.dumps({"model": model_name, **config.to_dict()}, sort_keys=True, default=list)
    return out_dir / f"generations-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"


def load_cached(path: Path) -> dict[str, QuestionSamples]:
    cached: dict[str, QuestionSamples] = {}
    if path.exists():
        for line in text_lines(path.read_text(encoding="utf-8")):
            try:
                rec = json.loads(line)
                cached[rec["id"]] = QuestionSamples.from_dict(rec["samples"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line from an interrupted run is simply regenerated
    return cached


def generate_cached(
    items: Sequence[QAItem],
    load_lm: Callable[[], tuple[Any, Any]],
    model_name: str,
    config: SamplingConfig,
    out_dir: Path | None,
    batch_size: int = 8,
    stage: Stage | None = None,
) -> tuple[list[QuestionSamples], int, float]:
    """(samples per item, number newly generated, seconds spent generating); the LM loads only if needed."""
    path = cache_path(out_dir, model_name, config) if out_dir else None
    cached = load_cached(path) if path else {}
    todo = [it for it in items if it.id not in cached or cached[it.id].question != it.question]
    seconds = 0.0
    if todo:
        model, tok = load_lm()
        advance = stage("Sampling answers", len(todo)) if stage else None
        start = time.perf_counter()
        for b in range(0, len(todo), batch_size):
            chunk = todo[b : b + batch_size]
            made = sample_answers(model, tok, [it.question for it in chunk], config, batch_size=batch_size)
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as f:
                    for it, qs in zip(chunk, made, strict=True):
                        f.write(json.dumps({"id": it.id, "samples": qs.to_dict()}) + "\n")
            for it, qs in zip(chunk, made, strict=True):
                cached[it.id] = qs
            if advance:
                advance(len(chunk))
        seconds = time.perf_counter() - start
    return [cached[it.id] for it in items], len(todo), seconds


def _finite(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def evaluate(
    items: Sequence[QAItem],
    samples: Sequence[QuestionSamples],
    estimator: Estimator,
    correct_threshold: float = DEFAULT_CORRECT_THRESHOLD,
    stage: Stage | None = None,
) -> dict[str, Any]:
    """Correctness, every method's score per question, and AUROC for predicting wrong answers."""
    scorer = rouge_scorer()
    advance = stage("Scoring", len(items)) if stage else None
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for it, qs in zip(items, samples, strict=True):
        rouge = rouge_correctness(qs.most_likely.text, it.references, scorer)
        scored = estimator.score(qs)
        rows.append(
            {
                "id": it.id,
                "question": it.question,
                "references": list(it.references),
                "answer": qs.most_likely.text,
                "rouge_l": rouge,
                "correct": rouge > correct_threshold,
                "samples": [a.text for a in qs.samples],
                "scores": scored.scores,
                "clusters": scored.clusters,
            }
        )
        if advance:
            advance(1)
    scoring_seconds = time.perf_counter() - start
    wrong = np.array([0 if r["correct"] else 1 for r in rows])
    aurocs = {m: _finite(auroc(wrong, [r["scores"][m] for r in rows])) for m in estimator.methods}
    return {
        "n": len(rows),
        "accuracy": float(1 - wrong.mean()) if rows else None,
        "auroc": aurocs,
        "correct_threshold": correct_threshold,
        "methods": list(estimator.methods),
        "scoring_seconds": scoring_seconds,
        "questions": rows,
    }


def plot_roc(results: dict[str, Any], path: Path) -> Path:
    """One ROC curve per method (wrong answers are the positives), saved as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "the ROC plot needs matplotlib: pip install matplotlib (or pass --no-plot)"
        ) from None
    rows = results["questions"]
    wrong = [0 if r["correct"] else 1 for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for m in results["methods"]:
        a = results["auroc"].get(m)
        if a is None:
            continue
        fpr, tpr, _ = roc_curve(wrong, [r["scores"][m] for r in rows])
        ax.plot(fpr, tpr, label=f"{METHOD_LABELS.get(m, m)} ({a:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate (correct answers flagged)")
    ax.set_ylabel("true positive rate (wrong answers flagged)")
    ax.set_title(f"Predicting wrong answers (n={results['n']}, accuracy {results['accuracy']:.2f})")
    if ax.get_legend_handles_labels()[0]:  # no curve when every answer is right (or wrong)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path

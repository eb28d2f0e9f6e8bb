"""How well a watermark is detected, before and after attacks, and what it costs in text quality.

Metrics (p-values in, lower p = more watermarked):
- `tpr_at_fpr`: the threshold is taken from the unwatermarked texts' p-values (empirical FPR),
  so it holds even when a detector's nominal p-values are off; `tpr_at_p` uses the nominal
  threshold. With n unwatermarked texts an FPR below 1/n cannot be resolved: the threshold is
  then "below every unwatermarked p-value" (reported as such, with the achieved FPR).
- `roc_from_p_values` / `auroc_from_p_values`: `watermark.metrics` (one implementation, ties
  count one half).
- `perplexities`: per-text perplexity under a model, batched, conditioned on a prefix (the
  chat-formatted prompt), as in Kirchenbauer et al. 2023.

`cached_generations` keeps the texts the robustness grid (`attacks/grid.py`, behind `wm eval` and
`benchmarks/robustness.py`) attacks; the grid itself lives with the attacks it drives, so this
core module imports nothing from `attacks/`. The grid's cache layout (everything expensive is kept
under the output folder, keyed by what determines it, so a rerun, a larger n or a new attack
reuses earlier work and an interruption loses at most one batch):
    generations/<scheme|plain>-<hash>.jsonl   texts by prompt index (hash: model, sampling, config)
    attacks/<generation>-<attack>-<hash>.jsonl  attacked texts + fraction changed + perplexity
    pvalues/<scheme>-<attack>-<hash>.json       p-values of both sides (hash: detector config and
                                                the texts), for ROC plots and to skip re-detection
    results.json                                rows so far, rewritten after every row
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..runtime import atomic
from ..schemes.base import WatermarkScheme
from ..text.textio import text_lines
from .metrics import auroc, roc_curve

# ---------------------------------------------------------------------------------------------
# detection metrics

NOMINAL_ALPHA = 1e-3  # the level of `tpr_at_p_0_001`; detectors get it (permutation tests resample to it)


def _p(values: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64).ravel()
    if np.isnan(p).any():
        raise ValueError("p-values contain NaN")
    return p


def empirical_threshold(null_p: Sequence[float] | np.ndarray, fpr: float) -> float:
    """The largest t with #{null p < t} <= fpr * n: flag a text when its p-value is below t.

    Ties are resolved conservatively (a tie at the threshold is never flagged), so the achieved
    FPR on these texts is at most `fpr`. With fpr * n < 1 this is the smallest null p-value.
    """
    q = np.sort(_p(null_p))
    if q.size == 0:
        raise ValueError("no unwatermarked p-values to take a threshold from")
    k = int(math.floor(fpr * q.size + 1e-9))
    return float("inf") if k >= q.size else float(q[k])


@dataclass(frozen=True)
class RateAtFpr:
    tpr: float
    threshold: float
    achieved_fpr: float  # on the unwatermarked texts the threshold came from


def tpr_at_fpr(
    pos_p: Sequence[float] | np.ndarray, null_p: Sequence[float] | np.ndarray, fpr: float
) -> RateAtFpr:
    """TPR of watermarked p-values at the empirical threshold of the unwatermarked ones."""
    t = empirical_threshold(null_p, fpr)
    pos, null = _p(pos_p), _p(null_p)
    tpr = float((pos < t).mean()) if pos.size else float("nan")
    return RateAtFpr(tpr, t, float((null < t).mean()))


def tpr_at_p(pos_p: Sequence[float] | np.ndarray, alpha: float) -> float:
    """Fraction of watermarked texts with p <= alpha (the nominal threshold; a detector's verdict
    at alpha is "watermarked" exactly when p <= alpha)."""
    pos = _p(pos_p)
    return float((pos <= alpha).mean()) if pos.size else float("nan")


def _labels_scores(
    pos_p: Sequence[float] | np.ndarray, null_p: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    pos, null = _p(pos_p), _p(null_p)
    labels = np.r_[np.ones(pos.size), np.zeros(null.size)]
    return labels, -np.r_[pos, null]  # lower p-value = more watermarked = higher score


def roc_from_p_values(
    pos_p: Sequence[float] | np.ndarray, null_p: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of "flag when p <= threshold" over every threshold; starts at (0, 0)."""
    fpr, tpr, _ = roc_curve(*_labels_scores(pos_p, null_p))
    return fpr, tpr


def auroc_from_p_values(pos_p: Sequence[float] | np.ndarray, null_p: Sequence[float] | np.ndarray) -> float:
    """P(watermarked p < unwatermarked p) + 1/2 P(tie)."""
    return auroc(*_labels_scores(pos_p, null_p))


def detection_summary(
    pos_p: Sequence[float] | np.ndarray, null_p: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Every detection number of one results row."""
    pos, null = _p(pos_p), _p(null_p)
    at1 = tpr_at_fpr(pos, null, 0.01)
    at01 = tpr_at_fpr(pos, null, 0.001)
    return {
        "tpr_at_fpr_1pct": at1.tpr,
        "fpr_1pct_achieved": at1.achieved_fpr,
        "tpr_at_fpr_0_1pct": at01.tpr,
        "fpr_0_1pct_achieved": at01.achieved_fpr,
        "tpr_at_p_0_001": tpr_at_p(pos, NOMINAL_ALPHA),
        "fpr_at_p_0_001": tpr_at_p(null, NOMINAL_ALPHA),
        "auroc": auroc_from_p_values(pos, null),
        "median_p_value": float(np.median(pos)) if pos.size else float("nan"),
        "median_p_value_unwatermarked": float(np.median(null)) if null.size else float("nan"),
    }


RESOLVED_FPRS = ((0.01, "1%", "TPR@1%FPR"), (0.001, "0.1%", "TPR@.1%FPR"))


def resolution_warnings(n_unwatermarked: int) -> list[str]:
    """Why a TPR-at-FPR number means less than it says: with fewer than 1 / fpr unwatermarked
    texts no threshold has that FPR, and the TPR counts the texts below every unwatermarked p."""
    n = n_unwatermarked
    return [
        f"with {n} unwatermarked texts an FPR of {label} is below the resolution 1/n: "
        f"{column} counts the texts below every unwatermarked p-value"
        for fpr, label, column in RESOLVED_FPRS
        if fpr * n < 1 - 1e-9
    ]


# ---------------------------------------------------------------------------------------------
# quality


@torch.inference_mode()
def perplexities(
    model: Any,
    token_ids: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    batch_size: int = 4,
    pad_id: int = 0,
) -> np.ndarray:
    """exp(mean NLL) of each id sequence given its (non-empty) prefix; NaN for an empty text."""
    nlls = token_nlls(model, token_ids, prefixes, batch_size=batch_size, pad_id=pad_id)
    return np.array([math.exp(float(v.mean())) if v.size else np.nan for v in nlls])


def token_nlls(
    model: Any,
    token_ids: Sequence[Sequence[int]],
    prefixes: Sequence[Sequence[int]],
    batch_size: int = 4,
    pad_id: int = 0,
) -> list[np.ndarray]:
    """Each token's negative log-likelihood (nats) given its (non-empty) prefix and the tokens
    before it, one array per sequence (empty for an empty text). Sequences are batched by length
    with right padding; only the text's own tokens are scored."""
    if len(token_ids) != len(prefixes):
        raise ValueError("one prefix per text is needed")
    out = [np.zeros(0) for _ in token_ids]
    device = next(model.parameters()).device
    order = sorted(range(len(token_ids)), key=lambda i: len(prefixes[i]) + len(token_ids[i]))
    order = [i for i in order if len(token_ids[i]) > 0]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        seqs = [list(prefixes[i]) + list(token_ids[i]) for i in idx]
        if any(len(prefixes[i]) == 0 for i in idx):
            raise ValueError("perplexity needs a non-empty prefix (a BOS token or the prompt)")
        width = max(len(s) for s in seqs)
        x = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            x[r, : len(s)] = torch.tensor(s)
            attn[r, : len(s)] = 1
        with torch.inference_mode():
            logits = model(input_ids=x.to(device), attention_mask=attn.to(device)).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1).to(device), reduction="none"
            ).view(len(seqs), -1)
        nll_np = nll.double().cpu().numpy()
        for r, i in enumerate(idx):  # position j predicts token j + 1
            out[i] = nll_np[r, len(prefixes[i]) - 1 : len(seqs[r]) - 1]
    return out


def prompt_prefix(tokenizer: Any, prompt: str | None, chat: bool = True) -> list[int]:
    """The ids a generated text followed: the formatted prompt, else a BOS (or EOS) token."""
    from ..modeling.generation import format_prompt

    if prompt:
        ids = tokenizer(format_prompt(tokenizer, prompt, chat), add_special_tokens=not chat)["input_ids"]
        if ids:
            return list(ids)
    for tok in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tok is not None:
            return [int(tok)]
    raise ConfigError("the tokenizer has neither a BOS nor an EOS token to start a text from")


def text_perplexities(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    prompts: Sequence[str | None],
    chat: bool = True,
    batch_size: int = 4,
) -> np.ndarray:
    """Perplexity of each text given its prompt, tokenised with this model's own tokenizer."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    prefixes = [prompt_prefix(tokenizer, p, chat) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return perplexities(model, ids, prefixes, batch_size=batch_size, pad_id=pad)


def finite_median(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else float("nan")


def finite_mean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


# ---------------------------------------------------------------------------------------------
# caching


@dataclass(frozen=True)
class GenerationSettings:
    """Everything besides the prompt and the scheme that decides what a model generates."""

    model: str
    max_new_tokens: int = 200
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 8
    seed: int = 0
    chat: bool = True
    engine: str = "hf"  # "vllm": the texts come from wm's plugin inside vLLM (`modeling.generation.ENGINES`)


def cache_digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def read_cache_jsonl(path: Path) -> list[dict]:
    """Complete records of a cache file; a line cut short by an interruption is dropped."""
    if not path.exists():
        return []
    out = []
    for line in text_lines(path.read_text(encoding="utf-8")):
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def rewrite_cache_jsonl(path: Path, records: Sequence[dict]) -> None:
    atomic.write_jsonl(path, records)


def append_cache_jsonl(path: Path, records: Sequence[dict]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        fh.flush()


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (unique temp file, fsync, rename): an interruption never leaves half a file."""
    atomic.write_text(path, json.dumps(obj, indent=1, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


ProgressFactory = Callable[[str, int], Callable[[int], None]]


def no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def generation_tag(settings: GenerationSettings, config: dict[str, Any] | None) -> str:
    """Cache name of the texts made with these settings and scheme config (None: unwatermarked).

    The prompts are not part of it: records carry their prompt and are reused per index. Pass
    `config.generation_dict()`, so detection-only parameters (resamples, ...) share the texts."""
    name = "plain" if config is None else safe_name(str(config["scheme"]))
    fields = asdict(settings)
    if fields["engine"] == "hf":  # caches made before engines were named keep their names
        del fields["engine"]
    return f"{name}-{cache_digest({'settings': fields, 'config': config})}"


def cached_generations(
    path: Path,
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    scheme: WatermarkScheme | None,
    settings: GenerationSettings,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict]:
    """Texts for `prompts` (index, prompt, text, token_ids), generated batch by batch and cached.

    Batch b always holds prompts [b * batch_size, (b + 1) * batch_size) and is sampled with seed
    `settings.seed + b * batch_size`, so a resumed or longer run gives the same texts. The cached
    texts are reused up to the first prompt that differs (another prompt list starts over there).
    With `settings.engine == "vllm"`, `model` is the engine from `vllm_plugin.open_llm`.
    """
    from ..modeling.generation import generate

    cached = read_cache_jsonl(path)
    done = []
    for rec, prompt in zip(cached, prompts, strict=False):  # reuse the prefix made for these prompts
        if rec.get("prompt") != prompt:
            break
        done.append(rec)
    bs = settings.batch_size
    done = done[: (len(done) // bs) * bs] if len(done) < len(prompts) else done
    if on_batch and done:
        on_batch(min(len(done), len(prompts)))
    if len(done) < len(prompts) and len(done) < len(cached):
        rewrite_cache_jsonl(path, done)  # drop a partly written batch (or other prompts) before appending
    for start in range(len(done), len(prompts), bs):
        batch = list(prompts[start : start + bs])
        gens = generate(
            model,
            tokenizer,
            batch,
            scheme=scheme,
            max_new_tokens=settings.max_new_tokens,
            batch_size=bs,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            seed=settings.seed + start,
            chat=settings.chat,
            engine=settings.engine,
        )
        recs = [
            {"index": start + j, "prompt": g.prompt, "text": g.text, "token_ids": list(g.token_ids)}
            for j, g in enumerate(gens)
        ]
        append_cache_jsonl(path, recs)
        done.extend(recs)
        if on_batch:
            on_batch(len(batch))
    return done[: len(prompts)]


# ---------------------------------------------------------------------------------------------
# plots (matplotlib is optional: `pip install 'wm-toolkit[plots]'`)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "plots need matplotlib: pip install 'wm-toolkit[plots]' (or pass --no-plots)"
        ) from None
    return plt


LINE_STYLES = ("-", "--", "-.", ":")


def plot_roc(
    p_values: dict[tuple[str, str], tuple[Sequence[float], Sequence[float]]], out_dir: Path
) -> list[Path]:
    """One PNG per scheme, a ROC curve per attack (log FPR axis, where the interesting part is)."""
    plt = _pyplot()
    paths = []
    for scheme in sorted({s for s, _ in p_values}):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        curves = [(attack, pn) for (s, attack), pn in p_values.items() if s == scheme]
        for i, (attack, (pos, null)) in enumerate(curves):
            fpr, tpr = roc_from_p_values(pos, null)
            ax.plot(
                fpr,
                tpr,
                drawstyle="steps-post",
                color=f"C{i % 10}",
                ls=LINE_STYLES[(i // 10) % len(LINE_STYLES)],  # colours repeat after ten curves
                label=f"{attack} (AUROC {auroc_from_p_values(pos, null):.3f})",
            )
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls=":")
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("false positive rate (unwatermarked texts)")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"ROC, {scheme}")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside, not on the curves
        fig.tight_layout()
        path = Path(out_dir) / f"roc-{safe_name(scheme)}.png"
        atomic.save_figure(fig, path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_strength(rows: Sequence[dict], out_dir: Path, metric: str = "tpr_at_fpr_1pct") -> list[Path]:
    """One PNG per scheme: `metric` against attack strength, a line per attack kind (and mode)."""
    plt = _pyplot()
    paths = []
    for scheme in sorted({r["scheme"] for r in rows}):
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        mine = [r for r in rows if r["scheme"] == scheme]
        base = next((r for r in mine if r["kind"] == "none"), None)
        lines: dict[str, list[tuple[float, float]]] = {}
        for r in mine:
            if r["kind"] == "none" or r["strength"] is None:
                continue
            what = {"dilute": "watermarked fraction", "paraphrase": "temperature"}.get(r["kind"], "rate")
            name = r["kind"] + (f" {r['mode']}" if r.get("mode") else "") + f" (x: {what})"
            lines.setdefault(name, []).append((float(r["strength"]), float(r[metric])))
        for name, pts in sorted(lines.items()):
            pts.sort()
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=name)
        if base is not None:
            ax.axhline(base[metric], color="grey", ls="--", lw=0.8, label="no attack")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("attack strength")
        ax.set_ylabel({"tpr_at_fpr_1pct": "TPR at 1% FPR"}.get(metric, metric.replace("_", " ")))
        ax.set_title(f"Robustness, {scheme}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(out_dir) / f"strength-{safe_name(scheme)}.png"
        atomic.save_figure(fig, path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths

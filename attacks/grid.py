"""The robustness grid behind `wm eval` and `benchmarks/robustness.py`.

Generate watermarked and unwatermarked texts for the same prompts and sampling seeds, attack
both, detect, and aggregate one row per (scheme, attack). It lives here, next to the attacks it
drives, so that the watermark core (`watermark.evaluation`: metrics, perplexity, the generation
cache) depends on nothing above it. The cache layout is described in `watermark.evaluation`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wm_toolkit.watermark.errors import InputError
from wm_toolkit.watermark.measure.evaluation import (
    NOMINAL_ALPHA,
    GenerationSettings,
    ProgressFactory,
    append_cache_jsonl,
    cache_digest,
    cached_generations,
    detection_summary,
    finite_mean,
    finite_median,
    generation_tag,
    no_progress,
    read_cache_jsonl,
    resolution_warnings,
    rewrite_cache_jsonl,
    safe_name,
    text_perplexities,
    write_json,
)
from wm_toolkit.watermark.schemes.base import TextTooShortError, WatermarkScheme

from .registry import AttackContext, apply_attack, get_attack

# ---------------------------------------------------------------------------------------------
# the robustness grid


@dataclass
class GridSetup:
    """What `run_grid` works with; `oracle` scores perplexity (default: the generating model)."""

    model: Any
    tokenizer: Any
    settings: GenerationSettings
    prompts: Sequence[str]
    out_dir: Path
    oracle: tuple[Any, Any] | None = None
    oracle_name: str | None = None  # names the oracle in cache keys
    attacker: tuple[Any, Any] | None = None  # the model attacks use (default: the generating model);
    # name it in attack_options["paraphrase_model"] so caches and records say which one it was
    paraphraser: tuple[Any, Any] | None = None  # paraphrase only (default: `attacker`); may have its
    # own tokenizer, unlike `attacker`, whose embeddings the neighbour attack reads
    attack_seed: int = 0
    attack_options: dict[str, Any] | None = None
    chunk_size: int = 16  # texts per cached attack chunk
    compute_perplexity: bool = True
    perplexity_texts: int | None = None  # score only the first k texts of each set (None: all)
    row_extra: dict[str, Any] | None = None  # fields added to every results row (e.g. config_conflicts)
    normalize: bool = True  # detect on canonical text (watermark.normalize), as `wm detect` does
    generator: Any = None  # what writes the texts when it is not `model`: a vLLM engine from
    # `vllm_plugin.open_llm` (settings.engine == "vllm"); `model` still scores perplexity


def _attack_model(setup: GridSetup, kind: str) -> tuple[Any, Any]:
    """The (model, tokenizer) an attack kind runs: a separate paraphraser where one is given."""
    if kind == "paraphrase" and setup.paraphraser is not None:
        return setup.paraphraser
    return setup.attacker or (setup.model, setup.tokenizer)


def attack_cache(
    setup: GridSetup,
    gen_tag: str,
    donor_tag: str,
    spec: Any,
    texts: Sequence[str],
    donors: Sequence[str],
    advance: Callable[[int], None],
) -> list[dict]:
    """Attacked versions of `texts` (text, fraction_changed, perplexity), cached by chunk."""
    kind = get_attack(spec.kind)
    options = {k: v for k, v in (setup.attack_options or {}).items() if not k.startswith("_")}
    key = {
        "generations": gen_tag,
        "attack": asdict(spec),
        "seed": setup.attack_seed,
        "options": options,
        "donors": donor_tag if kind.needs_donors else None,
        "chunk": setup.chunk_size,
        "perplexity": [setup.compute_perplexity, setup.perplexity_texts, setup.oracle_name],
    }
    path = setup.out_dir / "attacks" / f"{gen_tag}-{safe_name(spec.label)}-{cache_digest(key)}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_cache_jsonl(path)
    done = done[: (len(done) // setup.chunk_size) * setup.chunk_size] if len(done) < len(texts) else done
    if len(done) < len(texts):
        rewrite_cache_jsonl(path, done)
    if done:
        advance(min(len(done), len(texts)))
    oracle_model, oracle_tok = setup.oracle or (setup.model, setup.tokenizer)
    for start in range(len(done), len(texts), setup.chunk_size):
        chunk = list(texts[start : start + setup.chunk_size])
        ctx = AttackContext(
            tokenizer=setup.tokenizer,
            seed=setup.attack_seed,
            first_index=start,
            model_loader=lambda: _attack_model(setup, spec.kind),
            donors=donors,
            options=setup.attack_options if setup.attack_options is not None else {},
            on_item=advance,
        )
        attacked = apply_attack(spec, chunk, ctx)
        ppl = [float("nan")] * len(chunk)
        limit = len(texts) if setup.perplexity_texts is None else setup.perplexity_texts
        k = max(0, min(len(chunk), limit - start))
        if setup.compute_perplexity and k:
            ppl[:k] = text_perplexities(
                oracle_model,
                oracle_tok,
                [a.text for a in attacked[:k]],
                list(setup.prompts[start : start + k]),
                chat=setup.settings.chat,
            ).tolist()
        recs = [
            {
                "index": start + j,
                "text": a.text,
                "num_tokens": len(a.token_ids),
                "fraction_changed": a.fraction_changed,
                "perplexity": ppl[j],
                "attack": a.params,
            }
            for j, a in enumerate(attacked)
        ]
        append_cache_jsonl(path, recs)
        done.extend(recs)
    return done[: len(texts)]


def _detect_all(
    scheme: WatermarkScheme, tokenizer: Any, texts: Sequence[str], advance, normalize: bool = True
) -> tuple[list, int]:
    """p-values (1.0 for texts too short to test) and how many were too short."""
    from wm_toolkit.watermark.modeling.generation import encode_texts

    p, short = [], 0
    for t in texts:
        ids = encode_texts(tokenizer, [t], normalize=normalize)[0]
        try:
            p.append(float(scheme.detect(ids, alpha=NOMINAL_ALPHA).p_value))
        except TextTooShortError:
            p.append(1.0)
            short += 1
        advance(1)
    return p, short


def _generations(
    setup: GridSetup, scheme: WatermarkScheme | None, progress: ProgressFactory
) -> tuple[str, list[dict]]:
    """The cache tag and the generations of one scheme (None: unwatermarked), generated if missing."""
    settings = setup.settings
    tag = generation_tag(settings, None if scheme is None else scheme.config.generation_dict())
    path = Path(setup.out_dir) / "generations" / f"{tag}.jsonl"
    label = "unwatermarked" if scheme is None else scheme.name
    advance = progress(f"Generating ({label})", len(setup.prompts))
    writer = setup.model if setup.generator is None else setup.generator
    return tag, cached_generations(
        path, writer, setup.tokenizer, setup.prompts, scheme, settings, on_batch=advance
    )


def _grid_pvalues(
    setup: GridSetup,
    scheme: WatermarkScheme,
    spec: Any,
    wm_in: list[str],
    plain_in: list[str],
    progress: ProgressFactory,
) -> tuple[Path, list[float], list[float], int, int]:
    """(file relative to the output folder, watermarked p, unwatermarked p, too short in each),
    read back when the same detector already ran on the same texts."""
    out = Path(setup.out_dir)
    pv_key = {
        "config": scheme.config.to_dict(),
        "alpha": NOMINAL_ALPHA,
        "watermarked": wm_in,
        "unwatermarked": plain_in,
        "normalize": setup.normalize,
    }
    pv_file = (
        Path("pvalues") / f"{safe_name(scheme.name)}-{safe_name(spec.label)}-{cache_digest(pv_key)}.json"
    )
    if (out / pv_file).exists():  # the same detector on the same texts: reuse its p-values
        cached_p = json.loads((out / pv_file).read_text())
        wm_short, plain_short = cached_p["too_short"]
        return pv_file, cached_p["watermarked"], cached_p["unwatermarked"], wm_short, plain_short
    advance = progress(f"Detecting ({spec.label}, {scheme.name})", 2 * len(setup.prompts))
    wm_p, wm_short = _detect_all(scheme, setup.tokenizer, wm_in, advance, setup.normalize)
    plain_p, plain_short = _detect_all(scheme, setup.tokenizer, plain_in, advance, setup.normalize)
    write_json(
        out / pv_file,
        {
            "scheme": scheme.name,
            "attack": spec.label,
            "watermarked": wm_p,
            "unwatermarked": plain_p,
            "too_short": [wm_short, plain_short],
        },
    )
    return pv_file, wm_p, plain_p, wm_short, plain_short


def _grid_row(
    setup: GridSetup,
    scheme: WatermarkScheme,
    spec: Any,
    a_wm: list[dict],
    a_plain: list[dict],
    pvalues: tuple[Path, list[float], list[float], int, int],
) -> dict:
    """The results row of one (scheme, attack): detection summary, quality, the config it ran."""
    pv_file, wm_p, plain_p, wm_short, plain_short = pvalues
    settings = setup.settings
    row = {
        "scheme": scheme.name,
        "attack": spec.label,
        "kind": spec.kind,
        "mode": spec.mode,
        "strength": spec.strength,
        "n": len(setup.prompts),
        **detection_summary(wm_p, plain_p),
        "warnings": resolution_warnings(len(plain_p)),
        "perplexity": finite_median([r["perplexity"] for r in a_wm]),
        "perplexity_mean": finite_mean([r["perplexity"] for r in a_wm]),
        "perplexity_unwatermarked": finite_median([r["perplexity"] for r in a_plain]),
        "mean_length": finite_mean([r["num_tokens"] for r in a_wm]),
        "fraction_changed": finite_mean([r["fraction_changed"] for r in a_wm]),
        "fraction_changed_unwatermarked": finite_mean([r["fraction_changed"] for r in a_plain]),
        "too_short": wm_short + plain_short,
        "config": scheme.config.to_dict(),
        "model": settings.model,
        "max_new_tokens": settings.max_new_tokens,
    }
    row["pvalues_file"] = str(pv_file)
    row.update(setup.row_extra or {})
    return row


def run_grid(
    setup: GridSetup,
    schemes: Sequence[WatermarkScheme],
    attacks: Sequence[Any],
    progress: ProgressFactory = no_progress,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """One row per (scheme, attack); `results.json` in the output folder is rewritten after each.

    Interrupting (Ctrl-C) keeps every finished row in results.json and every finished batch
    in the caches; the KeyboardInterrupt is re-raised for the caller to report.
    """
    if not setup.prompts:
        raise InputError("no prompts to generate from")
    out = Path(setup.out_dir)
    (out / "generations").mkdir(parents=True, exist_ok=True)
    (out / "pvalues").mkdir(parents=True, exist_ok=True)
    n = len(setup.prompts)
    rows: list[dict] = []
    plain_tag, plain = _generations(setup, None, progress)
    plain_texts = [r["text"] for r in plain]
    donors = plain_texts[1:] + plain_texts[:1]  # text i is diluted with unwatermarked text i + 1
    attacked_plain: dict[Any, list[dict]] = {}
    for scheme in schemes:
        wm_tag, wm = _generations(setup, scheme, progress)
        wm_texts = [r["text"] for r in wm]
        for spec in attacks:
            if spec not in attacked_plain:
                attacked_plain[spec] = attack_cache(
                    setup,
                    plain_tag,
                    plain_tag,
                    spec,
                    plain_texts,
                    donors,
                    progress(f"Attacking ({spec.label}, unwatermarked)", n),
                )
            a_plain = attacked_plain[spec]
            a_wm = attack_cache(
                setup,
                wm_tag,
                plain_tag,
                spec,
                wm_texts,
                donors,
                progress(f"Attacking ({spec.label}, {scheme.name})", n),
            )
            wm_in, plain_in = [r["text"] for r in a_wm], [r["text"] for r in a_plain]
            pvalues = _grid_pvalues(setup, scheme, spec, wm_in, plain_in, progress)
            row = _grid_row(setup, scheme, spec, a_wm, a_plain, pvalues)
            rows.append(row)
            write_json(out / "results.json", rows)
            if on_row:
                on_row(row)
    return rows


def load_p_values(
    out_dir: Path, rows: Sequence[dict] | None = None
) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """(scheme, attack) -> (watermarked p-values, unwatermarked p-values) of `rows` (default: all
    files in the folder's pvalues/)."""
    if rows is not None:
        files = [Path(out_dir) / r["pvalues_file"] for r in rows if r.get("pvalues_file")]
    else:
        files = sorted((Path(out_dir) / "pvalues").glob("*.json"))
    out = {}
    for f in files:
        d = json.loads(f.read_text())
        out[(d["scheme"], d["attack"])] = (d["watermarked"], d["unwatermarked"])
    return out

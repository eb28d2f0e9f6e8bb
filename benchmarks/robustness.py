"""Robustness grid on the default model: every scheme given x every attack, through the same
harness as `wm eval` (attacks.grid.run_grid), with its caches under --out.

    python benchmarks/robustness.py --n 32 --max-new-tokens 100 --schemes kgw,unigram,gumbel
    # the published run: see benchmarks/results/robustness.md (n = 200, 200 tokens, --bf16-helpers,
    # --edit-resamples 199, several processes on one cache, then --merge ... --plots --markdown)

Generations, attacked texts and p-values are cached (keyed by what decides them), so the script
can be rerun with more schemes or attacks, or run as several processes whose output folders link
generations/, attacks/ and pvalues/ to one folder, and only does the new work. The last line is one
JSON object: the rows (rounded) and the wall time.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
from _common import ROOT, emit, load_prompts

from wm_toolkit.attacks.grid import GridSetup, load_p_values, run_grid
from wm_toolkit.attacks.registry import parse_attacks
from wm_toolkit.watermark.config import default_config
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.measure.evaluation import GenerationSettings, plot_roc, plot_strength, write_json
from wm_toolkit.watermark.modeling.models import DEFAULT_MODEL, canonical_name, load_model
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.distortion_free import permutation_floor

ATTACKS = (
    "none,substitute:0.1,substitute:0.3,insert:0.1,insert:0.3,delete:0.1,delete:0.3,"
    "word-substitute:0.2,word-substitute:0.4,word-delete:0.2,word-delete:0.4,"
    "neighbour:0.2,neighbour:0.4,dilute:0.5,dilute:0.25,unicode:zwsp:1,unicode:homoglyph:1"
)
COLUMNS = (
    "tpr_at_fpr_1pct",
    "tpr_at_fpr_0_1pct",
    "tpr_at_p_0_001",
    "auroc",
    "median_p_value",
    "perplexity",
    "fraction_changed",
    "mean_length",
)


def _fmt(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if 0 < abs(x) < 1e-3:
        return f"{x:.1e}"
    return f"{x:.{digits}f}" if abs(x) < 100 else f"{x:.0f}"


def markdown_table(rows: list[dict]) -> str:
    """One line per (scheme, attack): the detection and quality columns of results.json."""
    head = (
        "| scheme | attack | n | TPR@1%FPR | TPR@0.1%FPR | TPR@p<0.001 | FPR@p<0.001 | AUROC | median p "
        "| PPL | tokens | changed |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        cells = [
            r["scheme"],
            r["attack"],
            str(r["n"]),
            _fmt(r["tpr_at_fpr_1pct"]),
            _fmt(r["tpr_at_fpr_0_1pct"]),
            _fmt(r["tpr_at_p_0_001"]),
            _fmt(r["fpr_at_p_0_001"], 3),
            _fmt(r["auroc"], 3),
            f"{r['median_p_value']:.2g}",
            _fmt(r["perplexity"], 1),
            f"{r['mean_length']:.0f}",
            _fmt(r["fraction_changed"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def edit_row_floor(config: dict) -> float | None:
    """The p-value floor of an edit-robust row (None for other schemes). The Gamma bound takes its
    share of the level only for the EXP family (these texts are shorter than the key)."""
    if not str(config.get("scheme", "")).endswith("-edit"):
        return None
    w = config.get("bound_weight", 0.0) if config["scheme"].startswith("exp") else 0.0
    return permutation_floor(config["resamples"], w)


def floor_table(rows: list[dict], p_values: dict) -> str:
    """Per edit-statistic row: how many watermarked / unwatermarked texts sit at or below the
    floor. Empirical-FPR thresholds are ties there, so these counts and AUROC are what to read."""
    lines = [
        "| scheme | attack | n | floor | watermarked at or below the floor "
        "| unwatermarked at or below the floor | AUROC |",
        "|" + "---|" * 7,
    ]
    for r in rows:
        floor = edit_row_floor(r.get("config", {}))
        if floor is None or (r["scheme"], r["attack"]) not in p_values:
            continue
        wm, null = p_values[(r["scheme"], r["attack"])]
        at_wm, at_null = (sum(p <= floor * (1 + 1e-9) for p in ps) for ps in (wm, null))
        lines.append(
            f"| {r['scheme']} | {r['attack']} | {r['n']} | {floor:.2g} | {at_wm}/{len(wm)} "
            f"| {at_null}/{len(null)} | {r['auroc']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--schemes", default="kgw,unigram,exp,exp-edit,its,its-edit,gumbel,synthid")
    ap.add_argument("--attacks", default=ATTACKS)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--perplexity-texts", type=int, default=None, help="PPL on the first k texts only.")
    ap.add_argument("--resamples", type=int, default=None, help="Permutation resamples (exp/its).")
    ap.add_argument(
        "--edit-resamples", type=int, default=None, help="Permutation resamples of exp-edit/its-edit."
    )
    ap.add_argument(
        "--edit-stop-after",
        type=int,
        default=None,
        help="Besag-Clifford stop of exp-edit/its-edit (stop after this many null statistics <= the "
        "observed one; smaller = cheaper for unwatermarked texts, same validity).",
    )
    ap.add_argument("--chunk-size", type=int, default=16, help="Texts per cached attack chunk.")
    ap.add_argument(
        "--bf16-helpers",
        action="store_true",
        help="Score perplexity and paraphrase with a bfloat16 copy of the model (~1.7x faster on "
        "CPUs with avx512_bf16; perplexities move by < 1%%). Generation stays float32.",
    )
    ap.add_argument(
        "--paraphrase-model",
        default=None,
        help="Paraphrase with this model (name, HF id or folder) instead of the generating model.",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "robustness")
    ap.add_argument("--plots", action="store_true")
    ap.add_argument("--markdown", type=Path, default=None, help="Also write the rows as a markdown table.")
    ap.add_argument(
        "--merge",
        default=None,
        help="Comma-separated output folders (sharing --out's caches) whose results.json rows are "
        "merged, in --schemes order, into --out/results.json; nothing is generated or detected.",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.merge:
        rows = merge_rows([args.out, *map(Path, args.merge.split(","))], args.schemes.split(","))
        write_json(args.out / "results.json", rows)
        finish(args, rows, t0)
        return
    specs = parse_attacks(args.attacks)  # bad attack names fail before any model is loaded
    model, tok = load_model(DEFAULT_MODEL, device="cpu")
    key = Key.from_seed("robustness")
    schemes = []
    for name in args.schemes.split(","):
        cfg = default_config(name).replace(vocab_size=len(tok), tokenizer=DEFAULT_MODEL)
        if args.resamples and "resamples" in cfg.to_dict():
            cfg = cfg.replace(resamples=args.resamples)
        if args.edit_resamples and name.endswith("-edit"):
            cfg = cfg.replace(resamples=args.edit_resamples)
        if args.edit_stop_after and name.endswith("-edit"):
            cfg = cfg.replace(stop_after=args.edit_stop_after)
        schemes.append(build_scheme(cfg, key))
    helper, options = None, {"batch_size": args.batch_size}
    if args.bf16_helpers:
        helper = (copy.deepcopy(model).to(torch.bfloat16), tok)
        options["paraphrase_model"] = f"{DEFAULT_MODEL} (bfloat16)"
    paraphraser = None
    if args.paraphrase_model and any(s.kind == "paraphrase" for s in specs):  # as `wm eval` does
        options["paraphrase_model"] = canonical_name(args.paraphrase_model)
        paraphraser = load_model(options["paraphrase_model"], device="cpu")
    setup = GridSetup(
        model=model,
        tokenizer=tok,
        settings=GenerationSettings(
            model=DEFAULT_MODEL, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=0
        ),
        prompts=load_prompts(args.n),
        out_dir=args.out,
        attack_options=options,
        perplexity_texts=args.perplexity_texts,
        chunk_size=args.chunk_size,
        oracle=helper,
        oracle_name=None if helper is None else f"{DEFAULT_MODEL} (bfloat16)",
        attacker=helper,
        paraphraser=paraphraser,
    )

    def progress(description: str, total: int):
        print(f"[{time.perf_counter() - t0:7.0f} s] {description} ({total})", file=sys.stderr, flush=True)
        return lambda k: None

    def on_row(r: dict) -> None:
        cells = " ".join(f"{c}={r[c]:.3g}" for c in COLUMNS if not math.isnan(r[c]))
        print(
            f"[{time.perf_counter() - t0:7.0f} s] {r['scheme']} {r['attack']}: {cells}",
            file=sys.stderr,
            flush=True,
        )

    rows = run_grid(setup, schemes, specs, progress=progress, on_row=on_row)
    finish(args, rows, t0)


def merge_rows(dirs: list[Path], scheme_order: list[str]) -> list[dict]:
    """Rows of several runs' results.json; the first folder wins a repeated (scheme, attack).
    Sorted by `scheme_order`, then the default attack grid's order (extra attacks last, by name)."""
    seen, rows = set(), []
    for d in dirs:
        for r in json.loads((d / "results.json").read_text(encoding="utf-8")):
            if (r["scheme"], r["attack"]) not in seen:
                seen.add((r["scheme"], r["attack"]))
                rows.append(r)
    order = {name: i for i, name in enumerate(scheme_order)}
    attacks = {name: i for i, name in enumerate(ATTACKS.split(","))}  # the grid's order, then the rest
    return sorted(
        rows,
        key=lambda r: (
            order.get(r["scheme"], len(order)),
            attacks.get(r["attack"], len(attacks)),
            r["attack"],
        ),
    )


def finish(args: argparse.Namespace, rows: list[dict], t0: float) -> None:
    p_values = load_p_values(args.out, rows) if args.plots or args.markdown else {}  # read once
    if args.plots:
        plot_roc(p_values, args.out)
        plot_strength(rows, args.out)
    if args.markdown:
        text = markdown_table(rows) + "\n" + floor_table(rows, p_values)
        args.markdown.write_text(text, encoding="utf-8")
    emit(
        {
            "n": sorted({r["n"] for r in rows}),
            "max_new_tokens": args.max_new_tokens,
            "model": DEFAULT_MODEL,
            "wall_s": round(time.perf_counter() - t0, 1),
            "rows": [
                {
                    "scheme": r["scheme"],
                    "attack": r["attack"],
                    "n": r["n"],
                    **{c: float(f"{r[c]:.4g}") for c in COLUMNS},
                }
                for r in rows
            ],
        }
    )


if __name__ == "__main__":
    main()
